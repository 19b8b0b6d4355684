"""Issue 29's measurement: each TorchRL loss with the partial-OT potential composed onto it, against the loss alone.

    python benchmarks/compose_evidence.py                       # the grid in docs/evidence.md ("Composed losses")
    python benchmarks/compose_evidence.py --steps 40 --seeds 0 --runs-dir /tmp/c --docs /tmp/c/e.md   # smoke
    python benchmarks/compose_evidence.py --report-only         # the section from finished runs only
    python benchmarks/compose_evidence.py --potential stable --steps 2000 --cql-steps 800 \
        --runs-dir runs/compose_evidence_stable --section compose-results-stable   # loss=ppl_stable's potential

Pairs (``ppl_torchrl.objectives.PartialOT`` on the base): ``ppl_td3_bc`` vs ``td3_bc``, ``ppl_cql`` vs ``cql``,
``ppl_iql`` vs ``iql``, on ``pointmaze-medium-mixed-gen-v0`` (generated here on first use), the same seeds,
networks, batch and evaluation for both sides of a pair; the potential's ``w`` is the dataset config's (8).
Every run is a recipe command (``recipes/ppl_antmaze.py``, ``resume=auto``, one torch thread) launched by the grid
driver (:mod:`benchmarks.grid`), so a relaunch skips finished runs. The verdict is the evidence grid's (``compare``
of ``benchmarks/verdict.py``): the difference of the final normalized-score means against 2 Welch standard errors;
inside that band the pair is "matched".

``--f-out-of-actor`` is the control: f still trains, but ``loss.potential_actor_coef=0`` takes it out of the actor's
loss, so the composed side draws the same random numbers and only f's pull is gone.

``--potential stable`` gives the composed side loss=ppl_stable's potential (:func:`stable_overrides`: the one-sided gradient
penalty 5 keeping f about 1-Lipschitz in the action, f at the critic's learning rate) instead of the authors'; the
base side is unchanged. Give it its own ``--runs-dir`` and ``--section``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # `python benchmarks/compose_evidence.py`: the repository root instead of this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.grid import (REPO, RECIPES, GridRun, add_grid_arguments, command_line, machine,  # noqa: E402
                             measured_nowhere, read_invocations, record_invocation, run_jobs, segment_jobs)

DATASET = "pointmaze-medium-mixed-gen-v0"
PAIRS = (("td3_bc", "ppl_td3_bc"), ("cql", "ppl_cql"), ("iql", "ppl_iql"))
NAMES = {"td3_bc": "TD3+BC", "cql": "CQL", "iql": "IQL"}
SECTION = "compose-results"
# CQL samples 4 actions instead of 10 and its critic has the other networks' depth instead of CORL's 5 layers,
# as in the evidence grid (benchmarks/evidence.py, budget small): TorchRL's CQLLoss costs ~15x a TD3+BC step.
PER_LOSS = {"cql": ("loss.num_random=4", "loss.q_num_hidden=2"), "ppl_cql": ("loss.num_random=4", "loss.q_num_hidden=2")}


def stable_overrides() -> tuple[str, ...]:
    """loss=ppl_stable's own settings (the ``loss`` and ``optim`` values of recipes/config/loss/ppl_stable.yaml, its
    name aside) as overrides that give a composed loss the same potential."""
    import yaml

    raw = yaml.safe_load((RECIPES / "config" / "loss" / "ppl_stable.yaml").read_text())
    return tuple(f"{section}.{key}={value}" for section in ("loss", "optim")
                 for key, value in (raw.get(section) or {}).items() if key != "name")


def run_dir_of(root: Path, loss: str, seed: int) -> Path:
    return root / loss / DATASET / f"seed{seed}"


def cql_reward_overrides(args, loss: str) -> tuple[str, ...]:
    """``--cql-rewards antmaze``: the CQL pair trains on CORL's AntMaze CQL rewards ``10 r - 5``
    (:func:`~ppl_torchrl.data.transforms.reward_scale_bias` of an AntMaze id), the rewards loss=cql's CORL AntMaze
    settings were tuned on; ``raw`` keeps the generated maze's own 0/1 rewards."""
    if args.cql_rewards != "antmaze" or not loss.endswith("cql"):
        return ()
    from ppl_torchrl.data.transforms import reward_scale_bias

    scale, bias = reward_scale_bias("antmaze-medium-play-v2", loss)
    return (f"dataset.reward_scale={scale}", f"dataset.reward_bias={bias}")


def steps_of(args, loss: str) -> int:
    return args.cql_steps if loss.endswith("cql") else args.steps


def overrides(args, loss: str, seed: int) -> list[str]:
    steps = steps_of(args, loss)
    evals = max(1, steps // max(1, args.evals))
    ov = {"loss": loss, "dataset": DATASET, "seed": seed, "run_dir": run_dir_of(args.runs_dir, loss, seed),
          "resume": "auto", "optim.steps": steps, "optim.batch_size": args.batch_size,
          "model.hidden_dim": args.hidden_dim, "model.num_hidden": args.num_hidden, "threads": 1,
          "eval.episodes": args.eval_episodes, "eval.num_envs": args.eval_episodes, "eval.every": evals,
          "checkpoint.every": evals, "logger.backend": "", "logger.progress": "false", "logger.log_every": evals,
          "compile.enabled": "false", "probe.size": 0}
    potential = stable_overrides() if args.potential == "stable" and loss.startswith("ppl_") else ()
    if args.f_out_of_actor and loss.startswith("ppl_"):
        potential = (*potential, "loss.potential_actor_coef=0.0")
    return ([f"{k}={v}" for k, v in ov.items()] + list(PER_LOSS.get(loss, ())) + list(potential)
            + list(cql_reward_overrides(args, loss)))


def pairs_of(args) -> tuple[tuple[str, str], ...]:
    return tuple(pair for pair in PAIRS if pair[0] in args.pairs)


def run(args) -> list[str]:
    runs = [GridRun(f"{loss}-seed{seed}", RECIPES / "ppl_antmaze.py", run_dir_of(args.runs_dir, loss, seed),
                    tuple(overrides(args, loss, seed)), steps_of(args, loss))
            for seed in args.seeds for pair in pairs_of(args) for loss in pair]
    start = time.time()
    failures = run_jobs(segment_jobs((r, r.steps) for r in runs), parallel=args.jobs, log_dir=args.runs_dir / "logs")
    record_invocation(args.runs_dir, {"wall_s": time.time() - start})
    return failures


def report(args) -> str:
    from benchmarks.evidence_report import SCORE, SUCCESS, make_cell
    from benchmarks.verdict import compare
    from ppl_torchrl.reporting.aggregate import load_results

    which = "loss=ppl_stable's potential" if args.potential == "stable" else "the authors' potential"
    if args.f_out_of_actor:
        which += ", out of the actor loss"
    rows = [f"| base loss | steps | base | base + {which} (w = 8) | difference (± SE) | seeds higher | verdict | "
            "success rate (%) base / + potential |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for base, composed in pairs_of(args):
        runs = {loss: [load_results(run_dir_of(args.runs_dir, loss, s) / "results.json") for s in args.seeds
                       if (run_dir_of(args.runs_dir, loss, s) / "results.json").exists()] for loss in (base, composed)}
        if not runs[base] or not runs[composed]:
            rows.append(f"| {NAMES[base]} | {steps_of(args, base)} | – | – | – | – | no finished runs | – |")
            continue
        b, c = make_cell(runs[base], SCORE), make_cell(runs[composed], SCORE)
        v = compare(c, b, DATASET)
        sb, sc = make_cell(runs[base], SUCCESS), make_cell(runs[composed], SUCCESS)
        rows.append(f"| {NAMES[base]} (`{base}` vs `{composed}`) | {steps_of(args, base)} | {b.text()} | {c.text()} | {v.diff:+.1f} ± {v.se:.1f} "
                    f"| {v.wins}/{v.paired} | {v.outcome} | {sb.text(100.0)} / {sc.text(100.0)} |")
    invocations = read_invocations(args.runs_dir)
    wall = sum(i["wall_s"] for i in invocations) / 60 if invocations else float("nan")
    if "cql" not in args.pairs:
        steps = f"{args.steps} gradient steps per run"
    elif args.pairs == ["cql"]:
        steps = f"{args.cql_steps} gradient steps per run (the CQL pair only)"
    else:
        steps = f"{args.steps} gradient steps per run ({args.cql_steps} for the CQL pair, whose step costs ~4x)"
    cql = "" if "cql" not in args.pairs else (
        f"; CQL with 4 sampled actions and a {args.num_hidden}-layer critic (both sides)"
        + (", on CORL's AntMaze CQL rewards 10 r - 5" if args.cql_rewards == "antmaze" else ""))
    budget = (f"`{DATASET}`, seeds {list(args.seeds)}, {steps}, batch {args.batch_size}, "
              f"networks {args.num_hidden} x {args.hidden_dim} (ReLU MLPs), eager updates, one torch thread per run, "
              f"{'one run' if args.jobs == 1 else f'{args.jobs} runs'} at a time; final evaluation "
              f"{args.eval_episodes} episodes (eval seed 42){cql}; {wall:.1f} min of wall time in all on {machine()} "
              "(shared with other jobs)")
    return (f"Command: `{args.command}`.\n\n"
            f"Budget: {budget}.\n\n" + "\n".join(rows) + "\n\nScores are normalized (0 = random, 100 = the "
            "planner's return; `ppl_torchrl.registry`), mean ± std over seeds; the verdict is the "
            "difference of means against 2 Welch standard errors (`compare` in `benchmarks/verdict.py`).\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=700, help="gradient steps per run (TD3+BC and IQL pairs)")
    p.add_argument("--cql-steps", type=int, default=300, help="gradient steps per run of the CQL pair")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hidden-dim", type=int, default=64)
    p.add_argument("--num-hidden", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--evals", type=int, default=1, help="evaluations per run (the last at the end)")
    p.add_argument("--potential", choices=("authors", "stable"), default="authors",
                   help="the composed side's potential: the authors' settings or loss=ppl_stable's")
    p.add_argument("--f-out-of-actor", action="store_true",
                   help="the control: f trained as usual but weighted 0 in the actor loss (same random streams)")
    p.add_argument("--cql-rewards", choices=("raw", "antmaze"), default="raw",
                   help="the CQL pair's rewards: the maze's own (raw) or CORL's AntMaze CQL transform 10 r - 5")
    p.add_argument("--pairs", nargs="+", choices=[base for base, _ in PAIRS], default=[base for base, _ in PAIRS],
                   help="the base losses whose pairs run (all three by default)")
    add_grid_arguments(p, runs_dir=REPO / "runs" / "compose_evidence", jobs=1, plan=False)
    p.add_argument("--docs", type=Path, default=REPO / "docs" / "evidence.md")
    p.add_argument("--section", default=SECTION, help="the generated section of --docs to (re)write")
    args = p.parse_args(argv)
    args.command = command_line("compose_evidence.py", argv)
    args.runs_dir = args.runs_dir.resolve()
    failures = [] if args.report_only else run(args)
    if measured_nowhere((run_dir_of(args.runs_dir, loss, s) for pair in pairs_of(args) for loss in pair
                         for s in args.seeds),
                        args.runs_dir):
        return 1 if failures else 0
    from benchmarks.markdown import write_section

    body = report(args)
    print(body)
    write_section(args.docs, args.section, body)
    if failures:
        print("failed runs:\n" + "\n".join(failures), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
