"""One command for the long-budget evidence (issue 19): PPL^R vs ReBRAC at the authors' settings on mixed data,
with the mechanism measured, a trainable-potential variant and a w sweep.

    python benchmarks/long_evidence.py                     # train what is missing (2 runs at a time), then report
    python benchmarks/long_evidence.py --jobs 1            # one run at a time
    python benchmarks/long_evidence.py --report-only       # tables and figures from the runs as they are now
    python benchmarks/long_evidence.py --plan              # the grid, its cost and what is done, nothing else
    python benchmarks/long_evidence.py --potential-units   # dead units of each PPL^R run's potential (checkpoints)

The grid (every run on ``pointmaze-medium-mixed-gen-v0`` at its dataset config's settings: 3x256 networks,
lr 3e-4, batch 256, w = 8, potential lr = critic lr / 100 as in the authors' code, the compiled update):

* ``main``: PPL^R and ReBRAC, seeds 0-2, 300k gradient steps each;
* ``variant``: PPL^R whose potential can train (``optim.potential_lr_scale=1``: its lr equals the critic's),
  seeds 0-2, 100k steps (by then its potential is dead on every data and policy action: :data:`VARIANT_STEPS`).
  A labelled variant, never a default;
* ``w``: PPL^R with the trainable potential at w in {1, 2, 4, 16}, seeds 0-1, 100k steps; w = 8 is read from the
  ``variant`` runs at 100k steps (same settings, constant learning rates: their first 100k steps are a 100k run).
  Why the trainable potential: at the authors' potential lr and w = 8, f stays near 1e-5, and the sweep was planned
  on the guess that w would only scale that negligible term (the next group tests the guess); with a potential
  that can train, f became constant (its last hidden layer dead, f ~ -1e-4 on every action) within
  20k steps at w = 8. A constant f ~ 0 is what the dual of partial transport gives when the constraint
  pi#d <= w beta is not binding, so the sweep asks whether a smaller w (a tighter constraint) keeps f alive and
  what that does to the score;
* ``w`` at the authors' potential lr: w in {1, 16}, seeds 0-1, 100k steps (w = 8 from the main PPL^R runs at 100k),
  the test of that guess at the two extremes.

Each run is ``recipes/ppl_antmaze.py`` in its own folder under ``--runs-dir`` with ``resume=auto``: a relaunch
skips finished runs and continues interrupted ones from their last checkpoint (exactly, on the same CPU).
Runs advance in segments of 50k steps (``checkpoint.stop_after``, then a resume), ``--jobs`` at a time, each with
one torch thread and ``nice`` so that interactive work keeps the CPU: first every main run to 100k, then the
variant, then the w sweep, then the main runs to 300k (:func:`schedule`), so that an unfinished
grid still compares every seed at one step. Every evaluation also runs the mechanism probe
(``ppl_torchrl/training/probe.py``: f on policy vs data actions, Q, the actor's terms and the potential's share
of the actor's gradient, distances to the efficient and inefficient labelled actions), logged under ``probe/``.

When a main run has reached 300k, its last checkpoint is scored once more on :data:`FINAL_EPISODES` episodes
(``recipes/evaluate.py``, written to ``final_eval.json`` in its folder).

The report (section "long-budget" of ``docs/evidence.md``, figure ``docs/figures/long_budget.png``) compares the groups at the largest
step that every run of the compared groups has reached, and says how far each run got: it is honest about
an unfinished grid.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # `python benchmarks/long_evidence.py`: the repository root instead of this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.grid import (REPO, RECIPES, GridRun, Job, add_grid_arguments, in_segments, plan,  # noqa: E402
                             measured_nowhere, run_jobs, segment_jobs)
from benchmarks.long_evidence_report import FINAL_EVAL, SWEEPS, read_final_eval  # noqa: E402

RECIPE = RECIPES / "ppl_antmaze.py"
EVALUATE = RECIPES / "evaluate.py"
DATASET = "pointmaze-medium-mixed-gen-v0"
MAIN_STEPS, SWEEP_STEPS = 300_000, 100_000
# The variant stops at 100k: on every seed its potential is dead on the data's and the policy's actions by then
# (``--potential-units``: 0 of 256 units alive), so more steps would train ReBRAC plus a constant.
VARIANT_STEPS = 100_000
EVAL_EVERY = 10_000
EVAL_EPISODES = 10   # the dataset config's (about 17 s per evaluation here: 10 % of a 10k-step interval)
FINAL_EPISODES = 100  # the main runs' final policies, scored once more (10 episodes leave a ~15-point error per seed)
SEEDS, SWEEP_SEEDS = (0, 1, 2), (0, 1)
SWEEP_WS = (1.0, 2.0, 4.0, 16.0)  # w = 8 comes from the trainable-potential variant
# The test of the guess behind the trainable-potential sweep: the two extreme w at the authors' potential lr,
# seeds 0-1, 100k steps (w = 8 from the main PPL^R runs at 100k).
AUTHORS_LR_WS = (1.0, 16.0)
DEFAULT_W = 8.0


@dataclass(frozen=True)
class Run:
    group: str          # ppl | rebrac | ppl_trainable_f | ppl_trainable_f_w<w> | ppl_w<w>
    label: str          # for tables
    loss: str
    seed: int
    steps: int
    w: float | None = None
    potential_lr_scale: float | None = None

    def run_dir(self, root: Path) -> Path:
        return root / self.group / f"seed{self.seed}"

    def final_eval_path(self, root: Path) -> Path:
        return self.run_dir(root) / FINAL_EVAL

    def overrides(self, root: Path) -> list[str]:
        ov = {
            "loss": self.loss, "dataset": DATASET, "seed": self.seed, "run_dir": str(self.run_dir(root)),
            "resume": "auto", "optim.steps": self.steps, "eval.every": EVAL_EVERY, "eval.episodes": EVAL_EPISODES,
            "checkpoint.every": EVAL_EVERY, "compile.enabled": "true", "threads": 1, "logger.backend": "",
            "logger.progress": "false", "logger.log_every": 1000,
        }
        if self.w is not None:
            ov["hparams.w"] = self.w
        if self.potential_lr_scale is not None:
            ov["optim.potential_lr_scale"] = self.potential_lr_scale
        return [f"{k}={v}" for k, v in ov.items()]

    def grid_run(self, root: Path) -> GridRun:
        return GridRun(f"{self.group}-seed{self.seed}", RECIPE, self.run_dir(root), tuple(self.overrides(root)),
                       self.steps)


def build_grid() -> list[Run]:
    runs = []
    for seed in SEEDS:
        runs += [Run("ppl", "PPL^R (w=8)", "ppl", seed, MAIN_STEPS, DEFAULT_W),
                 Run("rebrac", "ReBRAC", "rebrac", seed, MAIN_STEPS)]
    for seed in SEEDS:
        runs.append(Run("ppl_trainable_f", "PPL^R, trainable potential (f lr = critic lr)", "ppl", seed, VARIANT_STEPS,
                        DEFAULT_W, potential_lr_scale=1.0))
    trainable, authors_lr = SWEEPS  # the sweeps' group names: one place, for the report
    for seed in SWEEP_SEEDS:
        for w in SWEEP_WS:
            runs.append(Run(f"{trainable.prefix}{w:g}", f"PPL^R, trainable potential (w={w:g})", "ppl", seed,
                            SWEEP_STEPS, w, potential_lr_scale=1.0))
    for seed in SWEEP_SEEDS:
        for w in AUTHORS_LR_WS:
            runs.append(Run(f"{authors_lr.prefix}{w:g}", f"PPL^R (w={w:g})", "ppl", seed, SWEEP_STEPS, w))
    return runs


# ------------------------------------------------------------------------------------------ progress and training
def run_state(run: Run, root: Path) -> tuple[int, bool]:
    """(last logged step, finished: the run wrote its results or logged its last step)."""
    g = run.grid_run(root)
    return g.reached(), g.finished()


SEGMENT = 50_000


def schedule(runs: list[Run]) -> list[tuple[Run, int]]:
    """(run, step to stop at) in the order they are trained: runs advance in segments of :data:`SEGMENT` steps, so
    that an unfinished grid holds every seed of a comparison at one step. First the main PPL^R and ReBRAC runs to
    100k, then the variant (100k), then the w sweeps (100k), then the main runs to their end."""
    main = [r for r in runs if r.group in ("ppl", "rebrac")]
    variant = [r for r in runs if r.group == "ppl_trainable_f"]
    sweep, authors_lr_sweep = ([r for r in runs if r.group.startswith(sw.prefix)] for sw in SWEEPS)
    return (in_segments(main, SEGMENT, end=SWEEP_STEPS) + in_segments(variant, SEGMENT, end=VARIANT_STEPS)
            + in_segments(sweep, SEGMENT, end=SWEEP_STEPS) + in_segments(authors_lr_sweep, SEGMENT, end=SWEEP_STEPS)
            + in_segments(main, SEGMENT, start=SWEEP_STEPS, end=MAIN_STEPS))


def jobs_to_run(runs: list[Run], root: Path) -> list[Job]:
    """The segments not reached yet, in :func:`schedule`'s order, then each main run's final evaluation that is
    missing (on :data:`FINAL_EPISODES` episodes; queued behind the run's last segment, with its key)."""
    todo = segment_jobs((r.grid_run(root), stop) for r, stop in schedule(runs))
    for r in runs:
        if r.group in ("ppl", "rebrac") and read_final_eval(r.run_dir(root), r.steps) is None:
            todo.append(Job(f"{r.group}-seed{r.seed} final evaluation", (
                sys.executable, str(EVALUATE), f"checkpoint={r.run_dir(root) / 'checkpoint.pt'}",
                f"episodes={FINAL_EPISODES}", "num_envs=10", f"output={r.final_eval_path(root)}"),
                key=f"{r.group}-seed{r.seed}"))
    return todo


def print_potential_units(runs: list[Run], root: Path) -> None:
    """The dead-ReLU check behind the docs' reading of the trainable potential (a constant f on every data action)."""
    from benchmarks.potential_units import checkpoint_potential_units

    print("alive units of the potential's last hidden layer, on the probe pairs with the data's / the policy's / "
          "uniform actions")
    for r in runs:
        path = r.run_dir(root) / "checkpoint.pt"
        counts = checkpoint_potential_units(path) if r.loss == "ppl" and path.exists() else None
        if counts is not None:
            print(f"  {r.group:18s} seed{r.seed} at {counts['step'] // 1000}k: {counts['data']:>3d} / "
                  f"{counts['policy']:>3d} / {counts['random']:>3d} of {counts['units']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_arguments(p, runs_dir=REPO / "runs" / "evidence_long")
    p.add_argument("--potential-units", action="store_true",
                   help="print, from each PPL^R run's latest checkpoint, how many units of the potential's last "
                        "hidden layer are alive on the data's, the policy's and uniform actions; train nothing")
    p.add_argument("--docs", default=str(REPO / "docs" / "evidence.md"))
    p.add_argument("--figures", default=str(REPO / "docs" / "figures"))
    args = p.parse_args(argv)
    root = Path(args.runs_dir).expanduser().resolve()
    runs = build_grid()
    total = sum(r.steps for r in runs)
    done = sum(min(run_state(r, root)[0], r.steps) for r in runs)
    print(f"{len(runs)} runs, {total / 1e6:.2f}M gradient steps; {done / 1e6:.2f}M done "
          f"({sum(run_state(r, root)[1] for r in runs)} runs finished) in {root}")
    if args.plan:
        print("\n".join(plan([r.grid_run(root) for r in runs])))
        return 0
    if args.potential_units:
        print_potential_units(runs, root)
        return 0
    failures = [] if args.report_only else run_jobs(jobs_to_run(runs, root), max(1, args.jobs), root / "logs")
    if measured_nowhere((r.run_dir(root) for r in runs), root):
        return 1 if failures else 0
    from benchmarks.long_evidence_report import write_report

    write_report(runs, root, Path(args.docs), Path(args.figures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
