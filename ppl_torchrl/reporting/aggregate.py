"""Collect finished runs of a sweep and turn them into the paper's tables, CSV and plots.

A sweep (``recipes/config/sweep/*.yaml``) leaves one folder per run with ``results.json`` and
``metrics.jsonl`` (:mod:`ppl_torchrl.training.run_logger`); with ``logger.backend=wandb`` in online mode the same
numbers are in the wandb run's config and summary (``final/<metric>``). This module reads either,
groups runs by (method, dataset), and reports mean ± std over seeds beside the published numbers of
:mod:`ppl_torchrl.evaluation.published`, with totals per suite as the paper prints them.

    runs = collect_local(["runs/antmaze_table1"])
    rows = summarize(runs)
    print(markdown_tables(rows))

The std is the population std over seeds (``ddof=0``, as numpy's default and CORL's reports).
"""
from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.evaluation.published import (
    OGBENCH_ENVIRONMENTS, PAPER_NAMES, SUITE_ORDER, reference, reference_total,
)
from ppl_torchrl.reporting.figures import draw_band, pyplot, save_figure
from ppl_torchrl.registry import get_dataset_spec, parse_ogbench_id
from ppl_torchrl.reporting.tables import MISSING, mean_std, pm
from ppl_torchrl.reporting.metrics import read_curve, seed_band

RESULTS = "results.json"
DEFAULT_METRIC = "normalized_score_mean"


# ------------------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class RunResult:
    """The final evaluation of one training run (one seed of one method on one dataset).

    ``method`` is the loss name, suffixed with ``@w=<w>`` when the run belongs to a w sweep (see
    :func:`label_methods`); ``final`` holds every scalar of the final evaluation.
    """

    algorithm: str
    dataset: str
    seed: int
    steps: int
    final: dict
    w: float | None = None
    sweep: str | None = None
    source: str = ""                     # results.json path or wandb run path
    run_dir: Path | None = None          # local folder (learning curves come from its metrics.jsonl)
    method: str = ""

    def value(self, metric: str = DEFAULT_METRIC) -> float | None:
        v = self.final.get(metric)
        return None if v is None else float(v)


def _w_of(config: dict) -> float | None:
    loss = config.get("loss") or {}
    w = loss.get("w")
    try:
        return None if w is None else float(w)
    except (TypeError, ValueError):
        return None


def run_from_results(data: dict, source: str = "", run_dir: Path | None = None) -> RunResult:
    """A :class:`RunResult` from the content of a ``results.json`` (see ``Trainer.finish``)."""
    missing = [k for k in ("algorithm", "dataset", "seed", "final_eval") if k not in data]
    if missing:
        raise KeyError(f"{source or 'results'} lacks {missing}; is it a results.json written by the trainer?")
    final = data["final_eval"] or {}
    scalars = {k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    config = data.get("config") or {}
    return RunResult(
        algorithm=str(data["algorithm"]), dataset=str(data["dataset"]), seed=int(data["seed"]),
        steps=int(data.get("steps", 0)), final=scalars, w=_w_of(config), sweep=config.get("sweep_name"),
        source=source, run_dir=run_dir, method=str(data["algorithm"]),
    )


def load_results(path: str | Path) -> RunResult:
    """Reads one ``results.json``; a clear error if it is unreadable or not a trainer result."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and rerun the run with resume=auto.") from None
    return run_from_results(data, source=str(path), run_dir=path.parent)


def collect_local(roots: Iterable[str | Path], progress: bool = False) -> list[RunResult]:
    """Every finished run (a ``results.json``) under the folders ``roots``, searched recursively.

    Runs without ``results.json`` (still training, or killed) are not finished and are skipped.
    """
    from tqdm import tqdm

    paths: list[Path] = []
    for root in roots:
        root = Path(root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist: pass the sweep_root of a sweep (e.g. runs/antmaze_table1).")
        paths.extend([root] if root.name == RESULTS else sorted(root.rglob(RESULTS)))
    return [load_results(p) for p in tqdm(paths, desc="results.json", disable=not progress)]


def run_from_wandb(config: dict, summary: dict, source: str = "") -> RunResult | None:
    """A :class:`RunResult` from a wandb run's config and summary, or ``None`` if it has no final eval.

    The recipe logs the resolved Hydra config as the wandb config and ``final/<metric>`` summary keys
    (:class:`ppl_torchrl.training.run_logger.RunLogger`).
    """
    final = {k[len("final/"):]: v for k, v in summary.items()
             if k.startswith("final/") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not final:
        return None
    try:
        algorithm, dataset, seed = config["loss"]["name"], config["dataset"]["id"], int(config["seed"])
    except (KeyError, TypeError):
        raise KeyError(f"wandb run {source} has no loss.name / dataset.id / seed in its config: "
                       "was it logged by a ppl-torchrl recipe?") from None
    return RunResult(
        algorithm=str(algorithm), dataset=str(dataset), seed=seed,
        steps=int(summary.get("_step", config.get("optim", {}).get("steps", 0)) or 0), final=final,
        w=_w_of(config), sweep=config.get("sweep_name"), source=source, method=str(algorithm),
    )


def collect_wandb(project: str, entity: str | None = None, sweep: str | None = None, api=None,
                  progress: bool = False) -> list[RunResult]:
    """Finished runs of a wandb project (online), optionally only those of sweep config ``sweep``.

    Needs network access and a wandb login (``WANDB_API_KEY``). Runs logged offline must be uploaded
    first (``wandb sync runs/<sweep>/**/wandb/offline-run-*``); or aggregate their local folders instead.
    """
    from tqdm import tqdm

    if api is None:
        import wandb

        try:
            api = wandb.Api(timeout=30)
        except Exception as err:  # wandb raises several types for no key / no network
            raise RuntimeError(f"cannot reach the wandb API ({err}). Log in (wandb login) and check the "
                               "network, or aggregate the local run folders instead.") from None
    path = f"{entity}/{project}" if entity else project
    filters = {"state": "finished"}
    if sweep:
        filters["config.sweep_name"] = sweep
    try:
        runs = list(api.runs(path, filters=filters))
    except Exception as err:
        raise RuntimeError(f"cannot list wandb runs of {path!r} ({err}).") from None
    out = []
    for run in tqdm(runs, desc="wandb runs", disable=not progress):
        result = run_from_wandb(dict(run.config), dict(run.summary), source=f"wandb:{'/'.join(run.path)}")
        if result is not None:
            out.append(result)
    return out


def deduplicate(runs: Sequence[RunResult]) -> list[RunResult]:
    """One run per (algorithm, dataset, w, seed): the first wins (local folders are listed first)."""
    seen: dict[tuple, RunResult] = {}
    for r in runs:
        key = (r.algorithm, r.dataset, r.w, r.seed)
        if key in seen:
            warnings.warn(f"duplicate run {key}: keeping {seen[key].source}, ignoring {r.source}")
            continue
        seen[key] = r
    return list(seen.values())


def label_methods(runs: Sequence[RunResult]) -> list[RunResult]:
    """Sets ``method``: the loss name, plus ``@w=<w>`` for losses run with several values of w."""
    ws: dict[str, set] = defaultdict(set)
    for r in runs:
        ws[r.algorithm].add(r.w)
    out = []
    for r in runs:
        method = f"{r.algorithm}@w={r.w:g}" if len(ws[r.algorithm]) > 1 and r.w is not None else r.algorithm
        out.append(RunResult(**{**r.__dict__, "method": method}))
    return out


# ------------------------------------------------------------------------------------------ tables
@dataclass
class Cell:
    """Mean ± std over seeds of one (method, dataset), beside its published value."""

    suite: str
    dataset: str
    method: str
    values: list[float]
    seeds: list[int]
    ref_mean: float | None = None
    ref_std: float | None = None
    run_dirs: list[Path] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float:
        """Over seeds, ddof 0 (the project's convention: :func:`~ppl_torchrl.reporting.tables.mean_std`)."""
        return mean_std(self.values)[1]

    def text(self, scale: float = 1.0) -> str:
        """``mean ± std`` (times ``scale``) as every table writes it; :data:`~ppl_torchrl.reporting.tables.MISSING`
        without values."""
        return pm(self.mean, self.std, scale=scale) if self.values else MISSING


def suite_of(dataset_id: str) -> str:
    """The registry's suite of ``dataset_id`` (``antmaze``, ``mujoco``, ``adroit``, ...), or ``other``."""
    for suite, ids in SUITE_ORDER.items():
        if dataset_id in ids:
            return suite
    try:
        return get_dataset_spec(dataset_id).suite
    except KeyError:
        return "other"


def _base_method(method: str) -> str:
    return method.split("@", 1)[0]


def summarize(runs: Sequence[RunResult], metric: str = DEFAULT_METRIC) -> list[Cell]:
    """Groups runs by (method, dataset) into :class:`Cell` s, in the paper's row order per suite.

    Runs whose final eval lacks ``metric`` (or is NaN) are left out with a warning; the reference is
    the published value of the base loss (``ppl`` for ``ppl@w=12``) only when ``metric`` is the
    normalized score, the only metric the paper reports.
    """
    runs = label_methods(deduplicate(runs))
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for r in runs:
        v = r.value(metric)
        if v is None or math.isnan(v):
            warnings.warn(f"{r.source}: final eval has no finite {metric!r}; left out")
            continue
        groups[(r.method, r.dataset)].append(r)
    cells = []
    for (method, dataset), group in groups.items():
        group.sort(key=lambda r: r.seed)
        ref = reference(_base_method(method), dataset) if metric == DEFAULT_METRIC else None
        cells.append(Cell(
            suite=suite_of(dataset), dataset=dataset, method=method,
            values=[r.value(metric) for r in group], seeds=[r.seed for r in group],
            ref_mean=None if ref is None else ref.mean, ref_std=None if ref is None else ref.std,
            run_dirs=[r.run_dir for r in group if r.run_dir is not None],
        ))

    def order(c: Cell):
        ids = SUITE_ORDER.get(c.suite, [])
        return (list(SUITE_ORDER).index(c.suite) if c.suite in SUITE_ORDER else len(SUITE_ORDER), c.suite,
                ids.index(c.dataset) if c.dataset in ids else len(ids), c.dataset, c.method)

    return sorted(cells, key=order)


def _method_title(method: str) -> str:
    base, _, w = method.partition("@")
    title = PAPER_NAMES.get(base, base)
    return f"{title} ({w})" if w else title


def suite_tables(cells: Sequence[Cell]) -> dict[str, dict]:
    """Per suite: its datasets (paper order), methods, cells by (dataset, method) and totals.

    A total is the sum of the per-dataset means; it is marked partial (``complete=False``) when the
    method lacks some of the suite's datasets that other methods have.
    """
    out: dict[str, dict] = {}
    for c in cells:
        t = out.setdefault(c.suite, {"datasets": [], "methods": [], "cells": {}, "totals": {}})
        if c.dataset not in t["datasets"]:
            t["datasets"].append(c.dataset)
        if c.method not in t["methods"]:
            t["methods"].append(c.method)
        t["cells"][(c.dataset, c.method)] = c
    for suite, t in out.items():
        t["methods"].sort()
        for m in t["methods"]:
            have = [t["cells"][(d, m)] for d in t["datasets"] if (d, m) in t["cells"]]
            t["totals"][m] = {
                "total": sum(c.mean for c in have), "complete": len(have) == len(t["datasets"]),
                "n_datasets": len(have),
                "ref_total": reference_total(_base_method(m), suite)
                if len(t["datasets"]) == len(SUITE_ORDER.get(suite, [])) else None,
            }
    return out


def markdown_tables(cells: Sequence[Cell], metric: str = DEFAULT_METRIC) -> str:
    """One Markdown table per suite: a row per dataset, for each method ``ours (n seeds) | paper``."""
    if not cells:
        return "No finished runs (no results.json) found.\n"
    parts = []
    for suite, t in suite_tables(cells).items():
        head = ["dataset"]
        for m in t["methods"]:
            head += [f"{_method_title(m)} (ours)", f"{_method_title(m)} (paper)"]
        lines = [f"### {suite} — {metric}, mean ± std over seeds (n = seeds)", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in t["datasets"]:
            row = [d]
            for m in t["methods"]:
                c = t["cells"].get((d, m))
                ref = reference(_base_method(m), d) if metric == DEFAULT_METRIC else None
                row += [MISSING if c is None else f"{c.text()} (n={c.n})",
                        MISSING if ref is None else pm(ref.mean, ref.std) + _published_data_mark(d)]
            lines.append("| " + " | ".join(row) + " |")
        if suite == "ogbench":  # the FQL paper reports each environment's mean over its 5 tasks, not a total
            lines += _ogbench_environment_rows(t, metric)
            parts.append("\n".join(lines + ["", OGBENCH_NOTE]))
            continue
        row = ["**total**"]
        for m in t["methods"]:
            tot = t["totals"][m]
            ours = f"{tot['total']:.1f}" + ("" if tot["complete"] else f" (partial: {tot['n_datasets']} datasets)")
            row += [ours, MISSING if tot["ref_total"] is None else f"{tot['ref_total']:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


OGBENCH_NOTE = ("OGBench paper columns: the FQL paper (Tables 2-3; 8 seeds, 4 x 512 networks, 1M steps, each seed's "
                "mean of its evaluations at 800k, 900k, 1M). (published data): the number was measured on OGBench's "
                "published dataset, not on the regenerated `-gen` one of this row.")


def _ogbench_row(dataset_id: str) -> tuple[str, bool, bool] | None:
    """(environment, regenerated, explicit task) of an OGBench single-task id; ``None`` for other ids."""
    parsed = parse_ogbench_id(dataset_id)
    if parsed is None:
        return None
    return f"{parsed.family}-{parsed.kind}", parsed.generated, not dataset_id.endswith("-singletask-v0")


def _published_data_mark(dataset_id: str) -> str:
    row = _ogbench_row(dataset_id)
    return " (published data)" if row is not None and row[1] else ""


def _ogbench_environment_rows(table: dict, metric: str) -> list[str]:
    """One row per OGBench environment where a method has all 5 tasks: the mean of its 5 task means (ours) beside
    the FQL paper's Table 2 (the default-task alias ``...-singletask-v0`` is not a sixth task)."""
    by_env: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for d in table["datasets"]:
        row = _ogbench_row(d)
        if row is not None and row[2]:
            by_env[row[:2]].append(d)
    rows = []
    for (env, generated), ids in by_env.items():
        row = [f"**{env}{'-gen' if generated else ''} (5 tasks)**"]
        for m in table["methods"]:
            ours = [table["cells"][(d, m)].mean for d in ids if (d, m) in table["cells"]]
            ref = OGBENCH_ENVIRONMENTS.get(_base_method(m), {}).get(env) if metric == DEFAULT_METRIC else None
            row += [f"{sum(ours) / 5:.1f}" if len(ours) == 5 else MISSING,
                    MISSING if ref is None else pm(ref.mean, ref.std) + (" (published data)" if generated else "")]
        if any(cell != MISSING for cell in row[1::2]):
            rows.append("| " + " | ".join(row) + " |")
    return rows


CSV_COLUMNS = ["suite", "dataset", "method", "n_seeds", "seeds", "mean", "std", "paper_mean", "paper_std"]


def csv_table(cells: Sequence[Cell]) -> str:
    """The cells in long form (one row per method and dataset), for spreadsheets and pandas."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for c in cells:
        writer.writerow([c.suite, c.dataset, c.method, c.n, " ".join(map(str, c.seeds)), repr(c.mean), repr(c.std),
                         "" if c.ref_mean is None else c.ref_mean, "" if c.ref_std is None else c.ref_std])
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ output
def plot_bars(cells: Sequence[Cell], out_dir: Path) -> list[Path]:
    """One grouped bar chart per suite: ours (mean, std error bar) per method, paper values as markers."""
    plt = pyplot()

    paths = []
    for suite, t in suite_tables(cells).items():
        datasets, methods = t["datasets"], t["methods"]
        width = 0.8 / max(len(methods), 1)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(datasets) * max(1, len(methods)) ** 0.5), 4))
        for i, m in enumerate(methods):
            xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(datasets))]
            cs = [t["cells"].get((d, m)) for d in datasets]
            bars = ax.bar(xs, [c.mean if c else 0.0 for c in cs], width, yerr=[c.std if c else 0.0 for c in cs],
                          capsize=3, label=f"{_method_title(m)} (ours)")
            refs = [reference(_base_method(m), d) for d in datasets]
            rx = [x for x, r in zip(xs, refs) if r is not None]
            if rx:
                ax.scatter(rx, [r.mean for r in refs if r is not None], marker="_", s=300, linewidths=2.5,
                           color=bars.patches[0].get_facecolor(), zorder=3,
                           label=f"{_method_title(m)} (paper)")
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels([d.removesuffix("-v2").removesuffix("-v1").removesuffix("-v0") for d in datasets],
                           rotation=30, ha="right")
        ax.set_ylabel("normalized score")
        ax.set_title(f"{suite}: final normalized score, mean ± std over seeds")
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, Path(out_dir) / f"bars_{suite}.png"))
    return paths


def plot_curves(cells: Sequence[Cell], out_dir: Path, key: str = f"eval/{DEFAULT_METRIC}") -> list[Path]:
    """Learning curves per suite (a panel per dataset, a line per method), mean ± std band over seeds.

    Curves come from the local runs' ``metrics.jsonl``; cells without local run folders are skipped.
    """
    plt = pyplot()

    paths = []
    for suite, t in suite_tables(cells).items():
        datasets = t["datasets"]
        cols = min(3, len(datasets))
        rows = math.ceil(len(datasets) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
        drawn = False
        for ax, d in zip(axes.flat, datasets):
            for m in t["methods"]:
                c = t["cells"].get((d, m))
                if c is None or not c.run_dirs:
                    continue
                steps, mean, std = seed_band([read_curve(p, key) for p in c.run_dirs])
                if not steps:
                    continue
                draw_band(ax, steps, mean, std, label=f"{_method_title(m)} (n={len(c.run_dirs)})")
                drawn = True
            ax.set_title(d, fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel(key.split("/")[-1], fontsize=8)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(datasets):]:
            ax.set_visible(False)
        fig.tight_layout()
        if drawn:
            paths.append(save_figure(fig, Path(out_dir) / f"curves_{suite}.png"))
        else:
            plt.close(fig)
    return paths


def write_outputs(cells: Sequence[Cell], out_dir: str | Path, metric: str = DEFAULT_METRIC,
                  plots: bool = True) -> dict[str, list[Path]]:
    """Writes ``table.md``, ``table.csv`` and (``plots``) ``bars_<suite>.png``/``curves_<suite>.png``."""
    out_dir = Path(out_dir)
    written = {"table": [atomic_write(out_dir / "table.md", markdown_tables(cells, metric)),
                         atomic_write(out_dir / "table.csv", csv_table(cells))]}
    if plots and cells:
        written["bars"] = plot_bars(cells, out_dir)
        written["curves"] = plot_curves(cells, out_dir, key=f"eval/{metric}")
    return written
