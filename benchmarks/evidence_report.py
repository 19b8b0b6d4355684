"""Tables, verdicts and plots of the evidence grid (``benchmarks/evidence.py``): this project's experiment report,
kept beside its script, not installed.

:mod:`ppl_torchrl.reporting.aggregate` turns a *paper* sweep into the paper's tables (beside the published
numbers, grouped by suite). The evidence grid asks different questions of its runs, so it needs
different views of the same ``results.json`` / ``metrics.jsonl`` files:

* a results table with normalized score **and** success rate, mean ± std over seeds, per dataset;
* a verdict per dataset: did PPL^R beat, match or lose to its base algorithm ReBRAC (the rule:
  :func:`benchmarks.verdict.compare`);
* learning curves per dataset and a score-vs-w plot with ReBRAC (no potential) as a flat reference;
* a Markdown section that can be replaced in place between markers (:mod:`benchmarks.markdown`), so
  re-running the script rewrites the numbers in ``docs/evidence.md`` and leaves the hand-written text around them.

Reading runs and the mean ± std convention (population std over seeds, ``ddof=0``) come from
:mod:`ppl_torchrl.reporting.aggregate`, the ``mean ± std`` text from :mod:`~ppl_torchrl.reporting.tables`, curve
bands and figure files from :mod:`~ppl_torchrl.reporting.figures`; nothing is re-implemented here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ppl_torchrl.reporting.aggregate import Cell, RunResult
from ppl_torchrl.reporting.metrics import read_curve, seed_band
from ppl_torchrl.reporting.figures import draw_band, pyplot, save_figure
from benchmarks.verdict import Verdict

SCORE = "normalized_score_mean"
SUCCESS = "success_rate"

__all__ = [
    "SCORE", "SUCCESS", "Group", "make_cell", "results_table", "verdict_table", "ablation_table",
    "plot_learning_curves", "plot_w_ablation",
]


# ------------------------------------------------------------------------------------------ groups
@dataclass
class Group:
    """The runs of one method on one dataset (one per seed), under a display label.

    ``method`` is the display label ("PPL^R (w=8)"), ``key`` the stable id used to find groups
    ("ppl", "ppl@w=3", "rebrac"); ``w`` is set for the PPL runs of the ablation.
    """

    key: str
    method: str
    dataset: str
    runs: list[RunResult]
    w: float | None = None

    def cell(self, metric: str) -> Cell:
        return make_cell(self.runs, metric, method=self.method, dataset=self.dataset)

    @property
    def steps(self) -> list[int]:
        return sorted({r.steps for r in self.runs})


def make_cell(runs: Sequence[RunResult], metric: str, method: str = "", dataset: str = "") -> Cell:
    """Mean ± std (population, ``ddof=0``, as :class:`ppl_torchrl.reporting.aggregate.Cell`) of ``metric`` over runs.

    Raises ``ValueError`` if a run's final evaluation lacks a finite ``metric``: a table must not
    silently average fewer seeds than it says.
    """
    values, seeds = [], []
    for r in runs:
        v = r.value(metric)
        if v is None or math.isnan(v):
            raise ValueError(f"{r.source or r.run_dir}: final_eval has no finite {metric!r}; "
                             "was the run evaluated (eval.episodes > 0)?")
        values.append(v)
        seeds.append(r.seed)
    return Cell(suite="", dataset=dataset, method=method, values=values, seeds=seeds,
                run_dirs=[r.run_dir for r in runs if r.run_dir is not None])


# ------------------------------------------------------------------------------------------ tables
def results_table(groups: Sequence[Group]) -> str:
    """Markdown: a row per (dataset, method) with normalized score and success rate (%), mean ± std."""
    lines = ["| dataset | method | seeds | steps | normalized score | success rate (%) |",
             "|---|---|---|---|---:|---:|"]
    for g in groups:
        if not g.runs:
            lines.append(f"| {g.dataset} | {g.method} | 0 | – | – (no finished run) | – |")
            continue
        score, success = g.cell(SCORE), g.cell(SUCCESS)
        seeds = ",".join(str(s) for s in score.seeds)
        steps = "/".join(str(s) for s in g.steps)
        lines.append(f"| {g.dataset} | {g.method} | {seeds} | {steps} | {score.text()} | {success.text(100.0)} |")
    return "\n".join(lines) + "\n"


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """Markdown: per dataset, PPL^R vs ReBRAC scores, difference ± SE, seeds won, verdict."""
    lines = ["| dataset | PPL^R | ReBRAC | PPL − ReBRAC (± SE) | seeds PPL higher | verdict |",
             "|---|---:|---:|---:|---:|---|"]
    for v in verdicts:
        lines.append(f"| {v.dataset} | {v.ppl.text()} | {v.base.text()} | {v.diff:+.1f} ± {v.se:.1f} | "
                     f"{v.wins}/{v.paired} | **{v.outcome}** |")
    return "\n".join(lines) + "\n"


def ablation_table(w_groups: Sequence[Group], reference: Group | None) -> str:
    """Markdown: score and success per w, and the potential-free reference (ReBRAC) as the last row."""
    lines = ["| w | seeds | normalized score | success rate (%) |", "|---|---|---:|---:|"]
    for g in sorted(w_groups, key=lambda g: g.w if g.w is not None else math.inf):
        if not g.runs:
            lines.append(f"| {g.w:g} | 0 | – | – |")
            continue
        score, success = g.cell(SCORE), g.cell(SUCCESS)
        lines.append(f"| {g.w:g} | {','.join(map(str, score.seeds))} | {score.text()} | {success.text(100.0)} |")
    if reference is not None and reference.runs:
        score, success = reference.cell(SCORE), reference.cell(SUCCESS)
        lines.append(f"| no potential (ReBRAC) | {','.join(map(str, score.seeds))} | {score.text()} | "
                     f"{success.text(100.0)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ plots
def plot_learning_curves(groups_by_dataset: Mapping[str, Sequence[Group]], path: str | Path,
                         key: str = f"eval/{SCORE}", ylabel: str = "normalized score", dpi: int = 80) -> Path:
    """One panel per dataset, one line per method: mean over seeds with a ±std band (metrics.jsonl).

    A method's curve uses the evaluation steps that every one of its seeds reached. Raises
    ``ValueError`` when no run has a single point of ``key`` (nothing to draw).
    """
    plt = pyplot()
    datasets = list(groups_by_dataset)
    cols = min(3, max(len(datasets), 1))
    rows = math.ceil(len(datasets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False)
    drawn = 0
    for ax, dataset in zip(axes.flat, datasets):
        for g in groups_by_dataset[dataset]:
            dirs = [r.run_dir for r in g.runs if r.run_dir is not None]
            steps, mean, std = seed_band([read_curve(d, key) for d in dirs])
            if not steps:
                continue
            draw_band(ax, steps, mean, std, label=f"{g.method} (n={len(dirs)})", alpha=0.15)
            drawn += 1
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("gradient step", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(datasets):]:
        ax.set_visible(False)
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no run has any {key!r} row in its metrics.jsonl; nothing to plot.")
    fig.suptitle("Learning curves: mean ± std over seeds", fontsize=10)
    return save_figure(fig, path, dpi)


def plot_w_ablation(w_groups: Sequence[Group], reference: Group | None, path: str | Path,
                    metrics: Sequence[str] = (SCORE, SUCCESS), title: str = "", dpi: int = 80) -> Path:
    """Final metric vs w (mean ± std, seeds as dots), one panel per metric, with ReBRAC as a flat line.

    ReBRAC is PPL^R with the potential disabled and has no w: it is drawn as a horizontal line with
    its ±std band across the whole w axis. Success rates are shown in percent.
    """
    plt = pyplot()
    groups = sorted([g for g in w_groups if g.runs and g.w is not None], key=lambda g: g.w)
    if not groups:
        raise ValueError("no finished PPL run with a w value; nothing to plot.")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.4), squeeze=False)
    ws = [g.w for g in groups]
    for ax, metric in zip(axes.flat, metrics):
        scale = 100.0 if metric == SUCCESS else 1.0
        cells = [g.cell(metric) for g in groups]
        ax.errorbar(ws, [scale * c.mean for c in cells], yerr=[scale * c.std for c in cells], marker="o",
                    capsize=4, label="PPL^R (mean ± std)")
        for w, c in zip(ws, cells):
            ax.scatter([w] * len(c.values), [scale * v for v in c.values], s=10, color="gray", alpha=0.6, zorder=3)
        if reference is not None and reference.runs:
            ref = reference.cell(metric)
            lo, hi = min(ws) - 0.5, max(ws) + 0.5
            ax.hlines(scale * ref.mean, lo, hi, colors="C3", linestyles="--",
                      label="ReBRAC = potential disabled (no w; flat)")
            ax.fill_between([lo, hi], [scale * (ref.mean - ref.std)] * 2, [scale * (ref.mean + ref.std)] * 2,
                            color="C3", alpha=0.12)
        ax.set_xticks(ws)
        ax.set_xlabel("w (coefficient of unbalance)")
        ax.set_ylabel("final " + ("success rate (%)" if metric == SUCCESS else "normalized score"))
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi)
