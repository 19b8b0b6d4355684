"""Turning a flat D4RL-style step table into (s, a, r, s', a', terminated) transitions on disk.

This module holds the one place where the transition semantics of the authors' code are
decided (CORL's ``qlearning_dataset`` in ``algorithms/offline/rebrac.py``, which PPL copies):

* row ``i`` becomes the transition ``(obs[i], act[i], rew[i], obs[i+1], act[i+1], terminals[i])``
  for ``i`` in ``range(N - 1)`` -- the file's last row has no successor and is dropped;
* a row whose ``timeouts`` flag is set is dropped (its successor row starts another episode, so
  ``obs[i+1]`` would not be its next state);
* ``terminated = terminals`` is the only flag that stops bootstrapping; ``truncated`` is stored
  (all false after the drop) and ``done = terminated | truncated``;
* ``next action = act[i+1]`` (the ReBRAC critic penalty). For a terminal row this is the first
  action of the next episode, exactly as in CORL; it is multiplied by ``1 - terminated`` in every
  loss, so its value never matters.

The selection is vectorised (``np.flatnonzero`` on the flags) and the rows are streamed in chunks
straight into a memory-mapped TensorDict, so an import never holds the dataset in RAM.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tensordict import TensorDict

from ppl_torchrl.atomic import atomic_folder
from ppl_torchrl.keys import (
    ACTION,
    DONE,
    NEXT_ACTION,
    NEXT_OBSERVATION,
    OBSERVATION,
    REWARD,
    TERMINATED,
    TRUNCATED,
)
from ppl_torchrl.progress import progress_bar

#: Version of the on-disk layout and semantics; a cache written with another version is rebuilt.
FORMAT_VERSION = "ppl-corl-v1"
#: Name of the file, inside a memmap folder, that marks a complete import and holds its stats.
MARKER = "ppl_dataset.json"
#: CORL's ``compute_mean_std(states, eps=1e-3)``: std is ``states.std(0) + 1e-3``.
STATE_STD_EPS = 1e-3
#: Transitions written per chunk (bounds import memory).
CHUNK = 65_536


@dataclass
class DatasetStats:
    """What an import produced, stored next to the memmap as :data:`MARKER`.

    ``state_mean``/``state_std`` are computed over the *kept* observations, as CORL does, with
    ``state_std = std + 1e-3`` (population std); evaluation must normalise env observations with
    the same numbers when training used ``normalize_states=True``. ``metadata`` holds the source
    file's scalar entries (a real D4RL file's ``metadata/algorithm``, ``metadata/iteration``...).
    """

    name: str
    source: str
    num_steps: int
    num_transitions: int
    num_dropped_timeouts: int
    num_dropped_last: int
    num_terminals: int
    obs_dim: int
    act_dim: int
    state_mean: list[float]
    state_std: list[float]
    reward_min: float
    reward_max: float
    fingerprint: dict = field(default_factory=dict)
    format: str = FORMAT_VERSION
    metadata: dict = field(default_factory=dict)

    def state_mean_tensor(self, device=None) -> torch.Tensor:
        return torch.tensor(self.state_mean, dtype=torch.float32, device=device)

    def state_std_tensor(self, device=None) -> torch.Tensor:
        return torch.tensor(self.state_std, dtype=torch.float32, device=device)

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: Path) -> "DatasetStats":
        return cls(**json.loads(Path(path).read_text()))


def time_limit_timeouts(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """The ``timeouts`` that D4RL's ``qlearning_dataset`` infers for a file that has none, as a bool array.

    D4RL's older files (v0 Gym-MuJoCo, maze2d, kitchen) store no ``timeouts``; ``qlearning_dataset`` then counts
    steps and treats row ``i`` as an episode's final step when its counter reaches ``max_episode_steps - 1``.
    The counter restarts at 0 after such a row but at 1 after a terminal row (D4RL resets it, then increments
    it for the kept row); both are reproduced exactly, so a file without ``timeouts`` gives D4RL's transitions.
    """
    if int(max_episode_steps) < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}.")
    limit = int(max_episode_steps)
    terminals = np.asarray(terminals, dtype=bool).reshape(-1)
    timeouts = np.zeros(len(terminals), dtype=bool)
    start, step = 0, 0  # the row where the counter is ``step``
    for end in [*np.flatnonzero(terminals).tolist(), len(terminals)]:  # count up to each terminal row
        first = start + (limit - 1 - step)  # the first final step of this stretch
        finals = np.arange(first, end + 1, limit) if first <= end else np.empty(0, dtype=np.int64)
        finals = finals[finals < len(terminals)]
        timeouts[finals] = True
        if end == len(terminals):
            break
        if len(finals) and finals[-1] == end:  # the terminal row is a final step: skipped, the counter restarts at 0
            start, step = end + 1, 0
        else:
            start, step = end + 1, 1
    return timeouts


def corl_transition_rows(timeouts: np.ndarray) -> np.ndarray:
    """Indices of the rows that CORL's ``qlearning_dataset`` keeps, as an int64 array.

    Row ``i`` is kept iff ``i < N - 1`` and ``timeouts[i]`` is false (vectorised equivalent of
    CORL's ``for i in range(N - 1): if timeouts[i]: continue``).
    """
    timeouts = np.asarray(timeouts, dtype=bool).reshape(-1)
    keep = ~timeouts
    keep[-1] = False
    return np.flatnonzero(keep)


class _RunningMoments:
    """Mean and population variance over chunks (Chan et al. merge), in float64."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def update(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        n_b = len(x)
        if n_b == 0:
            return
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        delta = mean_b - self.mean
        n = self.n + n_b
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n, 1))


def _slice(array: Any, lo: int, hi: int) -> np.ndarray:
    part = array[lo:hi]
    if isinstance(part, torch.Tensor):
        part = part.numpy()
    return np.asarray(part)


def write_transitions(
    arrays: Mapping[str, Any],
    dest: str | Path,
    *,
    name: str,
    source: str,
    use_next_observations: bool = False,
    fingerprint: dict | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> DatasetStats:
    """Builds the transitions of ``arrays`` and writes them as a memmapped TensorDict at ``dest``.

    Args:
        arrays: row-aligned arrays (numpy arrays, h5py datasets or CPU tensors; anything that
            slices) with keys ``observations``, ``actions``, ``rewards``, ``terminals``,
            ``timeouts`` and, if ``use_next_observations``, ``next_observations``.
        dest: folder of the result; written to a temporary sibling folder and moved into place once complete
            (:func:`ppl_torchrl.atomic.atomic_folder`), so a crash never leaves a half-built dataset.
        name, source, fingerprint, metadata: recorded in the :class:`DatasetStats` marker file
            (``metadata`` must be JSON-serialisable: the file's scalar entries).
        use_next_observations: take s' from ``next_observations[i]`` instead of
            ``observations[i+1]`` (CORL uses the latter for D4RL files; Minari stores the true s').

    Returns:
        the :class:`DatasetStats` of the import (also saved as ``dest/ppl_dataset.json``).
    """
    dest = Path(dest)
    timeouts = _slice(arrays["timeouts"], 0, len(arrays["timeouts"])).astype(bool).reshape(-1)
    terminals = _slice(arrays["terminals"], 0, len(arrays["terminals"])).astype(bool).reshape(-1)
    n = len(timeouts)
    rows = corl_transition_rows(timeouts)
    k = len(rows)
    if k == 0:
        raise ValueError(
            f"{source}: no transition is left after dropping timeout rows and the last row "
            f"({n} steps, {int(timeouts.sum())} timeouts); the dataset is empty or all timeouts."
        )
    obs_dim = int(arrays["observations"].shape[1])
    act_dim = int(arrays["actions"].shape[1])

    with atomic_folder(dest) as tmp:  # moved into place once complete
        td = TensorDict(batch_size=[k]).memmap_(tmp)
        spec = {
            OBSERVATION: ([k, obs_dim], torch.float32),
            ACTION: ([k, act_dim], torch.float32),
            NEXT_OBSERVATION: ([k, obs_dim], torch.float32),
            NEXT_ACTION: ([k, act_dim], torch.float32),
            REWARD: ([k, 1], torch.float32),
            TERMINATED: ([k, 1], torch.bool),
            TRUNCATED: ([k, 1], torch.bool),
            DONE: ([k, 1], torch.bool),
        }
        out = {key: td.make_memmap(key, shape, dtype=dtype) for key, (shape, dtype) in spec.items()}
        moments = _RunningMoments(obs_dim)
        r_min, r_max = np.inf, -np.inf
        for p0 in progress_bar(range(0, k, CHUNK), desc=f"importing {name}", disable=not progress, unit="chunk"):
            p1 = min(k, p0 + CHUNK)
            sel = rows[p0:p1]
            lo, hi = int(sel[0]), int(sel[-1]) + 2  # +1 for the successor row, +1 for the slice end
            local = sel - lo
            obs = _slice(arrays["observations"], lo, hi).astype(np.float32, copy=False)
            act = _slice(arrays["actions"], lo, hi).astype(np.float32, copy=False)
            rew = _slice(arrays["rewards"], lo, hi - 1).astype(np.float32, copy=False).reshape(-1)
            o = obs[local]
            out[OBSERVATION][p0:p1] = torch.from_numpy(o)
            out[ACTION][p0:p1] = torch.from_numpy(act[local])
            out[NEXT_ACTION][p0:p1] = torch.from_numpy(act[local + 1])
            if use_next_observations:
                nxt = _slice(arrays["next_observations"], lo, hi - 1).astype(np.float32, copy=False)[local]
            else:
                nxt = obs[local + 1]
            out[NEXT_OBSERVATION][p0:p1] = torch.from_numpy(np.ascontiguousarray(nxt))
            r = rew[local]
            out[REWARD][p0:p1] = torch.from_numpy(r).unsqueeze(-1)
            term = torch.from_numpy(terminals[sel]).unsqueeze(-1)
            out[TERMINATED][p0:p1] = term
            out[DONE][p0:p1] = term  # truncated is all false after the drop
            out[TRUNCATED][p0:p1] = False
            moments.update(o)
            r_min, r_max = min(r_min, float(r.min())), max(r_max, float(r.max()))
        stats = DatasetStats(
            name=name,
            source=source,
            num_steps=n,
            num_transitions=k,
            num_dropped_timeouts=int(timeouts[: n - 1].sum()),
            num_dropped_last=1,
            num_terminals=int(terminals[rows].sum()),
            obs_dim=obs_dim,
            act_dim=act_dim,
            state_mean=moments.mean.astype(np.float32).tolist(),
            state_std=(moments.std + STATE_STD_EPS).astype(np.float32).tolist(),
            reward_min=r_min,
            reward_max=r_max,
            fingerprint=dict(fingerprint or {}),
            metadata=dict(metadata or {}),
        )
        del out, td
        stats.to_json(tmp / MARKER)  # written last: its presence marks a complete import
    return stats


def load_stats(folder: str | Path) -> DatasetStats | None:
    """The :class:`DatasetStats` of a complete import at ``folder``, or ``None`` if absent/outdated."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    try:
        stats = DatasetStats.from_json(marker)
    except (ValueError, TypeError):
        return None
    return stats if stats.format == FORMAT_VERSION else None


def load_transitions(folder: str | Path) -> TensorDict:
    """The memmapped transitions at ``folder`` (no copy into RAM)."""
    return TensorDict.load_memmap(folder)
