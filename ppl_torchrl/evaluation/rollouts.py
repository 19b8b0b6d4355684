"""Deterministic evaluation of a policy over N episodes of a (batched) TorchRL eval env.

The protocol is the one of D4RL papers and the authors' code (``docs/algorithm.md``, "Evaluation
protocol"): the deterministic actor (no exploration noise), N full episodes, the mean/std of the return
and of the D4RL normalized score (x100), plus the success rate on goal-reaching tasks. Episodes run
``num_envs`` at a time; each env's return counts rewards up to and including its first done step, so
envs that finish early (AntMaze goal reached, Hopper falling) are neither stepped again nor double-counted.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ppl_torchrl.envs import SUCCESS_ENVS
from ppl_torchrl.keys import DONE, REWARD
from ppl_torchrl.registry import get_dataset_spec, normalized_score

SUCCESS = ("next", "success")


def _episode_outcomes(rollout: TensorDictBase, batched: bool):
    """Per-env (return, length, success or None) from one rollout, stopping at each env's first done."""
    reward = rollout.get(REWARD).float()
    done = rollout.get(DONE)
    if not batched:  # [T, ...] -> [1, T, ...]
        rollout = rollout.unsqueeze(0)
        reward, done = reward.unsqueeze(0), done.unsqueeze(0)
    reward = reward.reshape(*reward.shape[:2], -1).sum(-1)  # [E, T]
    done = done.reshape(*done.shape[:2], -1).any(-1)
    if not torch.isfinite(reward).all():
        raise ValueError("The environment returned non-finite rewards during evaluation.")
    ended_before = done.long().cumsum(-1) - done.long()  # > 0 once an earlier step was done
    alive = ended_before == 0
    returns = (reward * alive).sum(-1)
    lengths = alive.sum(-1)
    success = None
    if SUCCESS in rollout.keys(include_nested=True):
        s = rollout.get(SUCCESS)
        s = s.reshape(*s.shape[:2], -1).any(-1)
        success = (s & alive).any(-1)
    return returns, lengths, success


def evaluate_policy(
    policy,
    env,
    num_episodes: int,
    *,
    seed: int,
    dataset_id: str | None = None,
    max_steps: int | None = None,
) -> dict:
    """Runs the deterministic ``policy`` for ``num_episodes`` episodes in ``env``.

    Args:
        policy: a TensorDictModule reading ``"observation"`` and writing ``"action"``.
        env: a TorchRL env, e.g. from :func:`ppl_torchrl.envs.make_eval_env`; a batched env runs
            ``env.batch_size`` episodes per round and rounds repeat until ``num_episodes`` are done.
        num_episodes: episodes to average over (10 on MuJoCo/Adroit, 100 on AntMaze in the paper).
        seed: seeds the env once before the first round: same seed, same policy => same returns.
        dataset_id: for the normalized score; defaults to ``env.dataset_id`` (set by
            ``make_eval_env``); without one, the normalized entries are ``None``.
        max_steps: rollout cap; defaults to the dataset's ``max_episode_steps`` (the env's own
            time limit ends episodes at that length anyway).

    Returns:
        ``{"return_mean", "return_std", "returns", "lengths", "normalized_score_mean",
        "normalized_score_std", "normalized_scores", "success_rate", "num_episodes"}``; std is the
        population std over episodes; ``success_rate`` is ``None`` on tasks without a success outcome.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}.")
    if len(env.batch_size) > 1:
        raise ValueError(f"evaluate_policy supports unbatched or 1-D batched envs, got batch_size {env.batch_size}.")
    if dataset_id is None:
        dataset_id = getattr(env, "dataset_id", None)
    spec = get_dataset_spec(dataset_id) if dataset_id is not None else None
    if max_steps is None:
        if spec is None:
            raise ValueError("evaluate_policy needs max_steps when neither dataset_id nor env.dataset_id is set.")
        max_steps = spec.max_episode_steps
    batched = len(env.batch_size) == 1
    per_round = env.batch_size[0] if batched else 1
    rounds = math.ceil(num_episodes / per_round)

    success_from_return = spec is not None and spec.env_name in SUCCESS_ENVS
    all_returns, all_lengths, all_success = [], [], []
    env.set_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(rounds):
            rollout = env.rollout(
                max_steps,
                policy,
                auto_cast_to_device=True,
                break_when_any_done=not batched,
                break_when_all_done=True if batched else None,
            )
            returns, lengths, success = _episode_outcomes(rollout, batched)
            if success is None and success_from_return:
                success = returns > 0
            all_returns.append(returns.double().cpu())
            all_lengths.append(lengths.cpu())
            if success is not None:
                all_success.append(success.cpu())
    returns = torch.cat(all_returns)[:num_episodes].numpy()
    lengths = torch.cat(all_lengths)[:num_episodes].numpy()
    out = {
        "num_episodes": num_episodes,
        "returns": returns,
        "lengths": lengths,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "normalized_scores": None,
        "normalized_score_mean": None,
        "normalized_score_std": None,
        "success_rate": None,
    }
    if all_success:
        out["success_rate"] = float(torch.cat(all_success)[:num_episodes].float().mean())
    if spec is not None and spec.score == "success":  # OGBench: the score is the success rate, x100
        if out["success_rate"] is None:
            raise ValueError(f"{dataset_id} is scored by success, but its env reports no success.")
        scores = 100.0 * torch.cat(all_success)[:num_episodes].double().numpy()
        out.update(normalized_scores=scores, normalized_score_mean=float(scores.mean()),
                   normalized_score_std=float(scores.std()))
    elif spec is not None:
        scores = np.asarray(normalized_score(dataset_id, returns))
        out.update(
            normalized_scores=scores,
            normalized_score_mean=float(scores.mean()),
            normalized_score_std=float(scores.std()),
        )
    return out
