"""Replay check: does our AntMaze port reproduce the transitions of a real D4RL file?

For each transition ``i`` the simulator is put in the file's state (``infos/qpos[i]``,
``infos/qvel[i]``), the dataset action ``actions[i]`` is applied, and the resulting observation
is compared with the dataset's next observation ``observations[i + 1]``. Agreement within
``atol`` on (almost) every transition means the physics, control mapping and observation
layout are D4RL's; a systematic mismatch points at a constant that differs.

Usage on a D4RL file (needs ``h5py``)::

    from ppl_torchrl.envs.replay import replay_check_d4rl_file
    report = replay_check_d4rl_file("antmaze-umaze-v2.hdf5", "umaze", num_transitions=2000)
    print(report)
"""
from __future__ import annotations

import os

import numpy as np


def replay_check(env, qpos, qvel, actions, next_observations, atol: float = 1e-4, *, max_fail_fraction: float = 0.0) -> dict:
    """Replays ``actions`` from the states ``(qpos, qvel)`` and compares with ``next_observations``.

    Args:
        env: a :class:`~ppl_torchrl.envs.antmaze.D4RLAntMazeEnv` (anything with ``set_state``,
            ``simulate`` and ``_obs``; a gymnasium wrapper around one works too).
        qpos, qvel, actions, next_observations: arrays ``[N, 15]``, ``[N, 14]``, ``[N, 8]``, ``[N, 29]``.
        atol: per-entry absolute tolerance.
        max_fail_fraction: fraction of transitions allowed to exceed ``atol`` (contacts are chaotic:
            a real file replayed on another MuJoCo version may need a small allowance).

    Returns:
        ``{"passed", "num_transitions", "fail_fraction", "max_abs_error", "mean_abs_error",
        "worst_index", "per_transition_max_error"}``.
    """
    base = getattr(env, "unwrapped", env)
    qpos, qvel, actions, next_obs = (np.asarray(x, dtype=np.float64) for x in (qpos, qvel, actions, next_observations))
    n = len(actions)
    if n == 0:
        raise ValueError("replay_check got no transitions.")
    for name, arr, dim in (("qpos", qpos, 15), ("qvel", qvel, 14), ("actions", actions, 8), ("next_observations", next_obs, 29)):
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < dim:
            raise ValueError(f"replay_check: {name} must have shape [{n}, {dim}], got {arr.shape}.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"replay_check: {name} contains NaN or inf.")
    errors = np.empty(n)
    for i in range(n):
        base.set_state(qpos[i, : base.model.nq], qvel[i, : base.model.nv])
        base.simulate(actions[i])
        errors[i] = np.max(np.abs(base._obs() - next_obs[i, :29]))
    fail_fraction = float(np.mean(errors > atol))
    return {
        "passed": fail_fraction <= max_fail_fraction,
        "num_transitions": n,
        "fail_fraction": fail_fraction,
        "max_abs_error": float(errors.max()),
        "mean_abs_error": float(errors.mean()),
        "worst_index": int(errors.argmax()),
        "per_transition_max_error": errors,
    }


def replay_check_d4rl_file(
    path: str, maze: str, *, num_transitions: int = 1000, atol: float = 1e-4, max_fail_fraction: float = 0.0
) -> dict:
    """Runs :func:`replay_check` on the first ``num_transitions`` usable transitions of a D4RL AntMaze HDF5.

    A transition ``i`` is usable when ``i + 1`` continues the same episode (``timeouts[i]`` and
    ``terminals[i]`` are false), since D4RL files store no next observations.
    """
    import h5py

    from ppl_torchrl.envs.antmaze import D4RLAntMazeEnv

    if not os.path.exists(path):
        raise FileNotFoundError(f"No D4RL file at {path!r}; download antmaze-*-v2 HDF5 files from D4RL first.")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise OSError(f"Cannot read {path!r} as HDF5: {err}") from err
    with f:
        missing = [k for k in ("observations", "actions", "infos/qpos", "infos/qvel") if k not in f]
        if missing:
            raise KeyError(f"{path!r} lacks {missing}: is it a D4RL AntMaze file?")
        m = min(num_transitions + 1, f["actions"].shape[0])
        obs = f["observations"][:m]
        act = f["actions"][:m]
        qpos = f["infos/qpos"][:m]
        qvel = f["infos/qvel"][:m]
        ends = np.zeros(m, dtype=bool)
        for k in ("timeouts", "terminals"):
            if k in f:
                ends |= f[k][:m].astype(bool)
    idx = np.flatnonzero(~ends[:-1])[:num_transitions]
    return replay_check(D4RLAntMazeEnv(maze), qpos[idx], qvel[idx], act[idx], obs[idx + 1], atol, max_fail_fraction=max_fail_fraction)
