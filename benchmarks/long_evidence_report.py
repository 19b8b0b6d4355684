"""The report of the long-budget evidence grid (``benchmarks/long_evidence.py``): scores, the mechanism, the w sweep.
This project's experiment report, kept beside its script, not installed.

Runs of one grid can be at different steps (it takes several CPU-hours and resumes across sessions), so every
comparison is made at the largest evaluation step that **every** run of the compared groups has reached, and the
report says which step that is and how far each run got. Scores and probe values (``probe/*``, logged at every
evaluation by :mod:`ppl_torchrl.training.probe`) are read from each run's ``metrics.jsonl``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ppl_torchrl.reporting.aggregate import Cell
from ppl_torchrl.reporting.figures import draw_band, pyplot, save_figure
from benchmarks.markdown import write_section
from ppl_torchrl.reporting.tables import mean_std, pm
from benchmarks.verdict import compare
from ppl_torchrl.reporting.metrics import read_metrics, seed_band

SCORE = "eval/normalized_score_mean"
#: a main run's final policy scored on many episodes (``recipes/evaluate.py`` ``output=``), in its run folder
FINAL_EVAL = "final_eval.json"


@dataclass(frozen=True)
class Sweep:
    """A w sweep of the grid: its groups are ``<prefix><w>``; ``w8_group``'s runs of the same seeds give w = 8."""

    prefix: str
    w8_group: str
    title: str  # what is swept, for the section's title
    w8_from: str  # where w = 8 comes from, in words
    figure: str


#: the grid's w sweeps: the trainable potential's, and the check of its extremes at the authors' potential lr
SWEEPS = (
    Sweep("ppl_trainable_f_w", "ppl_trainable_f", "PPL^R with the trainable potential",
          "the trainable-potential variant", "long_budget_sweep.png"),
    Sweep("ppl_w", "ppl", "PPL^R at the authors' potential lr = critic lr / 100", "the main PPL^R runs",
          "long_budget_sweep_authors_lr.png"),
)


def sweep_groups(groups, sweep: Sweep) -> list[str]:
    """The groups of ``sweep`` (``<prefix><w>``) in ``groups``, by increasing w."""
    def w_of(g: str) -> float | None:
        try:
            return float(g[len(sweep.prefix):]) if g.startswith(sweep.prefix) else None
        except ValueError:
            return None
    return sorted((g for g in groups if w_of(g) is not None), key=w_of)
#: the probe values in the mechanism table, in order, with their column titles
MECHANISM = (
    ("probe/q_policy", "Q(s,π(s))"), ("probe/q_data", "Q(s,a)"),
    ("probe/f_policy", "f(s,π(s))"), ("probe/f_data/efficient", "f(s,a) efficient"),
    ("probe/f_data/inefficient", "f(s,a) inefficient"),
    ("probe/dist/efficient", "‖π(s)−a‖ efficient"), ("probe/dist/inefficient", "‖π(s)−a‖ inefficient"),
    ("probe/term_bc", "BC term"), ("probe/term_q", "λQ term"), ("probe/term_f", "f term"),
    ("probe/grad_share_f", "f's share of actor grad"),
)
#: the sweep table's probe columns: where f sits (diverging, separating or constant) and where the policy goes
SWEEP_COLUMNS = (
    ("probe/f_policy", "f(s,π(s))"), ("probe/f_data/efficient", "f(s,a) efficient"),
    ("probe/f_data/inefficient", "f(s,a) inefficient"),
    ("probe/dist/efficient", "‖π(s)−a‖ efficient"), ("probe/dist/inefficient", "‖π(s)−a‖ inefficient"),
    ("probe/grad_share_f", "f's share of actor grad"),
)


def read_series(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every logged key -> {step: value} (the last row of a step wins; a line being written is skipped)."""
    out: dict[str, dict[int, float]] = {}
    for row in read_metrics(run_dir):
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)):
                out.setdefault(k, {})[int(row["step"])] = float(v)
    return out


def common_step(series: Sequence[dict], key: str = SCORE, at_most: int | None = None) -> int | None:
    """The largest step at which every run logged ``key`` (and ``<= at_most``); None if there is none."""
    sets = [set(s.get(key, {})) for s in series]
    if not sets or not all(sets):
        return None
    steps = set.intersection(*sets)
    if at_most is not None:
        steps = {s for s in steps if s <= at_most}
    return max(steps) if steps else None


def _mean_at(runs: Sequence[dict], key: str, step: int) -> float | None:
    """The mean over runs of ``key`` at ``step`` (runs that did not log it are left out); None if none did."""
    vals = [x[key][step] for x in runs if step in x.get(key, {})]
    return sum(vals) / len(vals) if vals else None


def steps_in_thousands(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def write_report(runs, root: Path, docs: Path, figures: Path) -> str:
    """Writes section ``long-budget-results`` of ``docs`` and ``figures/long_budget.png``; returns the section."""
    root = Path(root)
    series = {(r.group, r.seed): read_series(r.run_dir(root)) for r in runs}
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    labels = {g: rs[0].label for g, rs in groups.items()}

    lines = ["### Progress", "", "| run | seeds | steps reached (per seed) / target |", "|---|---|---|"]
    for g, rs in groups.items():
        reached = [max(series[(r.group, r.seed)].get(SCORE, {0: 0}), default=0) for r in rs]
        lines.append(f"| {labels[g]} | {', '.join(str(r.seed) for r in rs)} | "
                     f"{', '.join(f'{s // 1000}k' for s in reached)} / {rs[0].steps // 1000}k |")

    base = [g for g in ("ppl", "rebrac") if g in groups]
    step = common_step([series[(r.group, r.seed)] for g in base for r in groups[g]])
    variant = "ppl_trainable_f" if "ppl_trainable_f" in groups else None
    # the variant joins the table once every one of its runs has reached that step
    main = base + ([variant] if variant and step is not None and _all_reached(groups[variant], series, step) else [])
    lines += ["", "### PPL^R vs ReBRAC (and the trainable-potential variant)", ""]
    if step is None:
        lines.append("No step has been evaluated by every PPL^R and ReBRAC run yet.")
    else:
        if variant and variant not in main:
            lines += [f"The trainable-potential variant stops at {groups[variant][0].steps // 1000}k: it is compared "
                      "at its own last step below." if groups[variant][0].steps < step else
                      "The trainable-potential variant has not reached this step on every seed yet.", ""]
        lines += [f"All values at step **{step // 1000}k**, the largest evaluation step every run of these groups has "
                  "reached; mean ± std over seeds (ddof 0).", "", *comparison(groups, series, labels, main, step)]
        lines += last_evaluations_section(groups, series, labels, base, step)
        lines += final_section(groups, root, labels, base)
        if variant and variant not in main and groups[variant][0].steps < step:
            own = common_step([series[(r.group, r.seed)] for r in groups[variant]], at_most=groups[variant][0].steps)
            if own is not None:
                lines += ["", f"#### The trainable-potential variant at its last step, **{own // 1000}k**", "",
                          *comparison(groups, series, labels, [*base, variant], own)]
        figure_groups = main + ([variant] if variant and variant not in main and _any_score(groups[variant], series)
                                else [])
        lines += ["", figures_block(groups, series, labels, figure_groups, Path(figures), docs)]

    for sweep in SWEEPS:
        if sweep_groups(groups, sweep):
            lines += ["", *_sweep_section(groups, series, sweep, Path(figures), docs)]
    body = "\n".join(lines) + "\n"
    write_section(docs, "long-budget-results", body, title="Evidence: PPL on generated data")
    return body


def read_final_eval(run_dir: Path, steps: int) -> dict | None:
    """``recipes/evaluate.py``'s summary of a run's checkpoint (``final_eval.json``), if it scored the run's last
    step (``steps``); None otherwise."""
    path = Path(run_dir) / FINAL_EVAL
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return summary if int(summary.get("steps", -1)) == steps else None


#: the evaluations averaged per seed in the report's smoothed comparison
LAST_EVALUATIONS = 10


def last_evaluations_section(groups, series, labels, names: list[str], step: int) -> list[str]:
    """Each seed's mean score over its last :data:`LAST_EVALUATIONS` evaluations up to ``step``: one evaluation
    of 10 episodes swings by 10-20 points, an average over the last stretch of training much less."""
    steps = sorted(set.intersection(*[{s for s in series[(r.group, r.seed)].get(SCORE, {}) if s <= step}
                                      for g in names for r in groups[g]]))[-LAST_EVALUATIONS:]
    if len(steps) < LAST_EVALUATIONS:
        return []
    episodes = {int(sum(series[(r.group, r.seed)].get("eval/num_episodes", {}).get(s, 0) for s in steps))
                for g in names for r in groups[g]}
    per_seed = f"{min(episodes)} episodes per seed" if min(episodes) == max(episodes) else \
        f"{min(episodes)}-{max(episodes)} episodes per seed"
    lines = ["", f"#### Mean of the last {LAST_EVALUATIONS} evaluations ({steps[0] // 1000}k-{steps[-1] // 1000}k)", "",
             f"Each seed's score averaged over its last evaluations ({per_seed}, from the policies of the "
             "last stretch of training); mean ± std over seeds. Every evaluation starts its episodes from the same "
             "states (one evaluation seed, as the authors' code), so this average smooths the policy's changes "
             "between evaluations but keeps the draw of those few start states; the final evaluation below, if "
             "present, draws many more.", "",
             "| method | seeds | normalized score | per seed |", "|---|---|---:|---|"]
    cells = {}
    for g in names:
        vals = [sum(series[(r.group, r.seed)][SCORE][s] for s in steps) / len(steps) for r in groups[g]]
        cells[g] = Cell(suite="", dataset="", method=labels[g], values=vals, seeds=[r.seed for r in groups[g]],
                        run_dirs=[])
        lines.append(f"| {labels[g]} | {len(vals)} | {pm(*mean_std(vals))} | {', '.join(f'{v:.1f}' for v in vals)} |")
    return lines + versus_rebrac(cells, labels, names)


def versus_rebrac(cells, labels, names: list[str]) -> list[str]:
    """The comparison table of every method in ``names`` against ReBRAC (Welch SE, 2-SE rule)."""
    if "rebrac" not in cells:
        return []
    lines = ["", "| comparison | difference of means (± SE, Welch) | seeds higher | verdict (2 SE rule) |",
             "|---|---:|---|---|"]
    for g in [x for x in names if x != "rebrac"]:
        v = compare(cells[g], cells["rebrac"])
        lines.append(f"| {labels[g]} − ReBRAC | {v.diff:+.1f} ± {v.se:.1f} | {v.wins}/{v.paired} | {v.outcome} |")
    return lines


def final_section(groups, root: Path, labels, names: list[str]) -> list[str]:
    """The main runs' final policies, each scored on many episodes (``FINAL_EVAL`` files), once all have one."""
    finals = {g: [read_final_eval(r.run_dir(root), r.steps) for r in groups[g]] for g in names}
    if not names or not all(f is not None for fs in finals.values() for f in fs):
        return []
    episodes = sorted({int(f["final_eval"]["num_episodes"]) for fs in finals.values() for f in fs})
    steps = groups[names[0]][0].steps
    lines = ["", f"#### The final policies ({steps // 1000}k) on {'/'.join(map(str, episodes))} episodes each", "",
             "The last checkpoint of every run scored once more by `recipes/evaluate.py` (fixed evaluation seed; "
             "the same start states for every run), so that a seed's score carries a few points of episode noise "
             "instead of about 15; mean ± std over seeds.",
             "", "| method | seeds | normalized score | per seed | success rate per seed |", "|---|---|---:|---|---|"]
    cells = {}
    for g in names:
        vals = [f["final_eval"]["normalized_score_mean"] for f in finals[g]]
        success = [f["final_eval"].get("success_rate") for f in finals[g]]
        cells[g] = Cell(suite="", dataset="", method=labels[g], values=vals, seeds=[r.seed for r in groups[g]],
                        run_dirs=[])
        lines.append(f"| {labels[g]} | {len(vals)} | {pm(*mean_std(vals))} | {', '.join(f'{v:.1f}' for v in vals)} | "
                     + ", ".join("–" if x is None else f"{x:.2f}" for x in success) + " |")
    return lines + versus_rebrac(cells, labels, names)


def _all_reached(runs, series, step: int) -> bool:
    """Whether every one of ``runs`` logged a score at ``step``."""
    return all(step in series[(r.group, r.seed)].get(SCORE, {}) for r in runs)


def _any_score(runs, series) -> bool:
    """Whether any of ``runs`` logged a score."""
    return any(series[(r.group, r.seed)].get(SCORE) for r in runs)


def comparison(groups, series, labels, names: list[str], step: int, mechanism=MECHANISM,
                score_title: str = "normalized score") -> list[str]:
    """Scores per seed, each method against ReBRAC, and the mechanism probe (``mechanism``: its ``(key, title)``
    columns) of ``names`` at ``step``."""
    lines = [f"| method | seeds | {score_title} | per seed |", "|---|---|---:|---|"]
    cells = {}
    for g in names:
        vals = [series[(r.group, r.seed)][SCORE][step] for r in groups[g]]
        cells[g] = Cell(suite="", dataset="", method=labels[g], values=vals, seeds=[r.seed for r in groups[g]],
                        run_dirs=[])
        lines.append(f"| {labels[g]} | {len(vals)} | {pm(*mean_std(vals))} | {', '.join(f'{v:.1f}' for v in vals)} |")
    lines += versus_rebrac(cells, labels, names)
    lines += ["", "Mechanism at that step (probe set: 2048 dataset pairs; mean over seeds):", "",
              "| method | " + " | ".join(t for _, t in mechanism) + " |", "|---|" + "---:|" * len(mechanism)]
    for g in names:
        cols = [_fmt(_mean_at([series[(r.group, r.seed)] for r in groups[g]], key, step)) for key, _ in mechanism]
        lines.append(f"| {labels[g]} | " + " | ".join(cols) + " |")
    return lines


def _sweep_section(groups, series, sweep: Sweep, figures: Path, docs: Path) -> list[str]:
    """The w sweep at the largest step all its runs (and the w = 8 runs of the same seeds) reached, and its curves."""
    names = sweep_groups(groups, sweep)
    sweep_steps = groups[names[0]][0].steps
    seeds = {x.seed for x in groups[names[0]]}
    by_w = {float(g[len(sweep.prefix):]): list(groups[g]) for g in names}
    by_w[8.0] = [r for r in groups.get(sweep.w8_group, []) if r.seed in seeds]
    by_w = dict(sorted(by_w.items()))
    s = common_step([series[(r.group, r.seed)] for rs in by_w.values() for r in rs], at_most=sweep_steps)
    lines = [f"### w sweep ({sweep.title}, seeds {sorted(seeds)})", ""]
    if s is None:
        return lines + ["No step has been evaluated by every run of the sweep yet."]
    lines += [f"At step **{s // 1000}k** (target {sweep_steps // 1000}k; w = 8 read from {sweep.w8_from}); mean "
              "over seeds. f's share of the actor gradient is 0 where f has become constant; where the actor's tanh is "
              "saturated at the action bounds, every term's gradient is near 0 and the share says little.", "",
              "| w | normalized score | " + " | ".join(t for _, t in SWEEP_COLUMNS) + " |",
              "|---:|---:|" + "---:|" * len(SWEEP_COLUMNS)]
    for w, rs in by_w.items():
        ss = [series[(r.group, r.seed)] for r in rs]
        cols = [_fmt(_mean_at(ss, key, s)) for key, _ in SWEEP_COLUMNS]
        lines.append(f"| {w:g} | {pm(*mean_std([x[SCORE][s] for x in ss]))} | " + " | ".join(cols) + " |")

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    names = {f"w={w:g}": rs for w, rs in by_w.items()}
    panels = [(SCORE, "normalized score", lambda v: v), ("probe/f_data", "log10 |f(s,a)| on data actions",
                                                        lambda v: math.log10(max(-v, 1e-12))),
              ("probe/grad_share_f", "f's share of the actor gradient", lambda v: v)]
    for ax, (key, title, tf) in zip(axes, panels):
        band(ax, series, names, key, tf)
        ax.set_title(title)
        ax.set_xlabel("gradient steps")
        steps_in_thousands(ax)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = save_figure(fig, figures / sweep.figure)
    return lines + ["", figure_link(path, docs, "w sweep curves", "Mean ± std band over the sweep's seeds at every "
                              f"evaluation (w = 8: the same seeds of {sweep.w8_from}).")]


def band(ax, series, curves: dict[str, list], key: str, transform=lambda v: v, colors=None) -> None:
    """One mean ± std band per ``{label: runs}`` entry, of ``transform(key)`` at the steps every run has
    (``colors``: ``{label: color}``, so that a method keeps its color on panels that leave some out)."""
    for label, runs in curves.items():
        per_run = []
        for r in runs:
            by_step = series[(r.group, r.seed)].get(key, {})
            per_run.append((sorted(by_step), [transform(by_step[s]) for s in sorted(by_step)]))
        steps, mean, std = seed_band(per_run)
        if steps:
            draw_band(ax, steps, mean, std, label, color=(colors or {}).get(label))


def figure_link(path: Path, docs: Path, alt: str, caption: str) -> str:
    """Markdown for a figure written at ``path``, relative to the doc, with its caption."""
    rel = Path(os.path.relpath(path, Path(docs).parent)).as_posix()
    return f"![{alt}]({rel})\n\n*{caption}*"


def figures_block(groups, series, labels, main, figures: Path, docs: Path, name: str = "long_budget.png",
                  alt: str = "long-budget curves") -> str:
    """Four panels over steps (score; f on inefficient data actions; the policy's distance to them; f's share of the
    actor's gradient), a mean ± std band per method of ``main``, saved as ``figures / name``; returns its link."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [(SCORE, "normalized score", main), ("probe/f_data/inefficient", "f(s,a) on inefficient data actions",
                                                  [g for g in main if g != "rebrac"]),
              ("probe/dist/inefficient", "‖π(s)−a‖ on inefficient data", main),
              ("probe/grad_share_f", "f's share of the actor gradient", [g for g in main if g != "rebrac"])]
    colors = {labels[g]: f"C{i}" for i, g in enumerate(main)}
    for i, (ax, (key, title, names)) in enumerate(zip(axes.flat, panels)):
        band(ax, series, {labels[g]: groups[g] for g in names}, key, colors=colors)
        ax.set_title(title)
        steps_in_thousands(ax)
        if i >= 2:
            ax.set_xlabel("gradient steps")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    path = save_figure(fig, figures / name)
    return figure_link(path, docs, alt, "Mean ± std band over seeds at every evaluation.")
