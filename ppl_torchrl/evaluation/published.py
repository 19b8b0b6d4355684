"""The published numbers our sweep tables are compared with, in ONE table.

Source: the PPL paper's Tables 1-2 (Asadulaev et al., NeurIPS 2024), and ReBRAC's Adroit numbers (Tarasov
et al., NeurIPS 2023, Table 4). The paper's own tables are images in every public copy: the cells were
transcribed by hand via a third-party summary of the paper and not checked one by one against the
camera-ready PDF (``docs/algorithm.md``, "Published numbers"). All values are D4RL normalized scores
at the final checkpoint: mean (± std over 5 seeds where the table gives one).

Known quirks of the source, kept out of the numbers rather than guessed:
* Table 1, PPL^R antmaze-umaze prints ``98.0 ± 14`` (a lost decimal point?): the std is left out.
* Table 2 prints a std only for PPL^R; ReBRAC's walker2d-medium-expert is 112.3 there, 111.6 in
  the ReBRAC paper (the column sums to its printed total 796.9, so 112.3 is kept).
* Table 2's BC and One-RL cells sum to 1.0 less than their printed totals (a cell or a total is
  off in the source); Adroit ReBRAC's cells sum to 703.3 vs the printed 703.2 (rounding).
* Adroit (Table 3): only ReBRAC's cells are known as text; PPL^R's per-cell values are images only
  and only its total (711.44, third-party summary) is recorded.

Method names are our loss names (``recipes/config/loss/<name>.yaml``); :data:`PAPER_NAMES` gives the
paper's column titles. Columns without an implementation here (OTR+IQL, One-RL) keep the paper's name.
"""
from __future__ import annotations

from typing import NamedTuple


class Ref(NamedTuple):
    """One published cell: mean and (if printed) std over seeds of the normalized score."""

    mean: float
    std: float | None = None


PAPER_NAMES: dict[str, str] = {
    "ppl": "PPL^R", "rebrac": "ReBRAC", "cql": "CQL", "ppl_cql": "PPL^CQL", "iql": "IQL",
    "td3_bc": "TD3+BC", "bc": "BC", "otr_iql": "OTR+IQL", "onestep": "One-RL",
}

_ANTMAZE = ["antmaze-umaze-v2", "antmaze-umaze-diverse-v2", "antmaze-medium-play-v2",
            "antmaze-medium-diverse-v2", "antmaze-large-play-v2", "antmaze-large-diverse-v2"]
_MUJOCO = [f"{env}-{kind}-v2" for kind in ("medium", "medium-replay", "medium-expert")
           for env in ("halfcheetah", "hopper", "walker2d")]
_ADROIT = [f"{task}-{kind}-v1" for task in ("pen", "door", "hammer", "relocate")
           for kind in ("human", "cloned", "expert")]

#: Paper row order of each suite (tables list datasets in this order).
SUITE_ORDER: dict[str, list[str]] = {"antmaze": _ANTMAZE, "mujoco": _MUJOCO, "adroit": _ADROIT}


def _column(datasets: list[str], cells: list) -> dict[str, Ref]:
    if len(datasets) != len(cells):
        raise ValueError("reference column length does not match its dataset list")
    return {d: (c if isinstance(c, Ref) else Ref(c)) for d, c in zip(datasets, cells) if c is not None}


#: REFERENCE[method][dataset_id] -> Ref. The one place the published numbers live.
REFERENCE: dict[str, dict[str, Ref]] = {m: {} for m in PAPER_NAMES}

# ---- Table 1, AntMaze-v2 (final 100 evaluations, 5 seeds) ------------------------------------
for _method, _cells in {
    "iql": [Ref(87.5, 2.6), Ref(62.2, 13.8), Ref(71.2, 7.3), Ref(70.0, 10.9), Ref(39.6, 5.8), Ref(47.5, 9.5)],
    "otr_iql": [Ref(83.4, 3.3), Ref(68.9, 13.6), Ref(70.5, 6.6), Ref(70.4, 4.8), Ref(45.3, 6.9), Ref(45.5, 6.2)],
    "cql": [Ref(86.3, 3.7), Ref(34.6, 20.9), Ref(63.0, 9.8), Ref(59.6, 3.5), Ref(20.0, 10.8), Ref(20.0, 5.1)],
    "ppl_cql": [Ref(90.0, 2.6), Ref(40.0, 2.6), Ref(67.3, 10.1), Ref(65.3, 8.0), Ref(25.6, 3.7), Ref(23.6, 11.0)],
    "rebrac": [Ref(97.8, 1.0), Ref(88.3, 13.0), Ref(84.0, 4.2), Ref(76.3, 13.5), Ref(60.4, 26.1), Ref(54.4, 25.1)],
    "ppl": [Ref(98.0), Ref(93.6, 6.1), Ref(90.2, 3.1), Ref(84.8, 14.7), Ref(76.8, 4.0), Ref(76.6, 7.4)],
}.items():
    REFERENCE[_method].update(_column(_ANTMAZE, _cells))

# ---- Table 2, Gym-MuJoCo-v2 (final 10 evaluations, 5 seeds); rows M, MR, ME x (half, hopper, walker)
for _method, _cells in {
    "bc": [42.6, 52.9, 75.3, 36.6, 18.1, 26.0, 55.2, 52.5, 107.5],
    "onestep": [48.4, 59.6, 81.1, 38.1, 97.5, 49.5, 93.4, 103.3, 113.0],
    "cql": [44.0, 58.5, 72.5, 45.5, 95.0, 77.3, 91.6, 105.4, 108.8],
    "iql": [47.4, 66.3, 78.3, 44.2, 94.7, 73.9, 86.7, 91.5, 109.6],
    "otr_iql": [43.3, 78.7, 79.4, 41.3, 84.8, 66.0, 89.6, 93.2, 109.3],
    "td3_bc": [48.3, 59.3, 65.5, 44.6, 60.9, 81.8, 90.7, 98.0, 110.1],
    "rebrac": [65.6, 102.0, 82.5, 51.0, 98.1, 77.3, 101.1, 107.0, 112.3],
    "ppl": [Ref(64.95, 0.2), Ref(93.49, 7.2), Ref(85.66, 0.6), Ref(51.1, 0.3), Ref(100.0, 2.0),
            Ref(78.66, 2.0), Ref(104.85, 0.1), Ref(109.0, 1.2), Ref(111.74, 1.1)],
}.items():
    REFERENCE[_method].update(_column(_MUJOCO, _cells))

# ---- Adroit-v1: ReBRAC paper Table 4; rows pen, door, hammer, relocate x (h, c, e)
REFERENCE["rebrac"].update(_column(_ADROIT, [103.5, 91.8, 154.1, 0.0, 1.1, 104.6, 0.2, 6.7, 133.8, 0.0, 0.9, 106.6]))

#: Column totals as printed (they can differ from the sum of the rounded cells above).
REFERENCE_TOTALS: dict[str, dict[str, float]] = {
    "antmaze": {"iql": 378.0, "otr_iql": 384.0, "cql": 283.5, "ppl_cql": 311.8, "rebrac": 461.2, "ppl": 520.0},
    "mujoco": {"bc": 467.7, "onestep": 684.9, "cql": 698.6, "iql": 692.6, "otr_iql": 685.6,
               "td3_bc": 659.2, "rebrac": 796.9, "ppl": 799.45},
    "adroit": {"rebrac": 703.2, "ppl": 711.44},
}


def reference(method: str, dataset_id: str) -> Ref | None:
    """The published cell for ``method`` (our loss name) on ``dataset_id``, or ``None``."""
    return REFERENCE.get(method, {}).get(dataset_id)


def reference_total(method: str, suite: str) -> float | None:
    """The printed column total of ``method`` on ``suite`` (``antmaze``/``mujoco``/``adroit``), or ``None``."""
    return REFERENCE_TOTALS.get(suite, {}).get(method)
