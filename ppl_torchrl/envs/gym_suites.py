"""Gymnasium factories for the Gym-MuJoCo, Adroit and Gymnasium-Robotics AntMaze eval tasks.

Each factory returns a plain ``gymnasium.Env``; :func:`ppl_torchrl.envs.make_eval_env` adds the
dataset's time limit, the TorchRL wrapper, the float32 cast and observation normalisation.

Why these versions (details and residual differences in ``docs/envs.md``):

* Gym-MuJoCo uses Gymnasium's **v4** envs: they are gym's v3 classes (the ones D4RL's v2 datasets
  were collected and evaluated with, via ``gym.envs.mujoco``) ported to the ``mujoco`` bindings,
  with the same XML files, rewards, healthy checks and reset noise. v5 changes Walker2d's right
  foot friction (0.9 -> 1.9, as the left foot) and drops the healthy reward on the terminating step of Hopper and
  Walker2d, both of which change returns.
* Adroit uses Gymnasium-Robotics' ``AdroitHand*-v1``: same observation/action layouts as D4RL's
  ``*-v1`` datasets (pen 45/24, door 39/28, hammer 46/26, relocate 39/30), actions in [-1, 1].
  Gymnasium-Robotics 1.2.1-1.4.2 flipped the sign of the first shaping term of the dense door,
  hammer and relocate rewards (``+0.1 * ||palm - handle/object||`` instead of D4RL's ``-0.1``;
  Gymnasium-Robotics PR #220, fixed only in their ``-v2`` ids from 1.4.3): :class:`AdroitD4RLReward`
  restores D4RL's sign, so returns are comparable with D4RL's reference scores.
* ``gr-antmaze-*`` is Gymnasium-Robotics' ``AntMaze_*-v4``, a *different* task from D4RL's
  antmaze-v2: a separately labelled track whose scores must never be mixed with D4RL's.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
import threading
import warnings
from typing import Callable, Iterator

import gymnasium as gym
import numpy as np

#: Our eval env name -> Gymnasium id.
MUJOCO_IDS = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4"}
ADROIT_IDS = {
    "pen": "AdroitHandPen-v1",
    "door": "AdroitHandDoor-v1",
    "hammer": "AdroitHandHammer-v1",
    "relocate": "AdroitHandRelocate-v1",
}
GR_ANTMAZE_IDS = {
    "gr-antmaze-umaze": "AntMaze_UMaze-v4",
    "gr-antmaze-medium": "AntMaze_Medium_Diverse_GR-v4",
    "gr-antmaze-large": "AntMaze_Large_Diverse_GR-v4",
}


_ADROIT_NOTICE_SHOWN = False
_TEMPDIR_LOCK = threading.Lock()


def _adroit_notice() -> str | None:
    """The notice Gymnasium-Robotics prints about its Adroit v1 rewards for the installed version, if any."""
    try:
        from importlib.metadata import version

        from farama_notifications import notifications

        return notifications.get("gymnasium_robotics", {}).get(version("gymnasium-robotics"))
    except Exception:  # pragma: no cover - the notifications package is optional
        return None


def import_robotics(gym_id: str = "this env"):
    """Imports ``gymnasium_robotics`` and registers its envs, without its import-time Adroit notice.

    Gymnasium-Robotics 1.2.1-1.4.2 print a notice about the Adroit v1 rewards to stderr at import, for
    every env (PointMaze data generation, AntMaze, ...). It concerns Adroit only, so it is dropped here and
    shown by :func:`adroit_factory` when an Adroit env is built; any other output of the import is kept.
    """
    if "gymnasium_robotics" in sys.modules:
        return sys.modules["gymnasium_robotics"]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            import gymnasium_robotics
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(f"{gym_id} needs gymnasium-robotics: pip install 'gymnasium-robotics>=1.2'") from err
    finally:
        notice = _adroit_notice()
        rest = [line for line in captured.getvalue().splitlines() if line.strip() and line.strip() != notice]
        if rest:
            print("\n".join(rest), file=sys.stderr)
    gym.register_envs(gymnasium_robotics)
    return gymnasium_robotics


@contextlib.contextmanager
def private_tempdir() -> Iterator[str]:
    """Points :mod:`tempfile` at a fresh folder for the block, then deletes the folder.

    Gymnasium-Robotics' maze envs write their model as ``<system temp>/ant_maze<time>.xml`` at construction
    and never delete it (one file per env built). Inside this block the file lands in a folder this process
    owns and removes; MuJoCo has read it by then.
    """
    with _TEMPDIR_LOCK:
        folder = tempfile.mkdtemp(prefix="ppl-torchrl-env-")
        previous = tempfile.tempdir
        tempfile.tempdir = folder
        try:
            yield folder
        finally:
            tempfile.tempdir = previous
            shutil.rmtree(folder, ignore_errors=True)


def _make(gym_id: str, *, robotics: bool = False, **kwargs) -> gym.Env:
    if robotics:
        import_robotics(gym_id)
    with warnings.catch_warnings(), (private_tempdir() if robotics else contextlib.nullcontext()):
        # v4 MuJoCo envs warn that v5 exists; we choose v4 on purpose (see module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        return gym.make(gym_id, disable_env_checker=True, **kwargs)


def _palm_to_handle(env) -> float:
    u = env.unwrapped
    return float(np.linalg.norm(u.data.site_xpos[u.grasp_site_id] - u.data.site_xpos[u.handle_site_id]))


def _palm_to_object(env) -> float:
    u = env.unwrapped
    return float(np.linalg.norm(u.data.site_xpos[u.S_grasp_site_id] - u.data.xpos[u.obj_body_id]))


#: Adroit task -> distance whose shaping sign Gymnasium-Robotics v1 (>=1.2.1) flipped.
_ADROIT_FLIPPED_TERM = {"door": _palm_to_handle, "hammer": _palm_to_object, "relocate": _palm_to_object}


def adroit_reward_is_flipped() -> bool:
    """Whether the installed Gymnasium-Robotics has the flipped v1 dense rewards (1.2.1 to 1.4.2)."""
    from importlib.metadata import version

    from packaging.version import Version

    return Version("1.2.1") <= Version(version("gymnasium-robotics"))


class AdroitD4RLReward(gym.Wrapper):
    """Restores D4RL's dense reward: ``r - 0.2 * d`` turns ``+0.1 d`` back into ``-0.1 d``.

    ``d`` is read after the step, as the environment itself does.
    """

    def __init__(self, env: gym.Env, task: str):
        super().__init__(env)
        self._distance = _ADROIT_FLIPPED_TERM[task]

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) - 0.2 * self._distance(self.env), terminated, truncated, info


def adroit_factory(task: str) -> Callable[..., gym.Env]:
    """A factory for D4RL Adroit task ``task`` on Gymnasium-Robotics ``AdroitHand*-v1``."""
    make = gym_factory(ADROIT_IDS[task], robotics=True)

    def factory(env_name: str | None = None) -> gym.Env:
        global _ADROIT_NOTICE_SHOWN
        env = make()
        notice = _adroit_notice()
        if notice and not _ADROIT_NOTICE_SHOWN:  # the notice import_robotics held back, once per process
            _ADROIT_NOTICE_SHOWN = True
            print(f"{notice} (ppl_torchrl restores D4RL's reward sign for door, hammer and relocate: "
                  "ppl_torchrl.envs.gym_suites.AdroitD4RLReward.)", file=sys.stderr)
        if task in _ADROIT_FLIPPED_TERM and adroit_reward_is_flipped():
            env = AdroitD4RLReward(env, task)
        return env

    factory.__doc__ = f"Builds {ADROIT_IDS[task]} with D4RL's reward."
    return factory


def gym_factory(
    gym_id: str, *, robotics: bool = False, flatten: bool = False, **make_kwargs
) -> Callable[..., gym.Env]:
    """A factory building ``gym_id`` (dict observations flattened when ``flatten``).

    ``make_kwargs`` go to ``gymnasium.make``. The factory takes the eval env name (unused).
    """

    def factory(env_name: str | None = None) -> gym.Env:
        env = _make(gym_id, robotics=robotics, **make_kwargs)
        if flatten:
            # Gymnasium's FlattenObservation orders the dict keys alphabetically:
            # achieved_goal (2) ++ desired_goal (2) ++ observation (27) = 31 dims.
            env = gym.wrappers.FlattenObservation(env)
        return env

    factory.__doc__ = f"Builds Gymnasium env {gym_id!r}."
    return factory


def d4rl_antmaze_factory(maze: str) -> Callable[..., gym.Env]:
    """A factory building the D4RL-equivalent ``antmaze-<maze>-v2`` port."""

    def factory(env_name: str | None = None) -> gym.Env:
        from ppl_torchrl.envs.antmaze import D4RLAntMazeEnv

        return D4RLAntMazeEnv(maze)

    factory.__doc__ = f"Builds the D4RL antmaze-{maze}-v2 port."
    return factory
