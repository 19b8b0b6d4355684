"""benchmarks/toy_report.py: the toy's metrics table and figure, from a result made by hand (the experiment itself is
tested in tests/test_toy.py, the recipe that writes both in tests/test_trust.py)."""
from __future__ import annotations

import torch

from benchmarks.toy_report import metrics_markdown, plot_toy, report_header
from ppl_torchrl.toy import ToyConfig, ToyResult, make_toy_problem, optimal_path, stitched_behaviour, toy_metrics


def _result() -> ToyResult:
    cfg = ToyConfig()
    problem = make_toy_problem(cfg)
    stitched, index = stitched_behaviour(problem, cfg.gamma)
    paths = {f"dataset {k + 1}": problem.curves[k] for k in range(problem.curves.shape[0])}
    paths.update(baseline=problem.curves.mean(0), ppl=stitched + 0.01, stitched=stitched,
                 optimal=optimal_path(problem))
    return ToyResult(problem=problem, paths=paths, stitched_index=index, q_fit_error=0.5, config=cfg)


def test_the_metrics_table_and_its_header(tmp_path):
    result = _result()
    rows = toy_metrics(result)
    table = metrics_markdown(rows)
    assert table.count("\n") == len(rows) + 2 and "| PPL pi (w = 8) |" in table
    header = report_header(result.config, result, "python recipes/ppl_toy.py", 12.0, "a CPU")
    assert "`python recipes/ppl_toy.py` (seed 0, 5000 critic steps, 5000 policy steps, w = 8" in header
    assert f"12 s on a CPU, torch {torch.__version__}" in header and "data: 0.500." in header


def test_the_figure_is_a_png(tmp_path):
    png = plot_toy(_result(), tmp_path / "figures" / "toy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
