"""Every dataset id the project knows, with its evaluation task and reference scores, in one table.

D4RL's reference returns (``ref_min``/``ref_max``) come from D4RL's ``infos.py``,
``gym_mujoco/__init__.py`` and ``locomotion/__init__.py`` (MuJoCo v2 datasets use the
``<env>-random-v0`` entries; Adroit v1 uses the ``*-human-v0`` entries). The datasets this project
generates (ids ending in ``-gen-v0``, so they can never be mistaken for D4RL's) are declared here too;
:mod:`ppl_torchrl.datagen` reads its list of ids from this table and says how each one is made. The
locomotion ones share D4RL's reference returns, the PointMaze ones have their own, measured on the
generator's random and expert behaviours.

The D4RL normalized score (:func:`normalized_score`) is computed from this table and nowhere else.

Exact ids only: lookups never match substrings (``hopper-medium`` is not ``hopper-medium-expert``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppl_torchrl.errors import did_you_mean
from ppl_torchrl.registry.ogbench_ids import EPISODE_STEPS, parse_ogbench_id


@dataclass(frozen=True)
class DatasetSpec:
    """What the project needs to know about one dataset id.

    Attributes:
        dataset_id: the exact id, e.g. ``"antmaze-large-diverse-v2"``.
        suite: ``"antmaze"``, ``"mujoco"``, ``"adroit"`` or a generated suite such as ``"pointmaze-gen"``.
        env_name: the evaluation task, e.g. ``"antmaze-large"``, ``"hopper"``, ``"pen"``.
        ref_min: return of the reference random policy (normalized score 0).
        ref_max: return of the reference expert (normalized score 100).
        max_episode_steps: evaluation episode length limit.
        source: ``"d4rl"`` (download or local HDF5), ``"generated"`` (made by this project) or ``"ogbench"``
            (an OGBench ``.npz``, published or regenerated here; see :mod:`ppl_torchrl.data.ogbench`).
        score: ``"return"`` (the D4RL normalized return) or ``"success"`` (100 x success rate: OGBench).
    """

    dataset_id: str
    suite: str
    env_name: str
    ref_min: float
    ref_max: float
    max_episode_steps: int
    source: str = "d4rl"
    score: str = "return"


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, *, overwrite: bool = False) -> DatasetSpec:
    """Adds ``spec`` to :data:`DATASETS`; re-registering a different spec needs ``overwrite=True``."""
    old = DATASETS.get(spec.dataset_id)
    if old is not None and old != spec and not overwrite:
        raise ValueError(f"Dataset id {spec.dataset_id!r} is already registered as {old}.")
    DATASETS[spec.dataset_id] = spec
    return spec


def get_dataset_spec(dataset_id: str) -> DatasetSpec:
    """Returns the :class:`DatasetSpec` of ``dataset_id`` or raises a ``KeyError`` naming close ids."""
    try:
        return DATASETS[dataset_id]
    except KeyError:
        spec = _ogbench_spec(dataset_id)
        if spec is not None:
            return register_dataset(spec)
        raise KeyError(
            f"Unknown dataset id {dataset_id!r}.{did_you_mean(dataset_id, DATASETS)} "
            "Known ids: see ppl_torchrl.registry.DATASETS "
            "(D4RL AntMaze-v2, Gym-MuJoCo-v2, Adroit-v1 and the generated '*-gen-v0' datasets) and every "
            "OGBench single-task id (e.g. 'cube-single-play-singletask-task2-v0', '-gen' before '-singletask' for "
            "the data regenerated here, '@post' after it for ogbench < 1.2's success timing). "
            "To train on a local file, pass its HDF5 path instead of an id."
        ) from None


def _ogbench_spec(dataset_id: str) -> DatasetSpec | None:
    """The spec of an OGBench single-task id, made on first use (there are ~1000 of them).

    ``<id>`` evaluates with the installed ogbench's success timing (``pre`` since 1.2.0: reward, termination and
    success of ``(s, a, s')`` computed on ``s``), ``<id>@post`` with ogbench < 1.2's (on ``s'``, what the FQL
    paper's pinned 1.1.0 ran).
    """
    base, _, timing = dataset_id.partition("@")
    if timing not in ("", "pre", "post"):
        return None
    parsed = parse_ogbench_id(base)
    if parsed is None:
        return None
    steps = EPISODE_STEPS[parsed.family]
    env_name = f"ogbench/{parsed.env_id}" + (f"@{timing}" if timing else "")
    return DatasetSpec(dataset_id, "ogbench", env_name, 0.0, 1.0, steps, "ogbench", "success")


def normalized_score(dataset_id: str, returns):
    """D4RL normalized score(s) of one return or an array of returns: ``100 * (R - ref_min) / (ref_max - ref_min)``.

    The x100 convention of D4RL papers (0 = the reference random policy, 100 = the reference expert).
    D4RL's own ``get_normalized_score`` returns the fraction; the authors' code multiplies it by 100.
    """
    spec = get_dataset_spec(dataset_id)
    returns = np.asarray(returns, dtype=np.float64)
    if not np.all(np.isfinite(returns)):
        raise ValueError(f"normalized_score got non-finite returns for {dataset_id!r}: {returns}")
    score = 100.0 * (returns - spec.ref_min) / (spec.ref_max - spec.ref_min)
    return float(score) if score.ndim == 0 else score


# --- D4RL Gym-MuJoCo v2 -----------------------------------------------------------------
_MUJOCO_REF = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
for _env, (_lo, _hi) in _MUJOCO_REF.items():
    for _kind in ("medium", "medium-replay", "medium-expert"):
        register_dataset(DatasetSpec(f"{_env}-{_kind}-v2", "mujoco", _env, _lo, _hi, 1000))

# --- D4RL AntMaze v2 (return = 1 if the goal is reached: score = 100 x success rate) -------
for _maze, _kinds, _steps in (
    ("umaze", ("", "-diverse"), 700),
    ("medium", ("-play", "-diverse"), 1000),
    ("large", ("-play", "-diverse"), 1000),
):
    for _kind in _kinds:
        register_dataset(
            DatasetSpec(f"antmaze-{_maze}{_kind}-v2", "antmaze", f"antmaze-{_maze}", 0.0, 1.0, _steps)
        )

# --- D4RL Adroit v1 (min/max from the *-human-v0 entries of D4RL's infos.py) -------------
_ADROIT_REF = {
    "pen": (96.262799, 3076.8331017826877, 100),
    "door": (-56.512833, 2880.5693087298737, 200),
    "hammer": (-274.856578, 12794.134825156867, 200),
    "relocate": (-6.425911, 4233.877797728884, 200),
}
for _task, (_lo, _hi, _steps) in _ADROIT_REF.items():
    for _kind in ("human", "cloned", "expert"):
        register_dataset(DatasetSpec(f"{_task}-{_kind}-v1", "adroit", _task, _lo, _hi, _steps))

# --- Generated Gym-MuJoCo analogues (ppl_torchrl.datagen.locomotion): D4RL's reference returns of the env,
# so that scores on generated and on D4RL data share one scale -------------------------------------------
for _env, (_lo, _hi) in _MUJOCO_REF.items():
    for _kind in ("random", "medium", "medium-replay", "medium-expert"):
        register_dataset(DatasetSpec(f"{_env}-{_kind}-gen-v0", "mujoco-gen", _env, _lo, _hi, 1000, "generated"))

# --- Generated PointMaze (ppl_torchrl.datagen.pointmaze) --------------------------------------------------
#: env name -> (episode steps, ref_min, ref_max). Episode steps: D4RL maze2d's time limit of the same maze.
#: ref_min / ref_max: mean evaluation return (100 episodes, eval env, seed 0) of the uniform random policy and
#: of the noise-free planner heading for the goal, measured with ``python recipes/collect.py measure_refs=true``;
#: measure them again (and bump ``GENERATOR_VERSION`` of ppl_torchrl/datagen/pointmaze.py) if the env or the
#: planner changes.
POINTMAZE_REFERENCE: dict[str, tuple[int, float, float]] = {
    "pointmaze-umaze": (300, 20.7, 228.25),
    "pointmaze-medium": (600, 18.28, 477.21),
    "pointmaze-large": (800, 2.5, 622.96),
}
#: id suffixes: "" every episode heads for the evaluation goal; "-play" / "-diverse" wander between goals
#: (maze2d-style); "-mixed" holds a known share of inefficient behaviour (umaze and medium only)
for _env, (_steps, _lo, _hi) in POINTMAZE_REFERENCE.items():
    for _kind in ("", "-play", "-diverse") + (("-mixed",) if _env != "pointmaze-large" else ()):
        register_dataset(DatasetSpec(f"{_env}{_kind}-gen-v0", "pointmaze-gen", _env, _lo, _hi, _steps, "generated"))
