"""Minari datasets as a TorchRL ``MinariExperienceReplay`` with the authors' transition semantics.

TorchRL's own conversion (``MinariExperienceReplay(load_from_local_minari=True)``) is not used
to fill the storage: in torchrl 0.14.1 it builds the data in RAM and then saves it with
``TensorDict.memmap_like``, which allocates the files without copying the values, so every
entry of the resulting dataset is zero (reproduced in ``docs/data.md``). We read the episodes
through Minari's public API (``minari.load_dataset``, honouring ``MINARI_DATASETS_PATH``), lay
them out as a flat D4RL-style step table (episode by episode, ``truncations`` as ``timeouts``),
and build the transitions with the same code as for D4RL files
(:func:`~ppl_torchrl.data.transitions.write_transitions`, with Minari's true next
observations). ``MinariExperienceReplay(download=False)`` then serves the result from
``root/minari/<dataset_id>``, so later runs need neither Minari's files nor the network.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from torchrl.data.datasets import MinariExperienceReplay
from ppl_torchrl.progress import progress_bar

from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.data.cache import cached_import
from ppl_torchrl.data.transitions import DatasetStats, write_transitions

__all__ = ["CORLMinariExperienceReplay", "import_minari_dataset", "local_minari_ids", "minari_root"]

#: the spaces of the dataset, beside its transitions: what TorchRL's ``MinariExperienceReplay`` reads back
ENV_METADATA = "env_metadata.json"


def minari_root() -> Path:
    """Minari's local dataset folder: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()


def local_minari_ids() -> list[str]:
    """Ids of the Minari datasets present under :func:`minari_root` (no network)."""
    root = minari_root()
    if not root.is_dir():
        return []
    return sorted(
        str(p.parent.parent.relative_to(root)) for p in root.rglob("data/main_data.hdf5")
    )


def _rows(value) -> np.ndarray:
    """One observation entry as ``[T+1, dim]`` float32; a nested dict (Minari stores Dict spaces inside Dict
    spaces as nested groups, e.g. FrankaKitchen's ``desired_goal``) concatenated in sorted key order, the order
    of gymnasium's ``flatten`` for a Dict space built from a dict."""
    if isinstance(value, dict):
        return np.concatenate([_rows(value[k]) for k in sorted(value)], axis=1)
    value = np.asarray(value, dtype=np.float32)
    return value.reshape(len(value), -1)


def _flatten_obs(obs, keys: Sequence[str] | None) -> np.ndarray:
    """Observations of one episode as ``[T+1, dim]`` float32; dict observations concatenated."""
    if isinstance(obs, dict):
        keys = list(keys) if keys is not None else sorted(obs)
        missing = [k for k in keys if k not in obs]
        if missing:
            raise KeyError(f"observation_keys {missing} not in the dataset's observations {sorted(obs)}.")
        return np.concatenate([_rows(obs[k]) for k in keys], axis=1)
    if keys is not None:
        raise ValueError(f"observation_keys={list(keys)} picks entries of dict observations, but this dataset's "
                         "observations are one array: leave observation_keys unset.")
    obs = np.asarray(obs, dtype=np.float32)
    return obs.reshape(len(obs), -1)


def _requested(observation_keys: Sequence[str] | None) -> list[str] | None:
    if observation_keys is None:
        return None
    if isinstance(observation_keys, str) or not all(isinstance(k, str) for k in observation_keys) \
            or not observation_keys:
        raise ValueError(f"observation_keys must be a non-empty list of the dataset's observation keys, e.g. "
                         f"['achieved_goal', 'observation']; got {observation_keys!r}.")
    return list(observation_keys)


def _box_to_dict(space) -> dict | None:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "low": space.low.reshape(-1).astype(float).tolist(),
            "high": space.high.reshape(-1).astype(float).tolist(),
            "dtype": str(space.dtype),
            "shape": [int(np.prod(space.shape))],
        }
    return None


def import_minari_dataset(
    dataset_id: str,
    dest: str | Path,
    *,
    observation_keys: Sequence[str] | None = None,
    progress: bool = True,
) -> DatasetStats:
    """Imports the local Minari dataset ``dataset_id`` into CORL-semantics transitions at ``dest``.

    Episodes are concatenated in Minari's order; a step with ``truncations`` set is dropped like
    a D4RL timeout row (so is the last step of an episode that ends with neither flag), ``terminations``
    is the only flag that stops bootstrapping, the next action is the action of the following row, and
    the dataset's last row is dropped (:mod:`ppl_torchrl.data.transitions`). Dict observations are
    concatenated in the order of ``observation_keys`` (default: all keys, sorted; a nested dict's entries
    in sorted order); the stats' ``metadata`` records the keys used and the keys available.
    """
    import minari

    requested = _requested(observation_keys)
    try:
        ds = minari.load_dataset(dataset_id)
    except Exception as err:  # minari raises FileNotFoundError / ValueError variants
        known = local_minari_ids()
        raise FileNotFoundError(
            f"Minari dataset {dataset_id!r} is not available locally under {minari_root()} ({err}). "
            f"Local Minari ids: {known or 'none'}. Download it once with `minari download {dataset_id}` "
            "or set MINARI_DATASETS_PATH to the folder that holds it."
        ) from err
    n = int(ds.total_steps)
    obs_dim = act_dim = None
    available = None  # the keys of dict observations
    with tempfile.TemporaryDirectory(dir=Path(dest).parent if Path(dest).parent.exists() else None) as tmp:
        arrays: dict[str, np.ndarray] = {}
        row = 0
        for ep in progress_bar(ds.iterate_episodes(), total=ds.total_episodes, desc=f"reading {dataset_id}",
                       disable=not progress, unit="episode"):
            if isinstance(ep.observations, dict):
                available = sorted(ep.observations)
            obs = _flatten_obs(ep.observations, observation_keys)
            act = np.asarray(ep.actions, dtype=np.float32).reshape(len(ep.actions), -1)
            t = len(act)
            if not arrays:
                obs_dim, act_dim = obs.shape[1], act.shape[1]
                shapes = {
                    "observations": (n, obs_dim), "next_observations": (n, obs_dim), "actions": (n, act_dim),
                    "rewards": (n,), "terminals": (n,), "timeouts": (n,),
                }
                for k, shape in shapes.items():
                    dtype = bool if k in ("terminals", "timeouts") else np.float32
                    arrays[k] = np.lib.format.open_memmap(f"{tmp}/{k}.npy", mode="w+", dtype=dtype, shape=shape)
            sl = slice(row, row + t)
            arrays["observations"][sl] = obs[:-1]
            arrays["next_observations"][sl] = obs[1:]
            arrays["actions"][sl] = act
            arrays["rewards"][sl] = np.asarray(ep.rewards, dtype=np.float32).reshape(-1)
            arrays["terminals"][sl] = np.asarray(ep.terminations, dtype=bool).reshape(-1)
            arrays["timeouts"][sl] = np.asarray(ep.truncations, dtype=bool).reshape(-1)
            # an episode that ends with neither flag (possible with create_dataset_from_buffers) is cut there: its
            # last row is dropped like a truncated one, instead of taking the next episode's first action as a'
            arrays["timeouts"][row + t - 1] |= not arrays["terminals"][row + t - 1]
            row += t
        if row != n or n < 2:
            raise ValueError(f"Minari dataset {dataset_id!r}: read {row} steps, metadata says {n}; re-download it.")
        if not all(np.isfinite(arrays[k]).all() for k in ("observations", "actions", "rewards", "next_observations")):
            raise ValueError(f"Minari dataset {dataset_id!r} holds NaN or inf values; fix or re-create it.")
        stats = write_transitions(
            arrays, dest, name=dataset_id, source=f"minari:{dataset_id}",
            use_next_observations=True, progress=progress,
            # the import depends on the requested keys too: another request imports again
            fingerprint={"minari_total_steps": n, "observation_keys": requested},
            metadata={"observation_keys": (list(observation_keys) if observation_keys else available)
                      if available else None, "available_observation_keys": available},
        )
        del arrays
    metadata = {
        "dataset_id": dataset_id,
        "total_steps": n,
        "total_episodes": int(ds.total_episodes),
        "observation_space": {"type": "Box", "low": [-float("inf")] * obs_dim, "high": [float("inf")] * obs_dim,
                              "dtype": "float32", "shape": [obs_dim]},
        "action_space": _box_to_dict(ds.action_space),
    }
    atomic_write(Path(dest) / ENV_METADATA, json.dumps(metadata))
    return stats


class CORLMinariExperienceReplay(MinariExperienceReplay):
    """``MinariExperienceReplay`` over a local Minari dataset imported with the authors' semantics.

    The import runs once into ``root/minari/<dataset_id>`` (see :func:`import_minari_dataset`);
    later runs reuse it. ``dataset_stats`` holds the counts and state statistics. Other keyword
    arguments (``sampler``, ``prefetch``, ``transform``...) go to ``MinariExperienceReplay``.
    """

    def __init__(
        self,
        dataset_id: str,
        batch_size: int,
        *,
        root: str | Path | None = None,
        observation_keys: Sequence[str] | None = None,
        progress: bool = True,
        **kwargs,
    ):
        from ppl_torchrl.data.d4rl import default_root

        sub = (Path(root).expanduser() if root is not None else default_root()) / "minari"
        folder = sub / dataset_id
        requested = _requested(observation_keys)
        # the import depends on the observation keys asked for: another request imports again
        stats = cached_import(
            folder, lambda: import_minari_dataset(dataset_id, folder, observation_keys=observation_keys,
                                                  progress=progress),
            match={"observation_keys": requested}, needs=(ENV_METADATA,))
        super().__init__(dataset_id, batch_size, root=sub, download=False, **kwargs)
        self.dataset_stats = stats
