"""One command for the fine-tuning measurement (issue 17): does online fine-tuning improve an offline checkpoint?

    python benchmarks/finetune.py                    # 2 losses x 3 seeds, 2 runs at a time, then the report
    python benchmarks/finetune.py --report-only      # docs/finetune.md and docs/figures/finetune_curves.png only
    python benchmarks/finetune.py --offline-steps 1000 --online-steps 500 --runs-dir /tmp/ft --docs /tmp/ft/f.md \
        --figures /tmp/ft                            # a smoke version

Each run is ``recipes/ppl_finetune.py`` (resume=auto, its own folder): ``--offline-steps`` offline updates on
``pointmaze-medium-mixed-gen-v0`` at its dataset config's settings (3x256 networks, w = 8, lr 3e-4, the compiled
update), then ``--online-steps`` environment steps with one update after each, at ReBRAC's public fine-tuning
settings (50/50 batches, exploration noise 0.03, the actor's BC coefficient decaying to 0, no critic penalty).
The offline checkpoint's score is the online run's evaluation at step 0 (same evaluation: 10 episodes, seed 42).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if not __package__:  # `python benchmarks/finetune.py`: the repository root instead of this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.grid import (REPO, RECIPES, GridRun, add_grid_arguments, command_line,  # noqa: E402
                             measured_nowhere, read_invocations, record_invocation, run_jobs, segment_jobs)

RECIPE = RECIPES / "ppl_finetune.py"
DATASET = "pointmaze-medium-mixed-gen-v0"
LOSSES = {"ppl": "PPL^R (w=8)", "rebrac": "ReBRAC"}
SCORE = "eval/normalized_score_mean"


def overrides(loss: str, seed: int, root: Path, offline_steps: int, online_steps: int, eval_every: int) -> list[str]:
    ov = {"loss": loss, "dataset": DATASET, "seed": seed, "run_dir": str(root / loss / f"seed{seed}"),
          "resume": "auto", "optim.steps": offline_steps, "finetune.env_steps": online_steps, "eval.every": eval_every,
          "checkpoint.every": eval_every, "compile.enabled": "true", "threads": 1, "logger.backend": "",
          "logger.progress": "false", "logger.log_every": 1000}
    return [f"{k}={v}" for k, v in ov.items()]


def report(root: Path, seeds, docs: Path, figures: Path, command: str, history: list[dict]) -> str:
    from ppl_torchrl.reporting.metrics import read_curve, seed_band
    from benchmarks.markdown import write_section
    from ppl_torchrl.reporting.figures import draw_band, pyplot, save_figure
    from ppl_torchrl.reporting.tables import mean_std, pm

    rows, curves, speed = [], {}, []
    for loss, name in LOSSES.items():
        starts, ends, gains, per_seed, best_offline, done = [], [], [], [], [], 0
        curves[loss] = []
        for seed in seeds:
            run = root / loss / f"seed{seed}"
            steps, values = read_curve(run)
            curves[loss].append((steps, values))
            results = run / "results.json"
            if not steps or steps[0] != 0 or not results.exists():
                continue
            done += 1
            res = json.loads(results.read_text())
            _, off_values = read_curve(run / "offline")
            if off_values:
                best_offline.append(max(off_values))
            starts.append(values[0])
            ends.append(values[-1])
            gains.append(values[-1] - values[0])
            per_seed.append(f"{values[0]:.1f} → {values[-1]:.1f}")
            t = res.get("online_timing_s") or {}
            total = t.get("collect_s", 0.0) + t.get("update_s", 0.0)
            if total > 0:
                speed.append((name, seed, res["steps"] / total, t["collect_s"] / total, res["steps"] / t["collect_s"]))
        rows.append(f"| {name} | {done}/{len(seeds)} | {pm(*mean_std(best_offline))} | {pm(*mean_std(starts))} | "
                    f"{pm(*mean_std(ends))} | {pm(*mean_std(gains))} | {', '.join(per_seed) or '–'} |")
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    for loss, name in LOSSES.items():
        steps, mean, std = seed_band(curves[loss])
        if steps:
            draw_band(ax, steps, mean, std, name)
    ax.set_xlabel("online environment steps")
    ax.set_ylabel("normalized score")
    ax.set_title(f"fine-tuning on {DATASET} (mean ± std over seeds)")
    ax.legend()
    png = save_figure(fig, figures / "finetune_curves.png")
    speed_rows = [f"| {n} | {s} | {sps:.1f} | {100 * share:.0f} % | {env_sps:.0f} |" for n, s, sps, share, env_sps in speed]
    body = "\n".join([
        "### Command", "", f"```bash\n{command}\n```", "",
        f"Wall time of the invocation(s) that trained: {sum(h['wall_s'] for h in history) / 60:.1f} min, "
        + "; ".join(f"{h.get('jobs', '?')} runs at a time on {h.get('cpu', 'an unrecorded CPU')} "
                    f"({h.get('cores', '?')} cores), one torch thread per run" for h in history)
        + ". Online steps/s below are per run, with the other run (and at times other work) on the other core.", "",
        "### Offline checkpoint vs after online fine-tuning (normalized score, mean ± std over seeds, ddof 0)", "",
        "| algorithm | runs | best evaluation of the offline phase | offline checkpoint (online step 0) | "
        "after fine-tuning | change | per seed (checkpoint → fine-tuned) |",
        "|---|---|---:|---:|---:|---:|---|", *rows, "",
        f"![fine-tuning curves]({Path('figures') / png.name})", "",
        "### Where the online time goes", "",
        "Online steps/s counts one environment step and one update; the collection share is the time the TorchRL "
        "collector took (actor forward, exploration noise, environment step, storing the transition).", "",
        "| algorithm | seed | online steps/s | collection share | collector env steps/s |", "|---|---|---:|---:|---:|",
        *speed_rows,
    ])
    write_section(docs, "finetune-results", body, title="Offline-to-online fine-tuning")
    return body


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_arguments(p, runs_dir=REPO / "runs" / "finetune_bench", plan=False)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--offline-steps", type=int, default=25_000)
    p.add_argument("--online-steps", type=int, default=20_000)
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--docs", default=str(REPO / "docs" / "finetune.md"))
    p.add_argument("--figures", default=str(REPO / "docs" / "figures"))
    args = p.parse_args(argv)
    root = Path(args.runs_dir).expanduser().resolve()
    seeds = list(range(args.seeds))
    command = command_line("finetune.py", argv)
    start, failures = time.perf_counter(), []
    if not args.report_only:
        runs = [GridRun(f"{loss}-seed{seed}", RECIPE, root / loss / f"seed{seed}", tuple(overrides(
            loss, seed, root, args.offline_steps, args.online_steps, args.eval_every)), args.online_steps)
            for seed in seeds for loss in LOSSES]
        failures = run_jobs(segment_jobs((r, r.steps) for r in runs), args.jobs, root / "logs")
        from ppl_torchrl.machine import cpu_model

        record_invocation(root, {"wall_s": time.perf_counter() - start, "jobs": args.jobs, "cpu": cpu_model(),
                                 "cores": os.cpu_count()})
    if measured_nowhere((root / loss / f"seed{seed}" for seed in seeds for loss in LOSSES), root):
        return 1 if failures else 0
    history = read_invocations(root)
    print(report(root, seeds, Path(args.docs), Path(args.figures), command, history))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
