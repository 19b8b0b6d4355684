"""Eval envs: shapes/dtypes per task, the D4RL AntMaze port's constants, replay check, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ppl_torchrl.envs import EVAL_ENVS, make_env, make_eval_env, register_eval_env
from ppl_torchrl.envs.antmaze import (
    MAZES,
    SUCCESS_RADIUS,
    D4RLAntMazeEnv,
    build_mjcf,
    cell_corner_xy,
    find_cells,
)
from ppl_torchrl.envs.replay import replay_check
from ppl_torchrl.registry import DATASETS

# (dataset id, obs dim, action dim): one dataset per eval task, dims from D4RL's files.
ONE_PER_TASK = [
    ("halfcheetah-medium-v2", 17, 6),
    ("hopper-medium-v2", 11, 3),
    ("walker2d-medium-v2", 17, 6),
    ("pen-human-v1", 45, 24),
    ("door-human-v1", 39, 28),
    ("hammer-human-v1", 46, 26),
    ("relocate-human-v1", 39, 30),
    ("antmaze-umaze-v2", 29, 8),
    ("antmaze-medium-play-v2", 29, 8),
    ("antmaze-large-play-v2", 29, 8),
]


def test_every_d4rl_dataset_has_an_eval_env():
    d4rl = {s.env_name for s in DATASETS.values() if s.source == "d4rl"}
    assert d4rl <= set(EVAL_ENVS)
    assert len(d4rl) == 10


@pytest.mark.parametrize("dataset_id,obs_dim,act_dim", ONE_PER_TASK)
def test_eval_env_shapes_and_dtypes(dataset_id, obs_dim, act_dim):
    env = make_eval_env(dataset_id, num_envs=2, seed=0)
    td = env.rollout(3, break_when_any_done=False)
    assert td["observation"].shape == (2, 3, obs_dim)
    assert td["observation"].dtype == torch.float32
    assert td["action"].shape == (2, 3, act_dim)
    assert td["action"].dtype == torch.float32
    assert td["next", "reward"].dtype == torch.float32
    env.close()


def test_observation_norm_applies_stored_statistics():
    mean, std = np.arange(11, dtype=np.float32), np.full(11, 2.0, dtype=np.float32)
    raw = make_eval_env("hopper-medium-v2", seed=3).reset()["observation"]
    normed = make_eval_env("hopper-medium-v2", seed=3, state_mean=mean, state_std=std).reset()["observation"]
    torch.testing.assert_close(normed, (raw - torch.from_numpy(mean)) / 2.0)
    with pytest.raises(ValueError, match="11 entries"):
        make_eval_env("hopper-medium-v2", state_mean=np.zeros(5))
    with pytest.raises(ValueError, match="> 0"):
        make_eval_env("hopper-medium-v2", state_std=np.zeros(11))


def test_time_limit_comes_from_the_dataset_spec():
    env = make_eval_env("pen-human-v1", seed=0)  # D4RL pen: 100 steps (Gymnasium-Robotics: 200)
    td = env.rollout(150)
    assert td.shape[0] == 100 and td["next", "truncated"][-1].item()


def test_unknown_ids_raise():
    with pytest.raises(KeyError, match="hopper-medium-v2"):
        make_eval_env("hoper-medium-v2")
    with pytest.raises(KeyError, match="register_eval_env"):
        make_env("no-such-task", 10)


def test_register_rejects_silent_overwrite():
    with pytest.raises(ValueError, match="overwrite"):
        register_eval_env("hopper", lambda name: None)
    with pytest.raises(TypeError):
        register_eval_env("x-task", 3)


def test_adroit_reward_sign_is_d4rls():
    # D4RL door: r = -0.1*||palm - handle|| - 0.1*(hinge - 1.57)^2 - 1e-5*||qvel||^2 (+ bonuses)
    from ppl_torchrl.envs.gym_suites import adroit_factory

    env = adroit_factory("door")()
    env.reset(seed=0)
    _, r, *_ = env.step(np.zeros(28, dtype=np.float32))
    u = env.unwrapped
    d = np.linalg.norm(u.data.site_xpos[u.grasp_site_id] - u.data.site_xpos[u.handle_site_id])
    hinge = u.data.qpos[u.door_hinge_addrs]
    expected = -0.1 * d - 0.1 * (hinge - 1.57) ** 2 - 1e-5 * np.sum(u.data.qvel**2)
    assert r == pytest.approx(float(np.squeeze(expected)), abs=1e-9)


# --- AntMaze port ---------------------------------------------------------------------------

def test_antmaze_geometry_matches_d4rl():
    # Reset cell r at (1, 1) is the origin; cells are 4 m; goal cells of the *_TEST maps.
    env = D4RLAntMazeEnv("umaze")
    assert env.goal_cell == (3, 1)
    np.testing.assert_allclose(cell_corner_xy(MAZES["umaze"], (3, 1)), [0.0, 8.0])
    assert D4RLAntMazeEnv("medium").goal_cell == (6, 6)
    assert D4RLAntMazeEnv("large").goal_cell == (7, 9)
    # Walls: one 4x4x2 m box per wall cell, centred on the cell; (2, 1) is the U's middle wall.
    walls = [env.model.geom(i) for i in range(env.model.ngeom) if env.model.geom(i).name.startswith("block_")]
    assert len(walls) == len(find_cells(MAZES["umaze"], 1)) == 18  # 16 border + the U's 2
    mid = env.model.geom("block_2_1")
    np.testing.assert_allclose(mid.pos, [0.0, 4.0, 1.0])
    np.testing.assert_allclose(mid.size, [2.0, 2.0, 1.0])
    assert "block_1_1" not in build_mjcf(MAZES["umaze"])
    # Control: dt = 0.02 s x 5, motors [-30, 30], action 1.0 -> ctrl 30.
    assert env.model.opt.timestep == pytest.approx(0.02) and env.dt == pytest.approx(0.1)
    np.testing.assert_allclose(env.model.actuator_ctrlrange, np.tile([-30.0, 30.0], (8, 1)))
    env.reset(seed=0)
    env.simulate(np.full(8, 0.5))
    np.testing.assert_allclose(env.data.ctrl, 15.0)


def test_antmaze_reset_start_and_goal_noise():
    env = D4RLAntMazeEnv("umaze")
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert obs.shape == (29,)
        np.testing.assert_array_less(np.abs(obs[:2]), 0.1 + 1e-12)  # qpos0 + U(-0.1, 0.1)
        assert abs(obs[2] - 0.75) <= 0.1
        goal = info["goal"]  # corner (0, 8) + U(0, 1) + U(0, 0.5), one-sided
        assert 0.0 <= goal[0] <= 1.5 and 8.0 <= goal[1] <= 9.5
    g1 = env.reset(seed=1)[1]["goal"]
    g2 = env.reset()[1]["goal"]
    assert not np.allclose(g1, g2)  # v2_resets: resampled every episode


def test_antmaze_success_radius_and_termination():
    env = D4RLAntMazeEnv("umaze")
    env.reset(seed=0)
    goal = env.goal.copy()
    assert env.is_success(goal + [SUCCESS_RADIUS - 1e-6, 0.0])
    assert not env.is_success(goal + [SUCCESS_RADIUS + 1e-6, 0.0])
    qpos = env.init_qpos.copy()
    qpos[:2] = goal
    env.set_state(qpos, np.zeros(14))
    _, r, terminated, truncated, info = env.step(np.zeros(8))
    assert (r, terminated, truncated, info["success"]) == (1.0, True, False, True)
    qpos[:2] = goal + [2.0, 0.0]
    env.set_state(qpos, np.zeros(14))
    _, r, terminated, _, info = env.step(np.zeros(8))
    assert (r, terminated, info["success"]) == (0.0, False, False)


def test_antmaze_time_limit():
    env = make_eval_env("antmaze-umaze-v2", seed=0)
    td = env.rollout(800)  # random actions never reach the goal 8 m away in 700 steps
    assert td.shape[0] == 700
    assert td["next", "truncated"][-1].item() and not td["next", "terminated"].any()
    assert DATASETS["antmaze-large-diverse-v2"].max_episode_steps == 1000


def test_antmaze_actions_are_checked():
    env = D4RLAntMazeEnv("umaze")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="8 dims"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full(8, np.nan))
    with pytest.raises(KeyError, match="umaze"):
        D4RLAntMazeEnv("tiny")


def _generate(env, n, seed):
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    qpos, qvel, acts, nxt = [], [], [], []
    for _ in range(n):
        a = rng.uniform(-1, 1, 8)
        qpos.append(env.data.qpos.copy())
        qvel.append(env.data.qvel.copy())
        obs, *_ = env.step(a)
        acts.append(a)
        nxt.append(obs)
    return map(np.array, (qpos, qvel, acts, nxt))


def test_replay_check_passes_on_own_data_and_fails_on_perturbed_data():
    env = D4RLAntMazeEnv("umaze")
    qpos, qvel, acts, nxt = _generate(env, 40, seed=0)
    ok = replay_check(D4RLAntMazeEnv("umaze"), qpos, qvel, acts, nxt, atol=1e-8)
    assert ok["passed"] and ok["max_abs_error"] < 1e-8
    bad_act = acts.copy()
    bad_act[:, 3] = np.clip(bad_act[:, 3] + 0.1, -1, 1)
    assert not replay_check(env, qpos, qvel, bad_act, nxt, atol=1e-4)["passed"]
    bad_obs = nxt.copy()
    bad_obs[5, 20] += 1e-3
    res = replay_check(env, qpos, qvel, acts, bad_obs, atol=1e-4)
    assert not res["passed"] and res["worst_index"] == 5 and res["fail_fraction"] == pytest.approx(1 / 40)
    with pytest.raises(ValueError, match="next_observations"):
        replay_check(env, qpos, qvel, acts, nxt[:, :10], atol=1e-4)
