"""Reading, validating and writing D4RL-format HDF5 files.

A D4RL-format file is a flat HDF5 file with one row per environment step::

    observations  [N, obs_dim]   float
    actions       [N, act_dim]   float
    rewards       [N]            float ([N, 1] is accepted, as D4RL's get_dataset squeezes it)
    terminals     [N]            bool (true environment termination; 0/1 floats or ints accepted)
    timeouts      [N]            bool (time-limit end of an episode; likewise). Optional when read: D4RL's
                                 older files (v0 Gym-MuJoCo, maze2d, kitchen) have none, and episodes then end
                                 at the environment's time limit (transitions.time_limit_timeouts)
    next_observations [N, obs_dim]  optional
    infos/<name>  [N, ...]       optional (e.g. infos/qpos, infos/goal)
    metadata/...  anything       optional (scalars: algorithm, iteration; behaviour-policy weights)

These are the ``~/.d4rl/datasets/*.hdf5`` files that D4RL downloads, and the format our
data generator writes. Everything that reads such a file goes through
:func:`validate_d4rl_hdf5` first, so that a truncated download, a missing key or NaNs fail
loudly with a message that says what to do, instead of training on half a dataset.

Validation checks only what is read: the :data:`REQUIRED_KEYS`, ``timeouts`` and ``next_observations`` when
present, and the ``infos/*`` entries a caller asks for. Everything else a real D4RL file holds
(``metadata/*`` scalars and policy weights, ``infos/*`` nobody reads, other groups) is not
checked; scalar entries are returned as :attr:`D4RLFileInfo.metadata`. ``docs/data.md``
("Real D4RL file layouts") lists what each suite's files hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from ppl_torchrl.atomic import UMASK, atomic_path

#: Keys a D4RL-format file must have.
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
#: Keys that are read when present (a file without ``timeouts`` needs its environment's time limit).
OPTIONAL_KEYS = ("timeouts", "next_observations")
#: Keys :func:`write_d4rl_hdf5` writes (always with ``timeouts``, as D4RL's newer files).
WRITTEN_KEYS = REQUIRED_KEYS + ("timeouts",)
#: Rows read at a time when scanning a file (bounds memory, independent of the file size).
CHUNK_ROWS = 65_536

#: [N, dim] keys, and [N] keys ([N, 1] accepted), of those that are read.
_MATRIX_KEYS = ("observations", "actions", "next_observations")
_VECTOR_KEYS = ("rewards", "terminals", "timeouts")
_FLAG_KEYS = ("terminals", "timeouts")

__all__ = [
    "REQUIRED_KEYS",
    "OPTIONAL_KEYS",
    "WRITTEN_KEYS",
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
        infos: the ``infos/*`` datasets with one row per step (N rows); only those passed as
            ``infos=`` to :func:`validate_d4rl_hdf5` were checked beyond their row count.
        metadata: every scalar dataset of the file, by path, as a Python value (D4RL's
            ``metadata/algorithm`` -> ``"SAC"``, ``metadata/iteration`` -> ``1000000``...).
        ignored: the datasets that are neither read nor scalar (behaviour-policy weights such
            as ``metadata/policy/fc0/weight``, ``infos/*`` of another length, other groups).
    """

    path: Path
    num_steps: int
    obs_dim: int
    act_dim: int
    keys: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    infos: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)
    ignored: tuple[str, ...] = ()

    @property
    def has_next_observations(self) -> bool:
        return "next_observations" in self.keys

    @property
    def has_timeouts(self) -> bool:
        return "timeouts" in self.keys


def _fix_hint(path: Path) -> str:
    return (
        f"Re-download or regenerate {path} (a D4RL id re-downloads automatically once the broken "
        "file is removed), or pass another D4RL-format HDF5 path or a Minari dataset id."
    )


def _list_datasets(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def validate_d4rl_hdf5(
    path: str | Path, *, check_finite: bool = True, infos: Sequence[str] = ()
) -> D4RLFileInfo:
    """Checks that ``path`` is a complete, readable D4RL-format HDF5 file.

    Only the datasets that are read are checked: the :data:`REQUIRED_KEYS`, ``timeouts`` and
    ``next_observations`` when present, and the ``infos`` a caller names (e.g.
    ``("infos/qpos", "infos/qvel")``). For those: they exist; they have the same number of rows
    N > 1 as ``rewards``; observations/actions/next observations are 2-D (next observations of
    the shape of observations) and rewards/terminals/timeouts are ``[N]`` or ``[N, 1]``; their
    dtypes are numeric (flags may be bool, integers or floats); and, when ``check_finite``,
    every chunk of :data:`CHUNK_ROWS` rows reads back (which detects a file truncated after its
    header), float data hold no NaN/inf and flags that are not bool hold only 0 and 1.
    Validating a 2 GB file thus needs little memory.

    Anything else in the file is not checked: real D4RL files also hold ``metadata/*`` scalars
    (algorithm, iteration, the policy's nonlinearity), behaviour-policy weights
    (``metadata/policy/fc0/weight``...) and ``infos/*`` of various widths. Scalars are returned
    in :attr:`D4RLFileInfo.metadata`, the rest is listed in :attr:`D4RLFileInfo.ignored`.

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
        try:
            keys = _list_datasets(h5)
        except (OSError, ValueError, KeyError) as err:
            raise D4RLFileError(
                f"{path}: listing the datasets failed ({err}); the file is truncated or corrupt. {_fix_hint(path)}"
            ) from err
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        if missing:
            raise D4RLFileError(
                f"{path} lacks the D4RL key(s) {missing} (it has {sorted(keys)}). A D4RL-format file "
                f"needs {list(REQUIRED_KEYS)}; write one with ppl_torchrl.data.write_d4rl_hdf5. "
                + _fix_hint(path)
            )
        infos = tuple(infos)
        missing = [k for k in infos if k not in keys]
        if missing:
            raise D4RLFileError(
                f"{path} lacks {missing}, which the caller reads (it has {sorted(keys)}). " + _fix_hint(path)
            )
        used = list(dict.fromkeys(list(REQUIRED_KEYS) + [k for k in OPTIONAL_KEYS if k in keys] + list(infos)))
        shapes = {k: h5[k].shape for k in used}
        dtypes = {k: h5[k].dtype for k in used}
        for k in used:
            allowed = "biuf" if k in _FLAG_KEYS else ("iuf" if not k.startswith("infos/") else "biuf")
            if dtypes[k].kind not in allowed:
                kind = "bool, or integers/floats holding 0 and 1" if k in _FLAG_KEYS else "numbers (float32 in D4RL)"
                raise D4RLFileError(
                    f"{path}: '{k}' has dtype {dtypes[k]}; it must hold {kind}. " + _fix_hint(path)
                )
        n = shapes["rewards"][0] if shapes["rewards"] else 0
        bad = {k: s for k, s in shapes.items() if not s or s[0] != n}
        if bad:
            raise D4RLFileError(
                f"{path}: every key must have {n} rows (the length of 'rewards'), but got {bad}. "
                f"Only the keys that are read are checked ({used}); metadata and other entries are "
                "ignored. " + _fix_hint(path)
            )
        if n < 2:
            raise D4RLFileError(f"{path} holds {n} steps; at least 2 are needed to form a transition.")
        for k in _MATRIX_KEYS:
            if k in shapes and len(shapes[k]) != 2:
                raise D4RLFileError(f"{path}: '{k}' must be 2-D [N, dim], got shape {shapes[k]}.")
        for k in (k for k in _VECTOR_KEYS if k in shapes):
            if shapes[k] not in ((n,), (n, 1)):
                raise D4RLFileError(
                    f"{path}: '{k}' must be 1-D [N] (or [N, 1], which D4RL's get_dataset squeezes), "
                    f"got shape {shapes[k]}."
                )
        if "next_observations" in shapes and shapes["next_observations"] != shapes["observations"]:
            raise D4RLFileError(
                f"{path}: 'next_observations' has shape {shapes['next_observations']}, "
                f"'observations' {shapes['observations']}; they must match."
            )
        if check_finite:
            _scan_chunked(h5, path, n, used)
        row_infos, metadata, ignored = _classify_rest(h5, keys, set(used), n)
        info = D4RLFileInfo(
            path=path,
            num_steps=int(n),
            obs_dim=int(shapes["observations"][1]),
            act_dim=int(shapes["actions"][1]),
            keys=tuple(sorted(keys)),
            attrs={k: _attr_value(v) for k, v in h5.attrs.items()},
            infos=tuple(sorted(set(row_infos) | {k for k in infos if k.startswith("infos/")})),
            metadata=metadata,
            ignored=tuple(sorted(ignored)),
        )
    return info


def _classify_rest(h5: h5py.File, keys: list[str], used: set[str], n: int):
    """Sorts the datasets nobody validated: row-aligned ``infos/*``, scalars (metadata), the rest."""
    row_infos, metadata, ignored = [], {}, []
    for k in keys:
        if k in used:
            continue
        shape = h5[k].shape
        if shape == ():
            try:
                value = _attr_value(h5[k][()])
            except (OSError, ValueError, TypeError):
                ignored.append(k)
                continue
            # kept in the import's JSON marker: anything but plain scalars becomes its repr
            metadata[k] = value if isinstance(value, (str, int, float, bool)) else repr(value)
        elif k.startswith("infos/") and shape and shape[0] == n:
            row_infos.append(k)
        else:
            ignored.append(k)
    return row_infos, metadata, ignored


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _scan_chunked(h5: h5py.File, path: Path, n: int, keys: list[str]) -> None:
    """Reads every chunk of ``keys``: readable, finite floats, flags that are 0 or 1."""
    for start in range(0, n, CHUNK_ROWS):
        stop = min(n, start + CHUNK_ROWS)
        for k in keys:
            try:
                chunk = h5[k][start:stop]
            except (OSError, ValueError) as err:
                raise D4RLFileError(
                    f"{path}: reading '{k}' rows {start}:{stop} failed ({err}); the file is "
                    f"truncated or corrupt. {_fix_hint(path)}"
                ) from err
            flat = chunk.reshape(len(chunk), -1)
            if k in _FLAG_KEYS:
                if chunk.dtype != np.bool_:
                    ok = ((flat == 0) | (flat == 1)).all(1)
                    if not ok.all():
                        row = start + int(np.flatnonzero(~ok)[0])
                        raise D4RLFileError(
                            f"{path}: '{k}' must hold only 0 and 1 (or bool), but row {row} holds "
                            f"{flat[row - start].tolist()}. Fix or regenerate the data."
                        )
            elif np.issubdtype(chunk.dtype, np.floating):
                ok = np.isfinite(flat).all(1)
                if not ok.all():
                    row = start + int(np.flatnonzero(~ok)[0])
                    raise D4RLFileError(
                        f"{path}: '{k}' holds NaN or inf (first at row {row}). Fix or regenerate the data; "
                        "offline RL on non-finite values silently diverges."
                    )


def read_d4rl_hdf5(
    path: str | Path, *, check_finite: bool = True, infos: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Validates ``path`` (:func:`validate_d4rl_hdf5`) and returns its per-step arrays in memory.

    Returns the :data:`REQUIRED_KEYS`, ``timeouts`` and ``next_observations`` when present, and the ``infos``
    named (validated like the required keys), or, when ``infos`` is ``None``, every ``infos/*``
    dataset with one row per step. ``terminals``/``timeouts`` are returned as ``bool`` and
    ``rewards``/flags as ``[N]``, as D4RL's ``get_dataset`` does. Metadata is in
    ``validate_d4rl_hdf5(path).metadata``. Meant for small files and tests; training imports
    large files into a memmap without ever loading them whole
    (:func:`ppl_torchrl.data.import_d4rl_hdf5`).
    """
    info = validate_d4rl_hdf5(path, check_finite=check_finite, infos=infos or ())
    names = list(REQUIRED_KEYS) + [k for k in OPTIONAL_KEYS if k in info.keys]
    names += list(info.infos if infos is None else infos)
    with h5py.File(info.path, "r") as h5:
        out = {k: h5[k][()] for k in dict.fromkeys(names)}
    for k in (k for k in _VECTOR_KEYS if k in out):
        out[k] = out[k].reshape(-1)
    for k in (k for k in _FLAG_KEYS if k in out):
        out[k] = out[k].astype(bool)
    return out


def write_d4rl_hdf5(
    path: str | Path,
    data: Mapping[str, np.ndarray],
    attrs: Mapping | None = None,
) -> Path:
    """Writes ``data`` as a D4RL-format HDF5 file at ``path``, atomically; returns the path.

    ``data`` must hold :data:`WRITTEN_KEYS` (``observations [T, obs]``, ``actions [T, act]``,
    ``rewards [T]``, ``terminals [T]``, ``timeouts [T]``) and may hold ``next_observations`` and
    ``"infos/<name>"`` arrays with T rows. Floats are stored as float32 and flags as bool, the
    dtypes of most D4RL files. ``attrs`` become root attributes (provenance: generator, seed...).

    The file is written through :func:`ppl_torchrl.atomic.atomic_path` (a temporary file moved into place once
    complete, with the permissions of the user's umask), so a crash never leaves a half-written file under
    ``path``; the written file is re-validated before the move.
    """
    path = Path(path).expanduser()
    missing = [k for k in WRITTEN_KEYS if k not in data]
    if missing:
        raise KeyError(f"write_d4rl_hdf5: data lacks {missing}; the files it writes hold {list(WRITTEN_KEYS)}.")
    n = len(data["rewards"])
    bad = {k: np.shape(v) for k, v in data.items() if not np.ndim(v) or len(v) != n}
    if bad:
        raise ValueError(f"write_d4rl_hdf5: every array needs {n} rows (len of 'rewards'); got {bad}.")
    with atomic_path(path, mode=UMASK) as tmp:  # a data file: the permissions of the user's umask
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
    return path
