"""evaluate_policy: aggregation against hand-computed returns, seeding, rounds, success, errors."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictModule

from ppl_torchrl.envs import make_env, make_eval_env, register_eval_env
from ppl_torchrl.evaluation import evaluate_policy
from ppl_torchrl.registry import DatasetSpec, register_dataset


class CountingEnv(gym.Env):
    """Reward t+1 at step t; the episode terminates after ``length`` steps.

    ``length=None`` draws it from the seeded generator in [2, 6) at each reset.
    """

    def __init__(self, length=None):
        self.length = length
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.n = self.length if self.length is not None else int(self.np_random.integers(2, 6))
        return np.zeros(2), {}

    def step(self, action):
        self.t += 1
        return np.full(2, self.t, dtype=np.float64), float(self.t), self.t >= self.n, False, {}


register_eval_env("test-count3", lambda name: CountingEnv(3), overwrite=True)
register_eval_env("test-random-count", lambda name: CountingEnv(None), overwrite=True)
register_eval_env("test-count3-maze", lambda name: CountingEnv(3), overwrite=True)  # success by return
register_dataset(DatasetSpec("test-count3-v0", "test", "test-count3", 0.0, 10.0, 10, "generated"), overwrite=True)
register_dataset(DatasetSpec("test-random-v0", "test", "test-random-count", 0.0, 20.0, 4, "generated"), overwrite=True)
register_dataset(DatasetSpec("test-maze-v0", "test", "test-count3-maze", 0.0, 1.0, 10, "generated"), overwrite=True)

ZERO_POLICY = TensorDictModule(
    lambda obs: torch.zeros(*obs.shape[:-1], 1), in_keys=["observation"], out_keys=["action"]
)


@pytest.mark.parametrize("num_envs", [1, 2])
def test_known_return_and_normalized_score(num_envs):
    env = make_eval_env("test-count3-v0", num_envs=num_envs)
    out = evaluate_policy(ZERO_POLICY, env, 3, seed=0)  # 3 episodes in 3 or 2 rounds
    np.testing.assert_array_equal(out["returns"], [6.0, 6.0, 6.0])  # 1 + 2 + 3
    np.testing.assert_array_equal(out["lengths"], [3, 3, 3])
    assert out["return_mean"] == 6.0 and out["return_std"] == 0.0
    np.testing.assert_allclose(out["normalized_scores"], [60.0] * 3)  # 100 * (6 - 0) / (10 - 0)
    assert out["normalized_score_mean"] == pytest.approx(60.0)
    assert out["success_rate"] is None and out["num_episodes"] == 3


def test_episodes_of_different_lengths_are_not_double_counted():
    env = make_eval_env("test-random-v0", num_envs=2)
    out = evaluate_policy(ZERO_POLICY, env, 5, seed=1)
    lengths = out["lengths"]
    assert len(out["returns"]) == 5 and np.all((lengths >= 2) & (lengths <= 4))  # time limit 4
    np.testing.assert_array_equal(out["returns"], lengths * (lengths + 1) / 2)
    assert out["return_std"] == pytest.approx(np.std(out["returns"]))
    np.testing.assert_allclose(out["normalized_scores"], 100 * out["returns"] / 20.0)


def test_same_seed_same_returns_and_different_seed_differs():
    env = make_eval_env("test-random-v0", num_envs=2)
    a = evaluate_policy(ZERO_POLICY, env, 8, seed=7)["returns"]
    b = evaluate_policy(ZERO_POLICY, env, 8, seed=7)["returns"]
    np.testing.assert_array_equal(a, b)
    runs = [evaluate_policy(ZERO_POLICY, env, 8, seed=s)["returns"] for s in (8, 9, 10)]
    assert any(not np.array_equal(a, r) for r in runs)


def test_success_rate_from_return_on_goal_tasks():
    out = evaluate_policy(ZERO_POLICY, make_eval_env("test-maze-v0", num_envs=2), 4, seed=0)
    assert out["success_rate"] == 1.0


def test_antmaze_success_key_and_score():
    env = make_eval_env("antmaze-umaze-v2", num_envs=2)
    still = TensorDictModule(lambda obs: torch.zeros(*obs.shape[:-1], 8), in_keys=["observation"], out_keys=["action"])
    out = evaluate_policy(still, env, 2, seed=0)  # zero torques never reaches the goal
    assert out["success_rate"] == 0.0 and out["normalized_score_mean"] == 0.0
    np.testing.assert_array_equal(out["lengths"], [700, 700])


def test_bad_input_raises():
    env = make_eval_env("test-count3-v0")
    with pytest.raises(ValueError, match="num_episodes"):
        evaluate_policy(ZERO_POLICY, env, 0, seed=0)
    with pytest.raises(ValueError, match="max_steps"):
        evaluate_policy(ZERO_POLICY, make_env("test-count3", 10), 1, seed=0)
    with pytest.raises(KeyError, match="Unknown dataset id"):
        evaluate_policy(ZERO_POLICY, env, 1, seed=0, dataset_id="nope-v9")
