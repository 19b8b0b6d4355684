"""Writing generated datasets: D4RL-format HDF5 (the shared writer) and a local Minari dataset.

* :func:`write_hdf5` uses :func:`ppl_torchrl.data.write_d4rl_hdf5` (atomic: temp file + ``os.replace``),
  so generated files are read back by exactly the code that reads D4RL's downloads.
* :func:`write_minari` writes the same episodes as a Minari dataset under ``MINARI_DATASETS_PATH``
  (default ``~/.minari/datasets``), staged in a temporary folder and moved into place, so an
  interrupted run never leaves a half-written Minari dataset.
* :func:`array_digest` hashes the arrays (names, dtypes, shapes, bytes) in a fixed order: the
  reproducibility check that does not depend on HDF5 library internals.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping

import numpy as np

from ppl_torchrl.atomic import replace_folder
from ppl_torchrl.data.hdf5 import write_d4rl_hdf5

__all__ = ["write_hdf5", "write_minari", "array_digest", "file_digest", "minari_dataset_id"]


def array_digest(data: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, keys sorted."""
    h = hashlib.sha256()
    for key in sorted(data):
        arr = np.ascontiguousarray(data[key])
        h.update(f"{key}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_hdf5(path: str | Path, data: Mapping[str, np.ndarray], attrs: Mapping | None = None) -> Path:
    """Writes a D4RL-format file atomically (:func:`ppl_torchrl.data.write_d4rl_hdf5`)."""
    return write_d4rl_hdf5(path, data, attrs)


def minari_dataset_id(dataset_id: str) -> str:
    """The Minari id of a generated dataset: ``ppl-torchrl/<dataset_id>``."""
    return f"ppl-torchrl/{dataset_id}"


@contextmanager
def _minari_root(root: Path):
    # Minari resolves dataset paths from MINARI_DATASETS_PATH at call time; point it at the staging
    # folder for the duration of the write only, and restore it afterwards.
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def write_minari(
    dataset_id: str,
    data: Mapping[str, np.ndarray],
    *,
    env_id: str,
    ref_min: float | None = None,
    ref_max: float | None = None,
    description: str = "",
    algorithm_name: str = "ppl_torchrl.datagen (BFS waypoint planner + PD controller)",
    root: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes ``data`` (D4RL-format arrays with ``next_observations``) as a local Minari dataset.

    Episodes are split at ``terminals | timeouts``. Minari stores ``T + 1`` observations per
    episode: the episode's observations plus the last ``next_observation``. ``infos/*`` arrays
    become per-step Minari infos (their first row is repeated for the reset step, which Minari
    also stores). Returns the dataset folder.

    Args:
        dataset_id: the project id; the Minari id is :func:`minari_dataset_id` of it.
        env_id: gymnasium id of the eval env (stored as the dataset's env spec).
        algorithm_name: the behaviour that made the data (Minari metadata).
        root: the Minari datasets folder; default ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``.
        overwrite: replace an existing local Minari dataset of that id.
    """
    import gymnasium as gym
    from minari import create_dataset_from_buffers
    from minari.data_collector import EpisodeBuffer

    if "next_observations" not in data:
        raise KeyError("write_minari needs 'next_observations' (Minari stores each episode's final observation).")
    root = Path(root or os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets").expanduser()
    mid = minari_dataset_id(dataset_id)
    final = root / mid
    if final.exists() and not overwrite:
        raise FileExistsError(f"Minari dataset {mid!r} already exists at {final}; pass overwrite=True to replace it.")

    ends = np.flatnonzero(np.asarray(data["terminals"], bool) | np.asarray(data["timeouts"], bool))
    if len(ends) == 0 or ends[-1] != len(data["rewards"]) - 1:
        raise ValueError("write_minari: the last step must end an episode (terminal or timeout).")
    info_keys = [k for k in data if k.startswith("infos/")]
    buffers, start = [], 0
    for i, end in enumerate(ends):
        sl = slice(start, end + 1)
        obs = np.concatenate([data["observations"][sl], data["next_observations"][end : end + 1]])
        infos = {k.split("/", 1)[1]: np.concatenate([data[k][sl][:1], data[k][sl]]) for k in info_keys}
        buffers.append(EpisodeBuffer(
            id=i, observations=obs, actions=np.asarray(data["actions"][sl]),
            rewards=np.asarray(data["rewards"][sl]), terminations=np.asarray(data["terminals"][sl], bool),
            truncations=np.asarray(data["timeouts"][sl], bool), infos=infos,
        ))
        start = end + 1

    root.mkdir(parents=True, exist_ok=True)
    # Minari builds the dataset in a scratch root beside the final one (same file system), moved into place whole
    with tempfile.TemporaryDirectory(prefix=".ppl-staging-", dir=root) as scratch:
        staging = Path(scratch)
        with _minari_root(staging), warnings.catch_warnings():
            # Minari warns about optional metadata we do not have (author e-mail, code permalink).
            warnings.filterwarnings("ignore", category=UserWarning, module="minari")
            create_dataset_from_buffers(
                mid, buffers, env=gym.spec(env_id), ref_min_score=ref_min, ref_max_score=ref_max,
                algorithm_name=algorithm_name,
                description=description or dataset_id, author="ppl-torchrl",
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        ns_meta = staging / mid.split("/")[0] / "namespace_metadata.json"
        if ns_meta.exists() and not (final.parent / ns_meta.name).exists():
            shutil.copy2(ns_meta, final.parent / ns_meta.name)
        replace_folder(staging / mid, final)
    return final
