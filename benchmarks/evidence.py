"""One command for the evidence of issue 8: does PPL ignore inefficient actions, and beat ReBRAC?

    python benchmarks/evidence.py --budget small            # the grid documented in docs/evidence.md
    python benchmarks/evidence.py --budget full             # a few CPU hours (see BUDGETS)
    python benchmarks/evidence.py --budget smoke --runs-dir /tmp/ev --docs /tmp/ev/e.md --figures /tmp/ev
    python benchmarks/evidence.py --budget small --report-only   # tables/plots from finished runs only

What it does, in order:

1. the paper's toy experiment (``recipes/ppl_toy.py`` at its default settings, if that file exists;
   with ``out_dir=docs`` it rewrites ``docs/figures/toy.png`` and ``docs/toy_metrics.md``);
2. the benchmark grid: PPL^R vs ReBRAC vs TD3+BC vs BC vs IQL vs CQL on generated PointMaze data,
   including a mixed-quality dataset (30 % planner, 35 % wander, 35 % detour, ``docs/datagen.md``),
   several seeds each, identical evaluation (``eval.*``) for every algorithm;
3. the w ablation: PPL^R with w in {1, 3, 5, 8, 12} on the mixed dataset; the same with the potential
   disabled is exactly ReBRAC (same critic, actor, BC terms and schedule), plotted as a flat line;
4. the report: a Markdown section of ``docs/evidence.md`` (between markers, replaced on every run),
   ``docs/figures/evidence_curves.png`` and ``docs/figures/evidence_w_ablation.png``.

Every run goes through the same harness as the recipes (``ppl_torchrl.training.recipe.train``), composed from
``recipes/config/ppl_antmaze.yaml`` with overrides, each in its own folder with ``resume=auto``, trained in this
process by the grid driver (:func:`benchmarks.grid.train_in_process`): a relaunch skips finished runs and continues
interrupted ones. Runs are ordered seed by seed, so an interrupted grid still has whole seeds. The wall time of each
invocation is kept in ``<runs-dir>/timing.json`` and the report states their sum.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

if not __package__:  # `python benchmarks/evidence.py`: the repository root instead of this folder, for benchmarks.*
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.grid import (REPO, RECIPES, GridRun, command_line, measured_nowhere, record_invocation,  # noqa: E402
                             train_in_process)

RECIPE = RECIPES / "ppl_antmaze.py"
TOY_RECIPE = RECIPES / "ppl_toy.py"
DEFAULT_NAME = "evidence"  # section "<name>-results" of the docs file, figures "<name>_curves.png", ...

ALGORITHMS = ("ppl", "rebrac", "td3_bc", "bc", "iql", "cql")
NAMES = {"ppl": "PPL^R", "rebrac": "ReBRAC", "td3_bc": "TD3+BC", "bc": "BC", "iql": "IQL", "cql": "CQL"}
DEFAULT_W = 8.0  # the paper's w for PPL^R in the benchmark table (its AntMaze default)


# ------------------------------------------------------------------------------------------ budgets
@dataclass(frozen=True)
class Budget:
    """Everything that sets the cost of the grid; the same for every algorithm except ``per_loss``.

    ``per_loss`` holds overrides for one loss only (e.g. CQL's number of sampled actions), stated
    in the report because they change that algorithm.
    """

    name: str
    steps: int
    seeds: tuple[int, ...]
    datasets: tuple[str, ...]
    algorithms: tuple[str, ...] = ALGORITHMS
    ablation_dataset: str | None = "pointmaze-umaze-mixed-gen-v0"
    ws: tuple[float, ...] = (1.0, 3.0, 5.0, 8.0, 12.0)
    hidden_dim: int = 256
    num_hidden: int = 3
    batch_size: int = 256
    eval_episodes: int = 10
    eval_num_envs: int = 5
    evals: int = 4                       # evaluations per run, evenly spaced (the last at the end)
    per_loss: dict = field(default_factory=dict)
    toy: bool = True

    @property
    def eval_every(self) -> int:
        return max(1, self.steps // max(1, self.evals))

    def describe(self) -> str:
        """Markdown bullet list of the budget, for the report."""
        extra = "; ".join(f"{NAMES.get(k, k)}: `{' '.join(v)}`" for k, v in self.per_loss.items()) or "none"
        return "\n".join([
            f"* budget `{self.name}`: {self.steps} gradient steps per run, seeds {list(self.seeds)}, "
            f"batch {self.batch_size}, networks {self.num_hidden} x {self.hidden_dim} (ReLU MLPs; model.hidden_dim, "
            f"model.num_hidden), torch threads 1",
            f"* evaluation (identical for all): {self.eval_episodes} episodes (eval seed 42, "
            f"{self.eval_num_envs} envs in a batch) every {self.eval_every} steps and at the end; "
            "final = last evaluation",
            f"* benchmark datasets: {', '.join(f'`{d}`' for d in self.datasets)}; algorithms: "
            f"{', '.join(NAMES.get(a, a) for a in self.algorithms)}; PPL^R at w = {DEFAULT_W:g}",
            f"* w ablation on `{self.ablation_dataset}`: w in {[float(w) for w in self.ws]}"
            if self.ablation_dataset and self.ws else "* w ablation: not in this budget",
            f"* other hyper-parameters: the dataset configs' values (recipes/config/dataset/<id>.yaml: "
            "CORL maze2d ReBRAC values, lr 3e-4, gamma 0.99) and the loss configs' (CQL/IQL keep their own); "
            f"per-loss budget overrides: {extra}",
        ])


UMAZE, UMAZE_MIXED, MEDIUM_MIXED = ("pointmaze-umaze-gen-v0", "pointmaze-umaze-mixed-gen-v0",
                                    "pointmaze-medium-mixed-gen-v0")
BUDGETS = {
    # CI / tests: seconds per run.
    "smoke": Budget("smoke", steps=30, seeds=(0, 1), datasets=(UMAZE,), algorithms=("ppl", "rebrac"),
                    ablation_dataset=UMAZE, ws=(3.0, 8.0), hidden_dim=16, num_hidden=2, batch_size=32,
                    eval_episodes=1, eval_num_envs=1, evals=2, toy=False),
    # What docs/evidence.md shows: ~35 min of 2 shared CPU cores. CQL samples 4 actions instead of 10 and
    # its critic has 2 hidden layers like every other network here instead of CORL's 5 (TorchRL's
    # CQLLoss costs ~15x a ReBRAC step otherwise); its other settings are unchanged.
    "small": Budget("small", steps=1500, seeds=(0, 1, 2), datasets=(UMAZE, UMAZE_MIXED), hidden_dim=64,
                    num_hidden=2, batch_size=256, eval_episodes=5, eval_num_envs=5, evals=3,
                    per_loss={"cql": ("loss.num_random=4", "loss.q_num_hidden=2")}),
    # A few CPU hours: 110 runs of 8000 steps, ~7 h at the shared-CPU rates measured here (docs/evidence.md).
    "full": Budget("full", steps=8000, seeds=(0, 1, 2, 3, 4), datasets=(UMAZE, UMAZE_MIXED, MEDIUM_MIXED),
                   hidden_dim=64, num_hidden=3, batch_size=256, eval_episodes=10, eval_num_envs=5, evals=5,
                   per_loss={"cql": ("loss.num_random=4", "loss.q_num_hidden=3")}),
}


# ------------------------------------------------------------------------------------------ grid
@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid and its folder (stable across relaunches)."""

    algorithm: str
    dataset: str
    seed: int
    w: float | None
    run_dir: Path

    def overrides(self, budget: Budget) -> list[str]:
        ov = {
            "loss": self.algorithm, "dataset": self.dataset, "seed": self.seed, "run_dir": str(self.run_dir),
            "resume": "auto", "optim.steps": budget.steps, "optim.batch_size": budget.batch_size,
            "model.hidden_dim": budget.hidden_dim, "model.num_hidden": budget.num_hidden,
            "eval.episodes": budget.eval_episodes, "eval.num_envs": budget.eval_num_envs,
            "eval.every": budget.eval_every, "checkpoint.every": budget.eval_every,
            "logger.backend": "", "logger.progress": "false",
            "logger.log_every": max(1, min(1000, budget.eval_every)),
        }
        if self.w is not None:
            ov["hparams.w"] = float(self.w)
        return [f"{k}={v}" for k, v in ov.items()] + list(budget.per_loss.get(self.algorithm, ()))

    def grid_run(self, budget: Budget) -> GridRun:
        name = f"{self.algorithm} {self.dataset} seed{self.seed}" + (f" w{self.w:g}" if self.w else "")
        return GridRun(name, RECIPE, self.run_dir, tuple(self.overrides(budget)), budget.steps)


def run_dir_of(root: Path, algorithm: str, dataset: str, seed: int, w: float | None) -> Path:
    sub = Path(algorithm) / dataset
    if w is not None:
        sub = sub / f"w{w:g}"
    return Path(root) / sub / f"seed{seed}"


def build_grid(budget: Budget, root: Path) -> list[RunSpec]:
    """The unique runs of benchmark + ablation, seed-major.

    PPL^R at w = 8 on the ablation dataset and ReBRAC there are shared by the benchmark table and
    the ablation plot (one folder each), never trained twice.
    """
    unknown = [a for a in budget.algorithms if a not in NAMES]
    if unknown:
        raise ValueError(f"unknown algorithms {unknown}; choose from {list(NAMES)}.")
    specs: dict[Path, RunSpec] = {}

    def add(algorithm, dataset, seed, w=None):
        d = run_dir_of(root, algorithm, dataset, seed, w)
        specs.setdefault(d, RunSpec(algorithm, dataset, seed, w, d))

    for seed in budget.seeds:
        for dataset in budget.datasets:
            for a in budget.algorithms:
                add(a, dataset, seed, DEFAULT_W if a == "ppl" else None)
        if budget.ablation_dataset and budget.ws:
            add("rebrac", budget.ablation_dataset, seed)
            for w in budget.ws:
                add("ppl", budget.ablation_dataset, seed, float(w))
    return list(specs.values())


# ------------------------------------------------------------------------------------------ running
def run_grid(specs: Sequence[RunSpec], budget: Budget, extra: Sequence[str] = (),
             progress: bool = True) -> tuple[int, list[str]]:
    """Trains every unfinished run (in-process, one after another); returns (trained, failures).

    ``extra`` are Hydra overrides appended to every run (e.g. ``device=cuda``, ``dataset.path=...``). A finished run
    of another budget is refused; a failing run is reported and skipped (rerun the command to retry it).
    """
    by_dir = {s.run_dir: s for s in specs}
    return train_in_process([s.grid_run(budget) for s in specs], "ppl_antmaze", extra=extra, progress=progress,
                            desc="evidence grid",
                            check_finished=lambda done, run: check_same_budget(done, by_dir[run.run_dir], budget))


def check_same_budget(results: dict, spec: RunSpec, budget: Budget) -> None:
    """Refuses to reuse a finished run trained under another budget (``resume=auto`` would skip it)."""
    cfg = results.get("config") or {}
    got = {"optim.steps": results.get("steps"),
           "optim.batch_size": (cfg.get("optim") or {}).get("batch_size"),
           "model.hidden_dim": (cfg.get("model") or {}).get("hidden_dim"),
           "model.num_hidden": (cfg.get("model") or {}).get("num_hidden"),
           "eval.episodes": (cfg.get("eval") or {}).get("episodes")}
    want = {"optim.steps": budget.steps, "optim.batch_size": budget.batch_size, "model.hidden_dim": budget.hidden_dim,
            "model.num_hidden": budget.num_hidden, "eval.episodes": budget.eval_episodes}
    diff = {k: (got[k], v) for k, v in want.items() if got[k] is not None and got[k] != v}
    if diff:
        raise SystemExit(f"{spec.run_dir} holds a finished run of another budget (found, wanted): {diff}. "
                         "Pass another --runs-dir for this budget, or delete that folder.")


def run_toy(timeout: float | None = None) -> tuple[float | None, str | None]:
    """Runs ``recipes/ppl_toy.py out_dir=docs`` (regenerates the docs' toy figure and metrics); (wall seconds, error) — (None, None) if absent."""
    if not TOY_RECIPE.exists():
        return None, None
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(TOY_RECIPE), "out_dir=docs"], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return wall, f"recipes/ppl_toy.py exited with {proc.returncode}: {proc.stderr[-2000:]}"
    print(proc.stdout[-3000:])
    return wall, None


# ------------------------------------------------------------------------------------------ report
def load_runs(specs: Sequence[RunSpec]) -> dict[Path, object]:
    """``results.json`` of every finished run of the grid, by run folder."""
    from ppl_torchrl.reporting.aggregate import load_results

    return {s.run_dir: load_results(s.run_dir / "results.json") for s in specs
            if (s.run_dir / "results.json").exists()}


def _label(algorithm: str, w: float | None) -> str:
    return f"{NAMES[algorithm]} (w={w:g})" if algorithm == "ppl" and w is not None else NAMES.get(algorithm, algorithm)


def make_groups(budget: Budget, specs: Sequence[RunSpec], runs: dict):
    """(benchmark groups by dataset, ablation w groups, ablation reference group or None)."""
    from benchmarks.evidence_report import Group

    def group(algorithm, dataset, w=None, key=None):
        members = [runs[s.run_dir] for s in specs if s.algorithm == algorithm and s.dataset == dataset
                   and s.w == w and s.run_dir in runs]
        return Group(key or algorithm, _label(algorithm, w), dataset, sorted(members, key=lambda r: r.seed), w)

    bench = {d: [group(a, d, DEFAULT_W if a == "ppl" else None) for a in budget.algorithms] for d in budget.datasets}
    w_groups, reference = [], None
    if budget.ablation_dataset and budget.ws:
        w_groups = [group("ppl", budget.ablation_dataset, float(w), key=f"ppl@w={w:g}") for w in budget.ws]
        reference = group("rebrac", budget.ablation_dataset)
    return bench, w_groups, reference


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def build_report(budget: Budget, specs: Sequence[RunSpec], docs: Path, figures: Path, command: str,
                 timing: Sequence[dict], toy_png: Path | None = None,
                 name: str = DEFAULT_NAME) -> tuple[str, list[Path]]:
    """The generated Markdown section and the figures it links (written to ``figures``)."""
    from benchmarks.evidence_report import (SCORE, ablation_table, plot_learning_curves, plot_w_ablation,
                                            results_table, verdict_table)
    from benchmarks.verdict import compare

    runs = load_runs(specs)
    bench, w_groups, reference = make_groups(budget, specs, runs)
    total_wall = sum(float(t.get("wall_s", 0.0)) for t in timing)
    per_run = [json.loads((d / "results.json").read_text()).get("train_wall_time_s") for d in runs]
    per_run = [t for t in per_run if isinstance(t, (int, float))]
    lines = [
        "### Command and budget", "",
        f"```bash\n{command}\n```", "",
        budget.describe(),
        f"* runs: {len(runs)} of {len(specs)} finished"
        + ("" if len(runs) == len(specs) else " (**incomplete**: rerun the command to finish the grid)"),
        f"* wall time here: **{total_wall / 60:.1f} min** in {len(timing)} invocation(s) "
        f"(2 CPU cores shared with other jobs; training loops alone: {sum(per_run) / 60:.1f} min summed over runs)",
        "",
        "### Results (final evaluation, mean ± std over seeds; std is the population std, ddof = 0)", "",
    ]
    groups_flat = [g for d in bench for g in bench[d]]
    lines += [results_table(groups_flat)]

    verdicts = []
    for d, groups in bench.items():
        by_key = {g.key: g for g in groups}
        if "ppl" in by_key and "rebrac" in by_key and by_key["ppl"].runs and by_key["rebrac"].runs:
            verdicts.append(compare(by_key["ppl"].cell(SCORE), by_key["rebrac"].cell(SCORE), dataset=d))
    if budget.ablation_dataset and reference is not None and reference.runs:
        for g in w_groups:
            if g.runs and g.w != DEFAULT_W:
                verdicts.append(compare(g.cell(SCORE), reference.cell(SCORE),
                                        dataset=f"{budget.ablation_dataset} (w={g.w:g})"))
    if verdicts:
        lines += ["### PPL^R vs its base algorithm ReBRAC (normalized score)", "",
                  "Verdict rule: *beat* / *lost* when the difference of means exceeds 2 standard errors "
                  "(Welch, sample std), else *matched*. 'seeds PPL higher' pairs runs of the same seed.", "",
                  verdict_table(verdicts)]

    written: list[Path] = []
    figures = Path(figures)
    if any(g.runs for g in groups_flat):
        written.append(plot_learning_curves(bench, figures / f"{name}_curves.png"))
        lines += [f"![learning curves]({_rel(written[-1], docs.parent)})", "",
                  "*Normalized score during training (mean ± std band over seeds), every algorithm on every "
                  "benchmark dataset.*", ""]
    if w_groups and any(g.runs for g in w_groups):
        lines += [f"### w ablation on `{budget.ablation_dataset}`", "",
                  "The potential-free variant of PPL^R **is** ReBRAC (same critic, actor, BC terms and "
                  "schedule, no f network and no f term); it has no w, so it is the flat dashed line.", "",
                  ablation_table(w_groups, reference)]
        written.append(plot_w_ablation(w_groups, reference, figures / f"{name}_w_ablation.png",
                                       title=f"{budget.ablation_dataset}, {budget.steps} steps"))
        lines += [f"![score vs w]({_rel(written[-1], docs.parent)})", ""]
    if toy_png is not None and Path(toy_png).exists():
        lines += ["### Toy experiment (paper Fig. 1)", "",
                  f"![toy]({_rel(toy_png, docs.parent)}) — metrics: "
                  f"[toy_metrics.md]({_rel(REPO / 'docs' / 'toy_metrics.md', docs.parent)})", ""]
    return "\n".join(lines).rstrip() + "\n", written


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    p.add_argument("--steps", type=int, default=None, help="override the budget's gradient steps per run")
    p.add_argument("--seeds", type=int, default=None, help="override: use seeds 0..N-1")
    p.add_argument("--algorithms", default=None, help=f"override, comma separated, from {','.join(NAMES)}")
    p.add_argument("--datasets", default=None, help="override the benchmark datasets, comma separated")
    p.add_argument("--ws", default=None, help="override the ablation's w values, comma separated ('' for none)")
    p.add_argument("--runs-dir", default=None, help="run folders (default runs/evidence/<budget>)")
    p.add_argument("--docs", default=str(REPO / "docs" / "evidence.md"), help="Markdown file to update")
    p.add_argument("--figures", default=str(REPO / "docs" / "figures"), help="folder for the PNG figures")
    p.add_argument("--name", default=DEFAULT_NAME,
                   help="report name: docs section '<name>-results', figures '<name>_curves.png' and "
                        "'<name>_w_ablation.png' (another name adds a second report beside the first)")
    p.add_argument("--no-toy", action="store_true", help="do not run recipes/ppl_toy.py")
    p.add_argument("--report-only", action="store_true", help="no training: report the finished runs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest for these small networks on a shared CPU)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override added to every run, repeatable (e.g. device=cuda)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def budget_from_args(args: argparse.Namespace) -> Budget:
    b = BUDGETS[args.budget]
    changes = {}
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit("--steps must be >= 1")
        changes["steps"] = args.steps
    if args.seeds is not None:
        if args.seeds < 1:
            raise SystemExit("--seeds must be >= 1")
        changes["seeds"] = tuple(range(args.seeds))
    if args.algorithms:
        algs = tuple(a.strip() for a in args.algorithms.split(",") if a.strip())
        bad = [a for a in algs if a not in NAMES]
        if bad:
            raise SystemExit(f"--algorithms: unknown {bad}; choose from {','.join(NAMES)}")
        changes["algorithms"] = algs
    if args.datasets:
        changes["datasets"] = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    if args.ws is not None:
        try:
            changes["ws"] = tuple(float(w) for w in args.ws.split(",") if w.strip())
        except ValueError:
            raise SystemExit(f"--ws must be comma separated numbers, got {args.ws!r}") from None
    return replace(b, name=b.name + ("*" if changes else ""), **changes) if changes else b


def main(argv=None) -> int:
    args = parse_args(argv)
    budget = budget_from_args(args)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.name):
        raise SystemExit(f"--name must be letters, digits, '_' or '-', got {args.name!r}")
    bad = [o for o in args.override if "=" not in o]
    if bad:
        raise SystemExit(f"--override takes KEY=VALUE (a Hydra override), got {bad}")
    import torch

    torch.set_num_threads(max(1, args.threads))
    root = Path(args.runs_dir or REPO / "runs" / "evidence" / budget.name.rstrip("*")).expanduser().resolve()
    docs, figures = Path(args.docs).expanduser().resolve(), Path(args.figures).expanduser().resolve()
    specs = build_grid(budget, root)
    command = command_line("evidence.py", argv)  # what reproduces it
    started, start = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    toy_wall, toy_error, trained, failures = None, None, 0, []
    if not args.report_only:
        if budget.toy and not args.no_toy:
            toy_wall, toy_error = run_toy()
            if toy_error:
                print(f"warning: {toy_error}", file=sys.stderr)
        print(f"{len(specs)} runs in {root} ({budget.name} budget)")
        trained, failures = run_grid(specs, budget, extra=args.override, progress=not args.no_progress)
    if measured_nowhere((s.run_dir for s in specs), root):
        return 1 if failures or toy_error else 0
    wall = time.perf_counter() - start
    timing = record_invocation(root, {"started": started, "wall_s": wall,
                                  "trained": trained, "toy_s": toy_wall, "report_only": args.report_only,
                                  "failures": len(failures)})
    toy_png = REPO / "docs" / "figures" / "toy.png"  # written by recipes/ppl_toy.py at its defaults
    toy_png = toy_png if budget.toy and not args.no_toy and TOY_RECIPE.exists() and toy_png.exists() else None
    body, written = build_report(budget, specs, docs, figures, command,
                                 [t for t in timing if not t.get("report_only")] or timing, toy_png, args.name)
    from benchmarks.markdown import write_section

    write_section(docs, f"{args.name}-results", body, title="Evidence: PPL on generated data")
    print(body)
    print(f"wrote {docs}" + "".join(f", {p}" for p in written))
    print(f"wall time of this invocation: {wall:.0f} s ({wall / 60:.1f} min); trained {trained} run(s)"
          + (f"; toy {toy_wall:.0f} s" if toy_wall is not None else ""))
    if failures:
        print(f"{len(failures)} run(s) failed; rerun the same command to retry them.", file=sys.stderr)
    return 1 if failures or toy_error else 0


if __name__ == "__main__":
    sys.exit(main())
