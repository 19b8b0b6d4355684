"""ReBRAC against PPL^R or the potential preset on regenerated OGBench cube datasets, beside the FQL paper's numbers.

    python benchmarks/ogbench_evidence.py                 # train what is missing (2 runs at a time), then report
    python benchmarks/ogbench_evidence.py --report-only   # tables and figure from the runs as they are now
    python benchmarks/ogbench_evidence.py --plan          # the grid and how far each run got
    python benchmarks/ogbench_evidence.py --grid preset   # issue 34: loss=ppl_stable (w = 8) against ReBRAC
    python benchmarks/ogbench_evidence.py --grid double   # the same on cube-double-play, task 1

Needs the regenerated dataset (``python recipes/collect.py dataset_id=cube-single-play-gen-v0``, ~20-70 min on
one core). The authors' grid: ReBRAC and PPL^R (w = 8), seeds 0-2, :data:`STEPS` gradient steps each, on
``cube-single-play-gen-singletask-v0`` at the FQL paper's ReBRAC settings (GELU, critic LayerNorm, flax init,
lr 3e-4, batch 256, discount 0.99, alpha_actor 1 / alpha_critic 0 for cube-single) **except the network size**:
:data:`NETWORK` instead of FQL's 4 x 512, because the FQL size trains at ~27 steps/s compiled on one core of the
2-core CPU this ran on (200k steps: ~2 h per run, 12 h for the grid) and 3 x 256 at ~65-90. Evaluation as FQL's
(deterministic actor, 50 episodes of the task) every :data:`EVAL_EVERY` steps, with the mechanism probe.

Each run is ``recipes/ppl_ogbench.py`` in its own folder under ``--runs-dir`` with ``resume=auto``: runs advance in
segments (``Grid.segment``: 50k steps here), every run to one step before any goes further, so that an unfinished
grid still compares every seed at one step; a relaunch continues where the last one stopped (exactly, on the same
CPU).

The report (section ``ogbench-cube-single`` of ``docs/ogbench.md``, figure ``docs/figures/ogbench_cube_single.png``)
compares at the largest step every run reached, and as the FQL paper reports (each seed's mean of its last three
evaluations), with the 2-SE rule of ``benchmarks/verdict.py`` and the published numbers beside; its short table is
section ``ogbench-cube-single`` of :data:`SUMMARY` (docs/results.md).

``--grid preset`` (issue 34, fixed 2026-12-05 before any of its runs) is the same protocol for the potential preset:
``loss=ppl_stable`` (gradient penalty 5, f at the critic's lr; GELU units, as every network of these settings) at
w = 8, the comparison's w on pointmaze, against ReBRAC trained again beside it (same machine, same regenerated
file), seeds 0-2, in ``<runs-dir>/preset`` and its own section ``ogbench-cube-single-preset`` (the 2026-12-01 grid's
section and the short table of docs/results.md are left as they are). Stated before the runs (docs/algorithm.md:
under the penalty f pulls only where the policy's actions exceed w times the nearby data's density): at w = 8 f is
expected to stay near 0 with the BC term on, and the preset to match ReBRAC.

``--grid double`` (issue 34's hard dataset, fixed 2026-12-05 before any of its runs): the preset grid's two methods
and protocol on the regenerated ``cube-double-play`` (``recipes/collect.py dataset_id=cube-double-play-gen-v0``),
**task 1**, with the FQL paper's ReBRAC settings for cube-double (alpha_actor 0.1, alpha_critic 0: a BC term ten times
weaker than cube-single's), in ``<runs-dir>/double`` and section ``ogbench-cube-double-preset``, in segments of 25k
steps so that each session's share of the ~12 CPU-hours compares all six runs at one step. Task 1, not the default
task 2: the FQL paper's ReBRAC scores 7 ± 3 on task 2 after 1M steps (45 ± 6 on task 1), so at this machine's budget
(200k at most) both sides would sit at 0 on task 2 and a floor cannot separate two methods; on task 1 ReBRAC is far
from solved and has room both ways. The authors' PPL^R is not a third arm: on cube-single it equals ReBRAC (89.6 vs
89.6) and its f is inert at w = 8, and a third arm costs 6 more CPU-hours. Stated before the runs: with the weaker BC
term the policy can stray further from the data, so f's share of the actor's gradient may rise above cube-single's
0.002 %; if it stays below 1 % at every probe the potential is inert here too and the preset is expected to match
ReBRAC; if it rises above 1 %, the scores say whether the pull helps or hurts.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # `python benchmarks/ogbench_evidence.py`: the repository root instead of this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.grid import REPO, RECIPES, GridRun, Job, add_grid_arguments, in_segments, measured_nowhere, plan, \
    run_jobs, segment_jobs  # noqa: E402
from ppl_torchrl.registry.ogbench_ids import parse_ogbench_id  # noqa: E402
from benchmarks.long_evidence_report import SCORE, band, common_step, comparison, figure_link, read_series, \
    steps_in_thousands, versus_rebrac  # noqa: E402

RECIPE = RECIPES / "ppl_ogbench.py"
STEPS = 200_000
EVAL_EVERY = 25_000
EVAL_EPISODES = 50     # FQL main.py --eval_episodes
LAST_EVALUATIONS = 3   # FQL reports each seed's mean over its last three evaluations (800k, 900k, 1M there)
NETWORK = {"model.hidden_dim": 256, "model.num_hidden": 3}
#: the probe's columns here: OGBench data carry no efficient / inefficient labels, so f and the distance are on all
#: probe pairs (``ppl_torchrl/training/probe.py``)
MECHANISM = (
    ("probe/q_policy", "Q(s,π(s))"), ("probe/q_data", "Q(s,a)"), ("probe/f_policy", "f(s,π(s))"),
    ("probe/f_data", "f(s,a)"), ("probe/dist", "‖π(s)−a‖"), ("probe/term_bc", "BC term"),
    ("probe/term_q", "λQ term"), ("probe/term_f", "f term"), ("probe/grad_share_f", "f's share of actor grad"),
)
SEEDS = (0, 1, 2)
SUMMARY = REPO / "docs" / "results.md"  # where the short table goes (the README links it)
W = 8.0


@dataclass(frozen=True)
class Grid:
    """One comparison: its methods (group = loss name, label), the regenerated dataset it trains on (the FQL paper's
    row beside it is the published dataset's, ``ogbench_reference``), its docs section and figure, and its segment
    length."""
    methods: tuple[tuple[str, str], ...]
    dataset: str
    section: str
    figure: str
    segment: int = 50_000
    folder: str = ""  # under --runs-dir; the authors' grid lives at its root

    @property
    def environment(self) -> str:  # "cube-single-play": the FQL paper's Table 2 row
        parsed = parse_ogbench_id(self.dataset)
        return f"{parsed.family}-{parsed.kind}"

    @property
    def task(self) -> str:  # as the reports name it
        number = parse_ogbench_id(self.dataset).task  # the registry's default task where the id names none
        return f"the default task (task{number})" if "-singletask-v0" in self.dataset else f"task {number}"


#: the comparisons, each fixed before its runs (see the module's docstring)
GRIDS = {
    "authors": Grid((("ppl", f"PPL^R (w={W:g})"), ("rebrac", "ReBRAC")), "cube-single-play-gen-singletask-v0",
                    "ogbench-cube-single", "ogbench_cube_single.png"),
    "preset": Grid((("ppl_stable", f"ppl_stable (w={W:g})"), ("rebrac", "ReBRAC")), "cube-single-play-gen-singletask-v0",
                   "ogbench-cube-single-preset", "ogbench_cube_single_preset.png", folder="preset"),
    "double": Grid((("ppl_stable", f"ppl_stable (w={W:g})"), ("rebrac", "ReBRAC")),
                   "cube-double-play-gen-singletask-task1-v0", "ogbench-cube-double-preset",
                   "ogbench_cube_double_preset.png", segment=25_000, folder="double"),
}


@dataclass(frozen=True)
class Run:
    group: str   # ppl | rebrac | ppl_stable
    label: str
    loss: str
    seed: int
    steps: int = STEPS
    grid: str = "authors"

    def run_dir(self, root: Path) -> Path:
        return root / GRIDS[self.grid].folder / self.group / f"seed{self.seed}"

    def overrides(self, root: Path) -> list[str]:
        ov = {"loss": self.loss, "dataset": GRIDS[self.grid].dataset, "seed": self.seed,
              "run_dir": str(self.run_dir(root)),
              "resume": "auto", "optim.steps": self.steps, "eval.every": EVAL_EVERY, "eval.episodes": EVAL_EPISODES,
              "checkpoint.every": EVAL_EVERY, "compile.enabled": "true", "threads": 1, "logger.backend": "",
              "logger.progress": "false", "logger.log_every": 1000, **NETWORK}
        if self.loss in ("ppl", "ppl_stable"):
            ov["hparams.w"] = W
        return [f"{k}={v}" for k, v in ov.items()]

    def grid_run(self, root: Path) -> GridRun:
        name = f"{self.group}-seed{self.seed}" if self.grid == "authors" else f"{self.grid}-{self.group}-seed{self.seed}"
        return GridRun(name, RECIPE, self.run_dir(root), tuple(self.overrides(root)), self.steps)


def build_grid(grid: str = "authors") -> list[Run]:
    return [Run(g, label, g, seed, grid=grid) for seed in SEEDS for g, label in GRIDS[grid].methods]


def reached(run: Run, root: Path) -> int:
    return run.grid_run(root).reached()


def jobs_to_run(runs: list[Run], root: Path) -> list[Job]:
    """Every run to each segment's end before any run goes further (one job per run and segment not reached)."""
    return segment_jobs((r.grid_run(root), stop) for r, stop in in_segments(runs, GRIDS[runs[0].grid].segment))


# ------------------------------------------------------------------------------------------------------ report
def _published_lines(grid: Grid) -> list[str]:
    from ppl_torchrl.evaluation.published import OGBENCH_ENVIRONMENTS, ogbench_reference

    env = grid.environment
    lines = [f"| method (FQL paper, published `{env}` data, 4 x 512 networks, 1M steps, 8 seeds) | "
             f"{grid.task.removeprefix('the ')} | 5 tasks |", "|---|---:|---:|"]
    for method, title in (("bc", "BC"), ("iql", "IQL"), ("rebrac", "ReBRAC"), ("fql", "FQL")):
        task, suite = ogbench_reference(method, grid.dataset), OGBENCH_ENVIRONMENTS[method][env]
        lines.append(f"| {title} | {task.mean:g} ± {task.std:g} | {suite.mean:g} ± {suite.std:g} |")
    return lines


def write_report(runs: list[Run], root: Path, docs: Path, figures: Path, summary_doc: Path | None = None) -> str:
    from ppl_torchrl.reporting.aggregate import Cell
    from ppl_torchrl.reporting.figures import pyplot, save_figure
    from benchmarks.markdown import write_section
    from ppl_torchrl.reporting.tables import mean_std, pm

    series = {(r.group, r.seed): read_series(r.run_dir(root)) for r in runs}
    summary = "Not measured yet: `python benchmarks/ogbench_evidence.py`.\n"
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    labels = {g: rs[0].label for g, rs in groups.items()}
    names = list(groups)
    grid = runs[0].grid
    spec = GRIDS[grid]
    lines = ["| run | steps reached per seed / target |", "|---|---|"]
    lines += [f"| {labels[g]} | {', '.join(f'{reached(r, root) // 1000}k' for r in groups[g])} / {STEPS // 1000}k |"
              for g in names]
    step = common_step([series[(r.group, r.seed)] for r in runs])
    if step is None:
        lines += ["", "No step has been evaluated by every run yet."]
    else:
        lines += ["", f"#### At step **{step // 1000}k**, the largest evaluation step every run has reached", "",
                  f"Success rate x 100 on {spec.task} (one evaluation of 50 episodes); mean ± std over seeds (ddof 0).",
                  "", *comparison(groups, series, labels, names, step, MECHANISM, "success x 100")]
        evals = sorted(set.intersection(*[{s for s in series[(r.group, r.seed)].get(SCORE, {}) if s <= step}
                                          for r in runs]))[-LAST_EVALUATIONS:]
        if len(evals) == LAST_EVALUATIONS:
            lines += ["", f"#### As the FQL paper reports: each seed's mean of its last {LAST_EVALUATIONS} evaluations "
                      f"({', '.join(f'{s // 1000}k' for s in evals)})", "",
                      "| method | seeds | success x 100 | per seed |", "|---|---|---:|---|"]
            cells = {}
            for g in names:
                vals = [sum(series[(r.group, r.seed)][SCORE][s] for s in evals) / len(evals) for r in groups[g]]
                cells[g] = Cell(suite="", dataset="", method=labels[g], values=vals,
                                seeds=[r.seed for r in groups[g]], run_dirs=[])
                lines.append(f"| {labels[g]} | {len(vals)} | {pm(*mean_std(vals))} | "
                             f"{', '.join(f'{v:.1f}' for v in vals)} |")
            lines += versus_rebrac(cells, labels, names)
            if grid == "authors":
                summary = _short_summary(cells, evals, step, {labels[g]: [reached(r, root) for r in groups[g]]
                                                              for g in names})
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        colors = {labels[g]: f"C{i}" for i, g in enumerate(names)}
        for ax, (key, title, gs) in zip(axes, [(SCORE, f"success rate x 100 ({spec.task.removeprefix('the ')})", names),
                                               ("probe/q_policy", "Q(s, π(s)) on the probe pairs", names),
                                               ("probe/dist", "‖π(s) − a‖ on the probe pairs", names)]):
            band(ax, series, {labels[g]: groups[g] for g in gs}, key, colors=colors)
            ax.set_title(title)
            ax.set_xlabel("gradient steps")
            steps_in_thousands(ax)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        path = save_figure(fig, Path(figures) / spec.figure)
        lines += ["", figure_link(path, docs, f"{spec.environment} curves",
                                  "Mean ± std band over the 3 seeds at every evaluation.")]
    lines += ["", "#### Published (FQL paper, Tables 2-3: mean ± std over 8 seeds, each seed's mean of its "
              "evaluations at 800k, 900k and 1M steps)", "", *_published_lines(spec)]
    body = "\n".join(lines) + "\n"
    write_section(docs, spec.section, body)
    if summary_doc is not None and grid == "authors":  # the preset grid has no short table
        write_section(summary_doc, "ogbench-cube-single", summary)
    return body


def _short_summary(cells: dict, evals: list[int], step: int, reached_steps: dict[str, list[int]]) -> str:
    """The short table of docs/results.md: our two methods as the FQL paper reports (mean of the last evaluations),
    beside the paper's numbers, and the verdict."""
    from ppl_torchrl.evaluation.published import ogbench_reference
    from benchmarks.verdict import compare

    ours = f"regenerated (`-gen`), 3 x 256, {step // 1000}k steps, {len(SEEDS)} seeds"
    theirs = "published, 4 x 512, 1M steps, 8 seeds"
    rows = [f"| {cells[g].method} (ours) | {ours} | {cells[g].text()} |" for g in ("rebrac", "ppl")]
    rows += [f"| {title} (FQL paper) | {theirs} | {ref.mean:g} ± {ref.std:g} |" for title, ref in
             (("ReBRAC", ogbench_reference("rebrac", GRIDS["authors"].dataset)),
              ("FQL", ogbench_reference("fql", GRIDS["authors"].dataset)))]
    v = compare(cells["ppl"], cells["rebrac"])
    progress = "; ".join(f"{label} {', '.join(f'{s // 1000}k' for s in steps)}" for label, steps in reached_steps.items())
    unfinished = "" if step >= STEPS else (f" **Unfinished** (target {STEPS // 1000}k): the runs are at {progress} "
                                           f"(seeds {', '.join(map(str, SEEDS))}); this compares them at {step // 1000}k.")
    return "\n".join([
        "| cube-single, default task: success x 100 | data, networks, budget, seeds | mean ± std over seeds |",
        "|---|---|---:|", *rows, "",
        f"Ours: each seed's mean of its evaluations at {', '.join(f'{s // 1000}k' for s in evals)} (50 episodes each), "
        f"as the FQL paper averages 800k, 900k and 1M. PPL^R − ReBRAC = {v.diff:+.1f} ± {v.se:.1f} (Welch SE), "
        f"{v.wins}/{v.paired} seeds higher: **{v.outcome}** by the 2-SE rule.{unfinished}"]) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_arguments(p, runs_dir=REPO / "runs" / "ogbench_cube_single")
    p.add_argument("--docs", default=str(REPO / "docs" / "ogbench.md"))
    p.add_argument("--figures", default=str(REPO / "docs" / "figures"))
    p.add_argument("--summary", default=str(SUMMARY), help="where the short table goes ('' for nowhere)")
    p.add_argument("--grid", choices=sorted(GRIDS), default="authors",
                   help="authors: PPL^R and ReBRAC (2026-12-01); preset: loss=ppl_stable and ReBRAC (issue 34); "
                        "double: the preset against ReBRAC on cube-double-play task 1 (issue 34)")
    args = p.parse_args(argv)
    root = Path(args.runs_dir).expanduser().resolve()
    runs = build_grid(args.grid)
    done = sum(min(reached(r, root), r.steps) for r in runs)
    print(f"{len(runs)} runs, {len(runs) * STEPS / 1e6:.2f}M gradient steps; {done / 1e6:.2f}M done in {root}")
    if args.plan:
        print("\n".join(plan([r.grid_run(root) for r in runs])))
        return 0
    failures = [] if args.report_only else run_jobs(jobs_to_run(runs, root), max(1, args.jobs), root / "logs")
    if measured_nowhere((r.run_dir(root) for r in runs), root):
        return 1 if failures else 0
    write_report(runs, root, Path(args.docs), Path(args.figures), Path(args.summary) if args.summary else None)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
