"""Env steps per second of each eval-env family (random actions, CPU).

Usage: ``python benchmarks/env_speed.py [--steps 2000] [--num-envs 1]``. Measures the TorchRL env
returned by :func:`ppl_torchrl.envs.make_eval_env` (wrapper overhead included) and, for reference,
the raw gymnasium env underneath it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ppl_torchrl.envs import get_eval_env_factory, make_eval_env
from ppl_torchrl.registry import get_dataset_spec

FAMILIES = {
    "mujoco (hopper)": "hopper-medium-v2",
    "mujoco (halfcheetah)": "halfcheetah-medium-v2",
    "adroit (door)": "door-human-v1",
    "antmaze port (umaze)": "antmaze-umaze-v2",
    "antmaze port (large)": "antmaze-large-play-v2",
}


def raw_speed(dataset_id: str, steps: int) -> float:
    env = get_eval_env_factory(get_dataset_spec(dataset_id).env_name)(get_dataset_spec(dataset_id).env_name)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = env.action_space.shape
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, shape).astype(np.float32))
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t)


def torchrl_speed(dataset_id: str, steps: int, num_envs: int) -> float:
    env = make_eval_env(dataset_id, num_envs=num_envs, seed=0)
    n = max(1, steps // num_envs)
    env.rollout(5, break_when_any_done=False)  # warm-up
    t = time.perf_counter()
    env.rollout(n, break_when_any_done=False)
    return n * num_envs / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--num-envs", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'family':24s} {'raw gymnasium':>15s} {'TorchRL env':>15s}   (steps/s, num_envs={args.num_envs})")
    for family, dataset_id in FAMILIES.items():
        raw = raw_speed(dataset_id, args.steps)
        wrapped = torchrl_speed(dataset_id, args.steps, args.num_envs)
        print(f"{family:24s} {raw:15.0f} {wrapped:15.0f}")


if __name__ == "__main__":
    main()
