"""Datasets the project makes itself (ids ending in ``-gen-v0``), so that users without network
access still have real offline data, including data whose share of inefficient behaviour is known.

The ids, their eval tasks and reference returns are declared in :mod:`ppl_torchrl.registry`;
this package says how each one is made. :func:`ensure_generated_dataset` returns the D4RL-format HDF5 file of an id,
generating it on first use (well under a minute on 2 CPU cores, see ``docs/datagen.md``)::

    >>> from ppl_torchrl.datagen import ensure_generated_dataset
    >>> path = ensure_generated_dataset("pointmaze-umaze-gen-v0")   # ~/.cache/ppl_torchrl/generated/...

Generated files are read by the same code as D4RL's (``ppl_torchrl.data``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ppl_torchrl.atomic import exclusive
from ppl_torchrl.datagen import locomotion, pointmaze
from ppl_torchrl.registry import get_dataset_spec

__all__ = [
    "GENERATED_IDS",
    "default_data_root",
    "generated_path",
    "generate_dataset",
    "ensure_generated_dataset",
]

log = logging.getLogger(__name__)

#: Every generated dataset id (the registry's ``pointmaze-gen`` and ``mujoco-gen`` ids).
GENERATED_IDS: tuple[str, ...] = tuple(pointmaze.POINTMAZE_DATASETS) + tuple(locomotion.LOCOMOTION_DATASETS)


def default_data_root() -> Path:
    """``$PPL_TORCHRL_DATA`` if set, else ``~/.cache/ppl_torchrl/generated``."""
    env = os.environ.get("PPL_TORCHRL_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ppl_torchrl" / "generated"


def generated_path(dataset_id: str, root: str | Path | None = None, seed: int = 0) -> Path:
    """Where the HDF5 file of ``dataset_id`` generated with ``seed`` lives."""
    _config(dataset_id)
    folder = Path(root).expanduser() if root is not None else default_data_root()
    return folder / f"{dataset_id}-seed{seed}.hdf5"


def _config(dataset_id: str):
    try:
        if dataset_id in pointmaze.POINTMAZE_DATASETS:
            return pointmaze.POINTMAZE_DATASETS[dataset_id]
        return locomotion.LOCOMOTION_DATASETS[dataset_id]
    except KeyError:
        raise KeyError(
            f"{dataset_id!r} is not a generated dataset id. Generated ids: {sorted(GENERATED_IDS)}."
        ) from None


def generate_dataset(
    dataset_id: str,
    path: str | Path,
    seed: int = 0,
    *,
    num_episodes: int | None = None,
    episode_steps: int | None = None,
    backend: str = "numpy",
    minari: bool = False,
    minari_root: str | Path | None = None,
    progress: bool = True,
    num_transitions: int | None = None,
):
    """Generates ``dataset_id`` and writes it atomically to ``path`` (and, with ``minari=True``, as a
    local Minari dataset ``ppl-torchrl/<dataset_id>``). Returns the :class:`~ppl_torchrl.datagen.pointmaze.GeneratedData`
    with ``stats`` (transitions, returns per behaviour, wall time, array digest).

    ``num_episodes``/``episode_steps`` shrink the dataset (tests); the file then records the sizes
    it was made with, and :func:`ensure_generated_dataset` treats it as a different dataset.
    Locomotion ids (``hopper-medium-gen-v0``...) are shrunk with ``num_transitions`` instead.
    """
    import time

    from ppl_torchrl.datagen.pointmaze import generate_pointmaze
    from ppl_torchrl.datagen.writers import array_digest, write_hdf5, write_minari
    from ppl_torchrl.envs.pointmaze import GYM_IDS

    cfg = _config(dataset_id)
    if dataset_id in locomotion.LOCOMOTION_DATASETS:
        return _generate_locomotion(cfg, path, seed, num_episodes=num_episodes, episode_steps=episode_steps,
                                    num_transitions=num_transitions, backend=backend, minari=minari,
                                    minari_root=minari_root, progress=progress)
    if num_transitions is not None:
        raise ValueError(f"num_transitions applies to the locomotion ids only; {dataset_id} takes num_episodes.")
    out = generate_pointmaze(cfg, seed, num_episodes=num_episodes, episode_steps=episode_steps,
                             backend=backend, progress=progress)
    out.stats["array_sha256"] = array_digest(out.data)
    t0 = time.perf_counter()
    out.stats["path"] = str(write_hdf5(path, out.data, out.attrs))
    if minari:
        spec = get_dataset_spec(dataset_id)
        out.stats["minari_path"] = str(write_minari(
            dataset_id, out.data, env_id=GYM_IDS[cfg.maze], ref_min=spec.ref_min, ref_max=spec.ref_max,
            description=cfg.description, root=minari_root, overwrite=True))
    out.stats["write_time_s"] = time.perf_counter() - t0
    return out


def _generate_locomotion(cfg, path, seed, *, num_episodes, episode_steps, num_transitions, backend, minari,
                         minari_root, progress):
    """:func:`generate_dataset` for the locomotion ids (hopper/halfcheetah/walker2d ``-gen-v0``)."""
    import time

    from ppl_torchrl.datagen.locomotion import LOCOMOTION_ENVS, generate_locomotion
    from ppl_torchrl.datagen.writers import array_digest, write_hdf5, write_minari

    if num_episodes is not None or episode_steps is not None:
        raise ValueError(f"{cfg.dataset_id}: locomotion episodes end at termination or 1000 steps; "
                         "shrink the dataset with num_transitions instead of num_episodes/episode_steps.")
    if backend != "numpy":
        raise ValueError(f"{cfg.dataset_id}: locomotion data has only the 'numpy' backend, got {backend!r}.")
    out = generate_locomotion(cfg, seed, num_transitions=num_transitions, progress=progress)
    out.stats["array_sha256"] = array_digest(out.data)
    t0 = time.perf_counter()
    out.stats["path"] = str(write_hdf5(path, out.data, out.attrs))
    if minari:
        spec = get_dataset_spec(cfg.dataset_id)
        out.stats["minari_path"] = str(write_minari(
            cfg.dataset_id, out.data, env_id=LOCOMOTION_ENVS[cfg.env_name], ref_min=spec.ref_min,
            ref_max=spec.ref_max, description=cfg.description, root=minari_root, overwrite=True,
            algorithm_name="ppl_torchrl.datagen (SAC behaviour policies trained with recipes/train_behavior.py)"))
    out.stats["write_time_s"] = time.perf_counter() - t0
    return out


def _matches(path: Path, dataset_id: str, seed: int) -> bool:
    """Whether an existing file was made by this generator version for this id, seed and size."""
    from ppl_torchrl.data.hdf5 import D4RLFileError, validate_d4rl_hdf5
    from ppl_torchrl.datagen.pointmaze import GENERATOR_VERSION

    cfg = _config(dataset_id)
    try:
        attrs = validate_d4rl_hdf5(path, check_finite=False).attrs
    except D4RLFileError as err:
        log.warning("Regenerating %s: the existing file is unusable (%s).", path, err)
        return False
    if dataset_id in locomotion.LOCOMOTION_DATASETS:
        from ppl_torchrl.datagen.locomotion import GENERATOR_VERSION as LOCO_VERSION

        want = {"dataset_id": dataset_id, "seed": seed, "generator_version": LOCO_VERSION,
                "num_transitions": cfg.num_transitions}
    else:
        want = {"dataset_id": dataset_id, "seed": seed, "generator_version": GENERATOR_VERSION,
                "num_episodes": cfg.num_episodes, "episode_steps": cfg.episode_steps}
    stale = {k: (attrs.get(k), v) for k, v in want.items() if attrs.get(k) != v}
    if stale:
        log.warning("Regenerating %s: it was made with different settings (found, wanted): %s.", path, stale)
    return not stale


def ensure_generated_dataset(dataset_id: str, root: str | Path | None = None, seed: int = 0, *,
                             minari: bool = False, progress: bool = True) -> Path:
    """The HDF5 path of generated dataset ``dataset_id``; generates it first if missing or stale.

    The file is ``<root>/<dataset_id>-seed<seed>.hdf5`` with ``root`` defaulting to
    :func:`default_data_root`. Writing is atomic, so an interrupted run leaves no partial file and a
    rerun simply regenerates (cheap: seconds to tens of seconds).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    path = generated_path(dataset_id, root, seed)
    if path.exists() and _matches(path, dataset_id, seed):
        return path
    with exclusive(path.parent):  # concurrent first runs of a sweep: one generates, the others reuse it
        if path.exists() and _matches(path, dataset_id, seed):
            return path
        out = generate_dataset(dataset_id, path, seed, minari=minari, progress=progress)
    s = out.stats
    log.info("Generated %s: %d transitions in %.1f s -> %s", dataset_id, s["transitions"], s["wall_time_s"], path)
    return path
