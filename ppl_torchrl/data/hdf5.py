"""Reading, validating and writing D4RL-format HDF5 files.

A D4RL-format file is a flat HDF5 file with one row per environment step::

    observations  [N, obs_dim]   float
    actions       [N, act_dim]   float
    rewards       [N]            float
    terminals     [N]            bool (true environment termination)
    timeouts      [N]            bool (time-limit end of an episode)
    next_observations [N, obs_dim]  optional
    infos/<name>  [N, ...]       optional (e.g. infos/qpos, infos/goal)

These are the ``~/.d4rl/datasets/*.hdf5`` files that D4RL downloads, and the format our
data generator writes. Everything that reads such a file goes through
:func:`validate_d4rl_hdf5` first, so that a truncated download, a missing key or NaNs fail
loudly with a message that says what to do, instead of training on half a dataset.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

#: Keys a D4RL-format file must have.
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
#: Keys that are read when present.
OPTIONAL_KEYS = ("next_observations",)
#: Rows read at a time when scanning a file (bounds memory, independent of the file size).
CHUNK_ROWS = 65_536

__all__ = [
    "REQUIRED_KEYS",
    "OPTIONAL_KEYS",
    "D4RLFileError",
    "D4RLFileInfo",
    "validate_d4rl_hdf5",
    "read_d4rl_hdf5",
    "write_d4rl_hdf5",
]


class D4RLFileError(ValueError):
    """A D4RL-format HDF5 file is unreadable, incomplete or holds invalid values."""


@dataclass(frozen=True)
class D4RLFileInfo:
    """What :func:`validate_d4rl_hdf5` learned about a file (no data is kept in memory).

    Attributes:
        path: the file.
        num_steps: N, the number of rows.
        obs_dim: observation size.
        act_dim: action size.
        keys: every dataset in the file, ``"infos/qpos"`` style for groups.
        attrs: the file's root attributes (e.g. generator metadata).
    """

    path: Path
    num_steps: int
    obs_dim: int
    act_dim: int
    keys: tuple[str, ...]
    attrs: dict = field(default_factory=dict)

    @property
    def has_next_observations(self) -> bool:
        return "next_observations" in self.keys


def _fix_hint(path: Path) -> str:
    return (
        f"Re-download or regenerate {path} (a D4RL id re-downloads automatically once the broken "
        "file is removed), or pass another D4RL-format HDF5 path or a Minari dataset id."
    )


def _list_datasets(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def validate_d4rl_hdf5(path: str | Path, *, check_finite: bool = True) -> D4RLFileInfo:
    """Checks that ``path`` is a complete, readable D4RL-format HDF5 file.

    Checks: the file opens; every key in :data:`REQUIRED_KEYS` exists; every dataset
    (``infos/*`` included) has the same number of rows N > 1; observations/actions are 2-D and
    ``next_observations`` has the shape of ``observations``; and, when ``check_finite``, that
    observations, actions, rewards and next observations hold no NaN/inf. The data are read in
    chunks of :data:`CHUNK_ROWS` rows, so validating a 2 GB file needs little memory. Reading
    every chunk is also what detects a truncated file whose header survived.

    Raises:
        FileNotFoundError: the file does not exist.
        D4RLFileError: anything else is wrong; the message names the key and what to do.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No D4RL-format HDF5 file at {path}. Pass the path of an existing .hdf5 file "
            "(e.g. ~/.d4rl/datasets/<name>.hdf5), a D4RL dataset id, or a Minari dataset id."
        )
    try:
        h5 = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise D4RLFileError(
            f"Cannot open {path} as HDF5 ({err}); the file is truncated or not HDF5. {_fix_hint(path)}"
        ) from err
    with h5:
        keys = _list_datasets(h5)
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        if missing:
            raise D4RLFileError(
                f"{path} lacks the D4RL key(s) {missing} (it has {sorted(keys)}). A D4RL-format file "
                f"needs {list(REQUIRED_KEYS)}; write one with ppl_torchrl.data.write_d4rl_hdf5. "
                + _fix_hint(path)
            )
        n = h5["rewards"].shape[0] if h5["rewards"].ndim else 0
        bad = {k: h5[k].shape for k in keys if not h5[k].shape or h5[k].shape[0] != n}
        if bad:
            raise D4RLFileError(
                f"{path}: every key must have {n} rows (the length of 'rewards'), but got {bad}. "
                + _fix_hint(path)
            )
        if n < 2:
            raise D4RLFileError(f"{path} holds {n} steps; at least 2 are needed to form a transition.")
        for k in ("observations", "actions"):
            if h5[k].ndim != 2:
                raise D4RLFileError(f"{path}: '{k}' must be 2-D [N, dim], got shape {h5[k].shape}.")
        for k in ("rewards", "terminals", "timeouts"):
            if h5[k].ndim != 1:
                raise D4RLFileError(f"{path}: '{k}' must be 1-D [N], got shape {h5[k].shape}.")
        if "next_observations" in keys and h5["next_observations"].shape != h5["observations"].shape:
            raise D4RLFileError(
                f"{path}: 'next_observations' has shape {h5['next_observations'].shape}, "
                f"'observations' {h5['observations'].shape}; they must match."
            )
        if check_finite:
            _check_finite_chunked(h5, path, n)
        info = D4RLFileInfo(
            path=path,
            num_steps=int(n),
            obs_dim=int(h5["observations"].shape[1]),
            act_dim=int(h5["actions"].shape[1]),
            keys=tuple(sorted(keys)),
            attrs={k: _attr_value(v) for k, v in h5.attrs.items()},
        )
    return info


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _check_finite_chunked(h5: h5py.File, path: Path, n: int) -> None:
    keys = [k for k in ("observations", "actions", "rewards", "next_observations") if k in h5]
    for start in range(0, n, CHUNK_ROWS):
        stop = min(n, start + CHUNK_ROWS)
        for k in keys + ["terminals", "timeouts"]:
            try:
                chunk = h5[k][start:stop]
            except (OSError, ValueError) as err:
                raise D4RLFileError(
                    f"{path}: reading '{k}' rows {start}:{stop} failed ({err}); the file is "
                    f"truncated or corrupt. {_fix_hint(path)}"
                ) from err
            if k in keys and np.issubdtype(chunk.dtype, np.floating) and not np.isfinite(chunk).all():
                row = start + int(np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0])
                raise D4RLFileError(
                    f"{path}: '{k}' holds NaN or inf (first at row {row}). Fix or regenerate the data; "
                    "offline RL on non-finite values silently diverges."
                )


def read_d4rl_hdf5(path: str | Path, *, check_finite: bool = True) -> dict[str, np.ndarray]:
    """Validates ``path`` (:func:`validate_d4rl_hdf5`) and returns all its arrays in memory.

    Keys are as in the file (``"infos/qpos"`` for groups); ``terminals``/``timeouts`` are
    returned as ``bool``. Meant for small files and tests; training imports large files into
    a memmap without ever loading them whole (:func:`ppl_torchrl.data.import_d4rl_hdf5`).
    """
    info = validate_d4rl_hdf5(path, check_finite=check_finite)
    with h5py.File(info.path, "r") as h5:
        out = {k: h5[k][()] for k in info.keys}
    for k in ("terminals", "timeouts"):
        out[k] = out[k].astype(bool)
    return out


def write_d4rl_hdf5(
    path: str | Path,
    data: Mapping[str, np.ndarray],
    attrs: Mapping | None = None,
) -> Path:
    """Writes ``data`` as a D4RL-format HDF5 file at ``path``, atomically; returns the path.

    ``data`` must hold :data:`REQUIRED_KEYS` (``observations [T, obs]``, ``actions [T, act]``,
    ``rewards [T]``, ``terminals [T]``, ``timeouts [T]``) and may hold ``next_observations`` and
    ``"infos/<name>"`` arrays with T rows. Floats are stored as float32 and flags as bool, the
    dtypes of D4RL's files. ``attrs`` become root attributes (provenance: generator, seed...).

    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so a crash never leaves a half-written file under ``path``; the written file
    is re-validated before the move.
    """
    path = Path(path).expanduser()
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise KeyError(f"write_d4rl_hdf5: data lacks {missing}; D4RL files need {list(REQUIRED_KEYS)}.")
    n = len(data["rewards"])
    bad = {k: np.shape(v) for k, v in data.items() if not np.ndim(v) or len(v) != n}
    if bad:
        raise ValueError(f"write_d4rl_hdf5: every array needs {n} rows (len of 'rewards'); got {bad}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as h5:
            for key, value in data.items():
                value = np.asarray(value)
                if key in ("terminals", "timeouts"):
                    value = value.astype(bool)
                elif np.issubdtype(value.dtype, np.floating):
                    value = value.astype(np.float32, copy=False)
                h5.create_dataset(key, data=value)
            for key, value in (attrs or {}).items():
                h5.attrs[key] = value
        validate_d4rl_hdf5(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
