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

OGBench single-task numbers come from the FQL paper (Park, Li, Levine, "Flow Q-Learning", ICML 2025), read from
the paper's text: Table 3 (each task) and Table 2 (each environment, the mean of its 5 tasks). They are success
rates in %, mean ± std over 8 seeds, on OGBench's published datasets, with 4 x 512 networks and 1M gradient steps,
each seed's score being the mean of its evaluations at 800k, 900k and 1M steps (50 episodes each). Per-task means
average to Table 2's within rounding (at most 0.6) for every method and environment.

Method names are our loss names (``recipes/config/loss/<name>.yaml``); :data:`PAPER_NAMES` gives the
paper's column titles. Columns without an implementation here (OTR+IQL, One-RL) keep the paper's name.
"""
from __future__ import annotations

from typing import NamedTuple

from ppl_torchrl.registry.ogbench_ids import parse_ogbench_id


class Ref(NamedTuple):
    """One published cell: mean and (if printed) std over seeds of the normalized score."""

    mean: float
    std: float | None = None


PAPER_NAMES: dict[str, str] = {
    "ppl": "PPL^R", "rebrac": "ReBRAC", "cql": "CQL", "ppl_cql": "PPL^CQL", "iql": "IQL",
    "td3_bc": "TD3+BC", "bc": "BC", "otr_iql": "OTR+IQL", "onestep": "One-RL", "fql": "FQL",
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


# ---- OGBench single-task, FQL paper Table 3: per environment and method, tasks 1-5 (success %, 8 seeds) ----------
_FQL_TABLE3 = {
    "antmaze-large-navigate": {"bc": "0±0 6±3 29±5 8±3 10±3", "iql": "48±9 42±6 72±7 51±9 54±22",
                               "rebrac": "91±10 88±4 51±18 84±7 90±2", "fql": "80±8 57±10 93±3 80±4 83±4"},
    "antmaze-giant-navigate": {"bc": "0±0 0±0 0±0 0±0 1±1", "iql": "0±0 1±1 0±0 0±0 19±7",
                               "rebrac": "27±22 16±17 34±22 5±12 49±22", "fql": "4±5 9±7 0±1 14±23 16±28"},
    "humanoidmaze-medium-navigate": {"bc": "1±0 1±0 6±2 0±0 2±1", "iql": "32±7 41±9 25±5 0±1 66±4",
                                     "rebrac": "16±9 18±16 36±13 15±16 24±20", "fql": "19±12 94±3 74±18 3±4 97±2"},
    "humanoidmaze-large-navigate": {"bc": "0±0 0±0 1±1 1±0 0±1", "iql": "3±1 0±0 7±3 1±0 1±1",
                                    "rebrac": "2±1 0±0 8±4 1±1 2±2", "fql": "7±6 0±0 11±7 2±3 1±3"},
    "antsoccer-arena-navigate": {"bc": "2±1 2±2 0±0 1±0 0±0", "iql": "14±5 17±7 6±4 3±2 2±2",
                                 "rebrac": "0±0 0±1 0±0 0±0 0±0", "fql": "77±4 88±3 61±6 39±6 36±9"},
    "cube-single-play": {"bc": "10±5 3±1 9±3 2±1 3±3", "iql": "88±3 85±8 91±5 73±6 78±9",
                         "rebrac": "89±5 92±4 93±3 92±3 87±8", "fql": "97±2 97±2 98±2 94±3 93±3"},
    "cube-double-play": {"bc": "8±3 0±0 0±0 0±0 0±0", "iql": "27±5 1±1 0±0 0±0 4±3",
                         "rebrac": "45±6 7±3 4±1 1±1 4±2", "fql": "61±9 36±6 22±5 5±2 19±10"},
    "scene-play": {"bc": "19±6 1±1 1±1 2±2 0±0", "iql": "94±3 12±3 32±7 0±1 0±0",
                   "rebrac": "95±2 50±13 55±16 3±3 0±0", "fql": "100±0 76±9 98±1 5±1 0±0"},
    "puzzle-3x3-play": {"bc": "5±2 1±1 1±1 1±1 1±0", "iql": "33±6 4±3 3±2 2±1 3±2",
                        "rebrac": "97±4 1±1 3±1 2±1 5±3", "fql": "90±4 16±5 10±3 16±5 16±3"},
    "puzzle-4x4-play": {"bc": "1±1 0±0 0±0 0±0 0±0", "iql": "12±2 7±4 9±3 5±2 4±1",
                        "rebrac": "26±4 12±4 15±3 10±3 7±3", "fql": "34±8 16±5 18±5 11±3 7±3"},
}
# ---- FQL paper Table 2: the same environments, mean over their 5 tasks (BC, IQL, ReBRAC, FQL) ----------------------
_FQL_TABLE2 = {
    "antmaze-large-navigate": "11±1 53±3 81±5 79±3", "antmaze-giant-navigate": "0±0 4±1 26±8 9±6",
    "humanoidmaze-medium-navigate": "2±1 33±2 22±8 58±5", "humanoidmaze-large-navigate": "1±0 2±1 2±1 4±2",
    "antsoccer-arena-navigate": "1±0 8±2 0±0 60±2", "cube-single-play": "5±1 83±3 91±2 96±1",
    "cube-double-play": "2±1 7±1 12±1 29±2", "scene-play": "5±1 28±1 41±3 56±2",
    "puzzle-3x3-play": "2±0 9±1 21±1 30±1", "puzzle-4x4-play": "0±0 7±1 14±1 17±2",
}


def _refs(text: str) -> list[Ref]:
    return [Ref(*map(float, cell.split("±"))) for cell in text.split()]


#: OGBench environment (``<family>-<type>``) -> its 5 single-task ids, in the FQL paper's order
OGBENCH_TASKS: dict[str, list[str]] = {env: [f"{env}-singletask-task{k}-v0" for k in range(1, 6)] for env in _FQL_TABLE3}
SUITE_ORDER["ogbench"] = [task for tasks in OGBENCH_TASKS.values() for task in tasks]
for _env, _methods in _FQL_TABLE3.items():
    for _method, _cells in _methods.items():
        REFERENCE[_method].update(_column(OGBENCH_TASKS[_env], _refs(_cells)))
#: OGBENCH_ENVIRONMENTS[method][environment] -> Ref: the FQL paper's per-environment mean over the 5 tasks (Table 2)
OGBENCH_ENVIRONMENTS: dict[str, dict[str, Ref]] = {m: {} for m in ("bc", "iql", "rebrac", "fql")}
for _env, _cells in _FQL_TABLE2.items():
    for _method, _ref in zip(OGBENCH_ENVIRONMENTS, _refs(_cells)):
        OGBENCH_ENVIRONMENTS[_method][_env] = _ref


def ogbench_reference(method: str, dataset_id: str) -> Ref | None:
    """The FQL paper's cell for an OGBench single-task id: the default-task id (``...-singletask-v0``) is its task's
    row, and a regenerated id (``-gen``) gets the number measured on the **published** dataset it stands for."""
    parsed = parse_ogbench_id(dataset_id)
    return None if parsed is None else REFERENCE.get(method, {}).get(parsed.published_id)


def reference(method: str, dataset_id: str) -> Ref | None:
    """The published cell for ``method`` (our loss name) on ``dataset_id``, or ``None`` (OGBench ids: as
    :func:`ogbench_reference`)."""
    found = REFERENCE.get(method, {}).get(dataset_id)
    if found is None and "-singletask" in dataset_id:
        found = ogbench_reference(method, dataset_id)
    return found


def reference_total(method: str, suite: str) -> float | None:
    """The printed column total of ``method`` on ``suite`` (``antmaze``/``mujoco``/``adroit``), or ``None``."""
    return REFERENCE_TOTALS.get(suite, {}).get(method)
