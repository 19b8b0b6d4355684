"""The verdict of one method against its base: beat, matched or lost, by the difference of means against 2 standard
errors (Welch). The one home of this rule: the evidence grids (``benchmarks/``) and any comparison of two groups of
seeds use it.

    from benchmarks.verdict import compare
    v = compare(ppl_cell, rebrac_cell, dataset="pointmaze-umaze-mixed-gen-v0")   # Cells of ppl_torchrl.reporting.aggregate
    v.outcome, v.diff, v.se                                                       # "matched", -2.4, 11.2
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ppl_torchrl.reporting.aggregate import Cell

__all__ = ["Verdict", "compare"]


@dataclass(frozen=True)
class Verdict:
    """PPL^R against ReBRAC on one dataset (``diff`` = PPL mean − ReBRAC mean of the score)."""

    dataset: str
    ppl: Cell
    base: Cell
    diff: float
    se: float
    wins: int            # seeds (present in both) where PPL scored strictly higher
    paired: int          # seeds present in both
    outcome: str         # "beat" | "matched" | "lost"


def _sample_var(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = sum(values) / len(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def compare(ppl: Cell, base: Cell, dataset: str = "", z: float = 2.0) -> Verdict:
    """Beat / matched / lost, by the difference of means against ``z`` standard errors.

    The standard error of the difference is Welch's, ``sqrt(s1²/n1 + s2²/n2)`` with sample
    variances (``ddof=1``). ``|diff| <= z·se`` is "matched": with 3 seeds, differences inside the
    seed noise are not evidence either way. With zero spread on both sides any difference counts.
    """
    if not ppl.values or not base.values:
        raise ValueError(f"{dataset}: cannot compare without runs on both sides "
                         f"(PPL n={len(ppl.values)}, ReBRAC n={len(base.values)}).")
    diff = ppl.mean - base.mean
    se = math.sqrt(_sample_var(ppl.values) / len(ppl.values) + _sample_var(base.values) / len(base.values))
    if abs(diff) <= z * se or diff == 0.0:
        outcome = "matched"
    else:
        outcome = "beat" if diff > 0 else "lost"
    ours, theirs = dict(zip(ppl.seeds, ppl.values)), dict(zip(base.seeds, base.values))
    common = sorted(set(ours) & set(theirs))
    wins = sum(ours[s] > theirs[s] for s in common)
    return Verdict(dataset, ppl, base, diff, se, wins, len(common), outcome)

