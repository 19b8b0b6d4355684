"""Minari datasets with dict observations, written by Minari's own writer, through the loader and the recipes.

Minari's D4RL re-releases (``D4RL/antmaze/*``, ``D4RL/pointmaze/*``) store dict observations: AntMaze's is
``{"achieved_goal": (x, y), "desired_goal": goal, "observation": the other 27 entries}``, so
``[achieved_goal, observation]`` is D4RL's 29-dim AntMaze observation. The dataset below has that layout (with
distinct values per key, to check the order) and is laid out by ``minari.create_dataset_from_buffers``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from ppl_torchrl.data import make_offline_replay_buffer
from ppl_torchrl.errors import ConfigError, is_user_error
from ppl_torchrl.keys import NEXT_OBSERVATION, OBSERVATION
from session_env import SESSION_DATA

DATASET_ID = "test/antdict-v0"
STEPS = (30, 25)  # two episodes, both truncated (as AntMaze's time limit)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("PPL_TORCHRL_DATA", str(tmp_path / "cache"))


def _episode_obs(e: int, steps: int) -> dict[str, np.ndarray]:
    t = np.arange(steps + 1, dtype=np.float64)[:, None]
    return {
        "achieved_goal": 1000 * (e + 1) + t + np.array([0.1, 0.2]),    # x, y
        "desired_goal": np.full((steps + 1, 2), -7.0) + e,             # the episode's goal
        "observation": -(t + 0.01 * np.arange(27)) - 100 * e,          # z, quaternion, joints, velocities
    }


def _make_dict_minari(dataset_id: str = DATASET_ID) -> None:
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    episodes = []
    for e, steps in enumerate(STEPS):
        last = np.eye(steps, dtype=bool)[-1]
        episodes.append(EpisodeBuffer(
            observations=_episode_obs(e, steps),
            actions=np.tanh(np.random.default_rng(e).normal(size=(steps, 8))).astype(np.float32),
            rewards=np.zeros(steps), terminations=np.zeros(steps, bool), truncations=last, infos={},
        ))
    box = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float64)  # noqa: E731
    space = gym.spaces.Dict({"achieved_goal": box(2), "desired_goal": box(2), "observation": box(27)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, episodes, observation_space=space, action_space=gym.spaces.Box(-1, 1, (8,), np.float32),
            algorithm_name="hand-made", author="test", author_email="t@e.st", code_permalink="none",
            description="dict observations as Minari's D4RL/antmaze datasets",
        )


def _storage(buffer):
    return buffer[:]


def test_dict_observations_are_concatenated_in_the_requested_order_and_the_cache_follows_the_request():
    _make_dict_minari()
    default = make_offline_replay_buffer(DATASET_ID, batch_size=4, progress=False)
    assert default.dataset_stats.obs_dim == 31
    assert default.dataset_stats.metadata["available_observation_keys"] == ["achieved_goal", "desired_goal",
                                                                            "observation"]
    ep0 = _episode_obs(0, STEPS[0])
    first = _storage(default)[OBSERVATION][0].double().numpy()
    np.testing.assert_allclose(first, np.concatenate([ep0["achieved_goal"][0], ep0["desired_goal"][0],
                                                      ep0["observation"][0]]), rtol=1e-6)

    d4rl_like = make_offline_replay_buffer(DATASET_ID, batch_size=4, progress=False,
                                           observation_keys=["achieved_goal", "observation"])
    stats = d4rl_like.dataset_stats
    assert stats.obs_dim == 29 and stats.metadata["observation_keys"] == ["achieved_goal", "observation"]
    td = _storage(d4rl_like)
    # transitions: 29 + 24 steps (each episode's truncated last step dropped, as a D4RL timeout row)
    assert td.shape[0] == sum(STEPS) - 2
    ep1 = _episode_obs(1, STEPS[1])
    row = STEPS[0] - 1  # the second episode's first transition
    want = lambda ep, t: np.concatenate([ep["achieved_goal"][t], ep["observation"][t]])  # noqa: E731
    np.testing.assert_allclose(td[OBSERVATION][row].double().numpy(), want(ep1, 0), rtol=1e-6)
    np.testing.assert_allclose(td[NEXT_OBSERVATION][row].double().numpy(), want(ep1, 1), rtol=1e-6)
    # asking for the default again imports the default again (not the 29-dim cache)
    assert make_offline_replay_buffer(DATASET_ID, batch_size=4, progress=False).dataset_stats.obs_dim == 31


def test_bad_observation_keys_say_which_keys_exist():
    _make_dict_minari()
    with pytest.raises(KeyError, match="achieved_goal.*desired_goal.*observation"):
        make_offline_replay_buffer(DATASET_ID, batch_size=4, progress=False, observation_keys=["qpos"])
    with pytest.raises(ValueError, match="non-empty list"):
        make_offline_replay_buffer(DATASET_ID, batch_size=4, progress=False, observation_keys="observation")


@pytest.fixture
def recipe_cfg(tmp_path, tiny, make_cfg):
    """A tiny recipe config on the Minari dict-observation dataset, scored on antmaze-umaze-v2."""
    def build(**extra):
        over = {"dataset.id": DATASET_ID, "dataset.eval_id": "antmaze-umaze-v2", "checkpoint.stop_after": 2,
                "eval.every": 10**6, "eval.episodes": 1, "probe.size": 0, **extra}
        return make_cfg(tiny(tmp_path / "run", **over))
    return build


def test_a_recipe_on_dict_observations_checks_the_eval_env_before_training(tmp_path, recipe_cfg):
    from ppl_torchrl.training.build import build_trainer

    _make_dict_minari()
    with pytest.raises(ConfigError, match="31-dim observations.*antmaze-umaze-v2 has 29.*observation_keys") as err:
        build_trainer(recipe_cfg())
    assert is_user_error(err.value) and not (tmp_path / "run").exists()  # refused before the run folder
    trainer = build_trainer(recipe_cfg(**{"dataset.observation_keys": "[achieved_goal,observation]"}))
    assert trainer.obs_dim == 29
    assert trainer.run() == {"stopped_at": 2}


def test_observation_keys_on_data_without_dict_observations_is_a_config_error(recipe_cfg, monkeypatch):
    from ppl_torchrl.training.build import build_trainer

    monkeypatch.setenv("PPL_TORCHRL_DATA", SESSION_DATA)  # the generated PointMaze data, made once per session

    with pytest.raises(ConfigError, match="applies to Minari datasets"):
        build_trainer(recipe_cfg(**{"dataset.id": "pointmaze-umaze-gen-v0", "dataset.eval_id": "null",
                                        "dataset.observation_keys": "[observation]"}))


def test_data_and_eval_env_of_different_sizes_fail_before_training(tmp_path, recipe_cfg, monkeypatch):
    """A D4RL-format file evaluated on the wrong task: one clear error, not a matmul shape error at step 5000."""
    from ppl_torchrl.training.build import build_trainer

    monkeypatch.setenv("PPL_TORCHRL_DATA", SESSION_DATA)  # the generated PointMaze data, made once per session

    with pytest.raises(ConfigError, match="4-dim observations.*hopper-medium-v2 has 11.*dataset.eval_id") as err:
        build_trainer(recipe_cfg(**{"dataset.id": "pointmaze-umaze-gen-v0",
                                        "dataset.eval_id": "hopper-medium-v2"}))
    assert "observation_keys" not in str(err.value)  # not a Minari dict dataset: no hint about it
    assert not (tmp_path / "run").exists()


def _write_minari(dataset_id, episodes, observation_space, act_dim):
    import gymnasium as gym
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, episodes, observation_space=observation_space,
            action_space=gym.spaces.Box(-1, 1, (act_dim,), np.float32), algorithm_name="hand-made", author="test",
            author_email="t@e.st", code_permalink="none")


def test_nested_dict_observations_as_minari_kitchen_are_flattened_in_sorted_key_order():
    """FrankaKitchen (Minari's ``D4RL/kitchen/*``) has Dict spaces inside its Dict observation space."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    box = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float64)  # noqa: E731
    goals = lambda: gym.spaces.Dict({"microwave": box(1), "kettle": box(7)})  # noqa: E731
    space = gym.spaces.Dict({"observation": box(59), "achieved_goal": goals(), "desired_goal": goals()})
    steps, rng = 4, np.random.default_rng(0)
    obs = {"observation": rng.normal(size=(steps + 1, 59)),
           "achieved_goal": {"kettle": rng.normal(size=(steps + 1, 7)), "microwave": rng.normal(size=(steps + 1, 1))},
           "desired_goal": {"kettle": rng.normal(size=(steps + 1, 7)), "microwave": rng.normal(size=(steps + 1, 1))}}
    _write_minari("test/kitchen-v0", [EpisodeBuffer(
        observations=obs, actions=rng.uniform(-1, 1, (steps, 9)).astype(np.float32), rewards=np.zeros(steps),
        terminations=np.zeros(steps, bool), truncations=np.eye(steps, dtype=bool)[-1])], space, 9)

    default = make_offline_replay_buffer("test/kitchen-v0", batch_size=2, progress=False)
    assert default.dataset_stats.obs_dim == 8 + 8 + 59
    want = np.concatenate([obs["achieved_goal"]["kettle"][1], obs["achieved_goal"]["microwave"][1],
                           obs["desired_goal"]["kettle"][1], obs["desired_goal"]["microwave"][1],
                           obs["observation"][1]])
    np.testing.assert_allclose(_storage(default)[OBSERVATION][1].double().numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(gym.spaces.flatten(space, {k: (v[1] if k == "observation" else
                                                              {g: x[1] for g, x in v.items()})
                                                          for k, v in obs.items()}), want, rtol=1e-6)
    picked = make_offline_replay_buffer("test/kitchen-v0", batch_size=2, progress=False,
                                        observation_keys=["observation", "achieved_goal"])
    np.testing.assert_allclose(_storage(picked)[OBSERVATION][0].double().numpy(),
                               np.concatenate([obs["observation"][0], obs["achieved_goal"]["kettle"][0],
                                               obs["achieved_goal"]["microwave"][0]]), rtol=1e-6)


def test_an_episode_ending_with_neither_flag_never_takes_the_next_episodes_action():
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    from ppl_torchrl.keys import ACTION, NEXT_ACTION, TERMINATED

    steps = 3

    def episode(e, terminated_at_end):  # observation[0] and 100 x action encode 10 x episode + step
        return EpisodeBuffer(observations=np.array([[10.0 * e + t, 0.0] for t in range(steps + 1)]),
                             actions=np.array([[10 * e + t] for t in range(steps)], np.float32) / 100,
                             rewards=np.zeros(steps), terminations=np.array([0, 0, terminated_at_end], bool),
                             truncations=np.zeros(steps, bool))

    _write_minari("test/flagless-v0", [episode(0, False), episode(1, True)],
                  gym.spaces.Box(-np.inf, np.inf, (2,)), 1)
    td = _storage(make_offline_replay_buffer("test/flagless-v0", batch_size=2, progress=False))
    s, a = td[OBSERVATION][:, 0].round().long().tolist(), (100 * td[ACTION][:, 0]).round().long().tolist()
    a_next = (100 * td[NEXT_ACTION][:, 0]).round().long().tolist()
    # episode 0's last step (s = 2) is dropped as a cut episode; episode 1 keeps its terminal step until the
    # dataset's last row, which is always dropped
    assert s == [0, 1, 10, 11] and a == s and a_next == [1, 2, 11, 12]
    assert td[TERMINATED][:, 0].tolist() == [False] * 4
