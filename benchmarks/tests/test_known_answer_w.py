"""The known-answer w grid's report: its table from hand-made results (the grid itself is `known_answer_w.py`'s run)."""
from __future__ import annotations

import math

from benchmarks import known_answer_w as grid


def _outcome(offset: float, f_data: float = math.nan, active: float = math.nan) -> dict:
    return dict(offset=offset, to_good=abs(offset), to_bad=1 - offset, on_good=1.0, on_bad=0.0, f_data=f_data,
                f_policy=math.nan, active=active)


def test_the_grid_is_every_policy_w_and_seed_once():
    cells = grid.cells()
    assert len(cells) == len(set(cells)) == len(grid.POLICIES) * (len(grid.WS) + 1) * len(grid.SEEDS)


def test_report_gives_mean_and_std_over_seeds_and_leaves_f_out_without_a_potential():
    results = {("deterministic", None, 0): _outcome(0.3), ("deterministic", None, 1): _outcome(0.5),
               ("stochastic", 3.0, 0): _outcome(-0.1, -0.2, 0.3), ("stochastic", 3.0, 1): _outcome(0.1, -0.4, 0.5)}
    lines = grid.report(results).splitlines()
    assert len(lines) == 4  # header, rule, the two cells that have runs
    assert lines[2].startswith("| deterministic | none | 0.400 ± 0.100 |") and lines[2].count("–") == 3
    assert lines[3].startswith("| stochastic | 3 | 0.000 ± 0.100 |")
    assert "| -0.300 ± 0.100 | 0.40 ± 0.10 | 0.33 |" in lines[3]
