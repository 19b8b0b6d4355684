"""Evaluation environments that score like D4RL's, as TorchRL envs.

One registry maps an eval task name (``DatasetSpec.env_name``: ``"hopper"``, ``"pen"``,
``"antmaze-umaze"``, ``"pointmaze-..."``) to a factory returning a plain ``gymnasium.Env``.
:func:`make_eval_env` looks up a dataset id in :mod:`ppl_torchrl.registry`, builds that task and
wraps it the same way for every suite, so that what a policy sees at evaluation time is exactly
the dataset's observation layout:

``gymnasium env -> TimeLimit(spec.max_episode_steps) -> GymWrapper -> DoubleToFloat
-> [SerialEnv|ParallelEnv] -> [ObservationNorm(loc=state_mean, scale=state_std)]``

Built-in tasks (what each is built on and how it differs from D4RL: ``docs/envs.md``):

* ``halfcheetah``/``hopper``/``walker2d``: Gymnasium MuJoCo v4 (gym v3 semantics = D4RL v2);
* ``pen``/``door``/``hammer``/``relocate``: Gymnasium-Robotics ``AdroitHand*-v1``;
* ``antmaze-umaze``/``antmaze-medium``/``antmaze-large``: our D4RL antmaze-v2 port
  (:mod:`ppl_torchrl.envs.antmaze`);
* ``gr-antmaze-umaze``/``-medium``/``-large``: Gymnasium-Robotics ``AntMaze_*-v4``, a separate
  track (not D4RL's task; never mix its scores with D4RL's);
* ``pointmaze-*``: registered by :mod:`ppl_torchrl.envs.pointmaze` (imported lazily).
"""
from __future__ import annotations

import importlib
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from ppl_torchrl.envs.gym_suites import (
    ADROIT_IDS,
    GR_ANTMAZE_IDS,
    MUJOCO_IDS,
    adroit_factory,
    d4rl_antmaze_factory,
    gym_factory,
)
from ppl_torchrl.errors import did_you_mean
from ppl_torchrl.keys import OBSERVATION
from ppl_torchrl.registry import get_dataset_spec

__all__ = [
    "EVAL_ENVS",
    "SUCCESS_ENVS",
    "register_eval_env",
    "get_eval_env_factory",
    "make_env",
    "make_eval_env",
]

#: env_name -> ``factory(env_name)`` returning a ``gymnasium.Env`` (the time limit is added here).
EVAL_ENVS: dict[str, Callable[..., gym.Env]] = {}
#: env_names whose episodes have a success outcome (return > 0 means success when the env has
#: no ``success`` info of its own).
SUCCESS_ENVS: set[str] = set()

_LAZY_MODULES = ("ppl_torchrl.envs.pointmaze", "ppl_torchrl.envs.ogbench")


def register_eval_env(
    env_name: str,
    factory: Callable[..., gym.Env],
    *,
    reports_success: bool | None = None,
    overwrite: bool = False,
) -> None:
    """Registers ``factory`` as the builder of eval task ``env_name``.

    Args:
        env_name: the ``DatasetSpec.env_name`` this factory serves.
        factory: called as ``factory(env_name)``; returns a ``gymnasium.Env`` whose observations
            have the dataset's layout. The time limit comes from the dataset spec (an inner
            limit of the factory's own only matters if it is shorter).
        reports_success: whether episodes have a success outcome (goal-reaching tasks). Defaults
            to ``True`` for names containing ``"maze"``.
        overwrite: replacing an existing different factory needs ``True``.
    """
    if not callable(factory):
        raise TypeError(f"register_eval_env needs a callable factory for {env_name!r}, got {factory!r}.")
    old = EVAL_ENVS.get(env_name)
    if old is not None and old is not factory and not overwrite:
        raise ValueError(f"Eval env {env_name!r} is already registered; pass overwrite=True to replace it.")
    EVAL_ENVS[env_name] = factory
    if reports_success is None:
        reports_success = "maze" in env_name
    if reports_success:
        SUCCESS_ENVS.add(env_name)
    else:
        SUCCESS_ENVS.discard(env_name)


def get_eval_env_factory(env_name: str) -> Callable[..., gym.Env]:
    """The factory of ``env_name``, importing lazily registered modules first if needed."""
    if env_name not in EVAL_ENVS:
        for module in _LAZY_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:  # the module exists but one of its imports is missing
                    raise
    try:
        return EVAL_ENVS[env_name]
    except KeyError:
        raise KeyError(
            f"No eval env registered for env_name {env_name!r}.{did_you_mean(env_name, EVAL_ENVS)} "
            f"Registered: {sorted(EVAL_ENVS)}. "
            "Register one with ppl_torchrl.envs.register_eval_env(env_name, factory)."
        ) from None


def _as_loc_scale(value, name: str, obs_dim: int, device) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(obs_dim).clone()
    if t.shape != (obs_dim,):
        raise ValueError(f"{name} must have {obs_dim} entries (the observation size), got {tuple(t.shape)}.")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf: {t}.")
    return t


def make_env(
    env_name: str,
    max_episode_steps: int,
    *,
    num_envs: int = 1,
    seed: int = 0,
    device=None,
    state_mean=None,
    state_std=None,
    parallel: bool = False,
    gym_wrapper: Callable[[gym.Env], gym.Env] | None = None,
):
    """Builds eval task ``env_name`` as a TorchRL env (see :func:`make_eval_env` for the wrapping).

    Use this directly for tasks without a registered dataset id (e.g. the ``gr-antmaze-*`` track).
    ``gym_wrapper`` wraps each time-limited gymnasium env (e.g. the fine-tuner's per-episode seeds).
    """
    from torchrl.envs import (
        DoubleToFloat,
        GymWrapper,
        ObservationNorm,
        ParallelEnv,
        SerialEnv,
        TransformedEnv,
    )

    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}.")
    factory = get_eval_env_factory(env_name)

    def build():
        env = gym.wrappers.TimeLimit(factory(env_name), max_episode_steps=max_episode_steps)
        if gym_wrapper is not None:
            env = gym_wrapper(env)
        if env_name in SUCCESS_ENVS:
            env = _SuccessInfo(env)
        wrapped = GymWrapper(env, device=device)
        if env_name in SUCCESS_ENVS:
            _read_success(wrapped)
        # Cast inside each copy: batched envs with partial steps need one dtype throughout.
        return TransformedEnv(wrapped, DoubleToFloat())

    if num_envs == 1:
        base = build()
    else:
        batched = ParallelEnv if parallel else SerialEnv
        base = batched(num_envs, build, device=device)
    env = base if isinstance(base, TransformedEnv) else TransformedEnv(base)
    if state_mean is not None or state_std is not None:
        obs_dim = env.observation_spec[OBSERVATION].shape[-1]
        loc = _as_loc_scale(0.0 if state_mean is None else state_mean, "state_mean", obs_dim, device)
        scale = _as_loc_scale(1.0 if state_std is None else state_std, "state_std", obs_dim, device)
        if (scale <= 0).any():
            raise ValueError("state_std must be > 0 everywhere (add a small epsilon to the dataset std).")
        env.append_transform(ObservationNorm(loc=loc, scale=scale, standard_normal=True, in_keys=[OBSERVATION]))
    env.set_seed(seed)
    return env


class _SuccessInfo(gym.Wrapper):
    """Normalises ``info["success"]`` to a numpy bool for TorchRL's info reader.

    An env that does not report success counts a step with positive reward as a success
    (sparse goal rewards: D4RL AntMaze/Maze2D give 1 at the goal and 0 elsewhere).
    """

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "success": np.asarray(bool(info.get("success", False)))}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        success = bool(info.get("success", float(reward) > 0))
        return obs, reward, terminated, truncated, {**info, "success": np.asarray(success)}


def _read_success(env) -> None:
    """Makes a TorchRL Gym wrapper copy ``info["success"]`` into a bool ``"success"`` entry."""
    from torchrl.data import Categorical, Composite
    from torchrl.envs.libs.gym import default_info_dict_reader

    spec = Composite(success=Categorical(2, shape=(1,), dtype=torch.bool, device=env.device), shape=())
    env.set_info_dict_reader(default_info_dict_reader(["success"], spec=spec))


def make_eval_env(
    dataset_id: str,
    *,
    num_envs: int = 1,
    seed: int = 0,
    device=None,
    state_mean=None,
    state_std=None,
    parallel: bool = False,
):
    """The TorchRL eval env of ``dataset_id``: its task, time limit and observation layout.

    Args:
        dataset_id: a registered id (``ppl_torchrl.registry``); unknown ids raise ``KeyError``.
        num_envs: >1 batches copies in a ``SerialEnv`` (or ``ParallelEnv`` with ``parallel=True``).
        seed: seeds every copy (copy ``i`` gets a seed derived from ``seed`` by TorchRL).
        device: device of the returned tensors.
        state_mean, state_std: dataset statistics; when given, observations become
            ``(obs - state_mean) / state_std`` (TorchRL ``ObservationNorm``), as at training time.

    Returns:
        A TorchRL ``EnvBase`` with float32 ``"observation"``/``"action"`` and a ``dataset_id``
        attribute (read by :func:`ppl_torchrl.evaluation.evaluate_policy`).
    """
    spec = get_dataset_spec(dataset_id)
    env = make_env(
        spec.env_name,
        spec.max_episode_steps,
        num_envs=num_envs,
        seed=seed,
        device=device,
        state_mean=state_mean,
        state_std=state_std,
        parallel=parallel,
    )
    env.dataset_id = dataset_id
    return env


def _register_builtins() -> None:
    for name, gym_id in MUJOCO_IDS.items():
        register_eval_env(name, gym_factory(gym_id), reports_success=False)
    for name in ADROIT_IDS:
        register_eval_env(name, adroit_factory(name), reports_success=False)
    for maze in ("umaze", "medium", "large"):
        register_eval_env(f"antmaze-{maze}", d4rl_antmaze_factory(maze), reports_success=True)
    for name, gym_id in GR_ANTMAZE_IDS.items():
        register_eval_env(
            name, gym_factory(gym_id, robotics=True, flatten=True, continuing_task=False), reports_success=True
        )


_register_builtins()
