"""Trains the behaviour policies of the locomotion ``*-gen-v0`` datasets with online SAC.

    python recipes/train_behavior.py env=hopper time_budget_s=540 out_dir=runs/behavior/hopper

TorchRL all the way: ``GymWrapper`` around the Gymnasium v4 env (the dynamics D4RL-v2 used), a
``Collector`` (TorchRL 0.14 name of ``SyncDataCollector``; uniform random actions for ``init_random_frames``), a
``TensorDictReplayBuffer`` and ``SACLoss`` with ``SoftUpdate``; the device, seeds and evaluation are the library's
(the recipes'). Every ``eval_every`` frames the mean action ``tanh(loc)`` is evaluated on the D4RL task and the
actor saved as ``<out_dir>/step<frames>.pt``; the first evaluation at ``medium_fraction`` x D4RL's ``ref_max`` is
also saved as ``medium.pt``, the best as ``best.pt`` and the last as ``final.pt``. ``<out_dir>/log.json`` lists every
evaluation. Pick the checkpoints to commit from there (docs/datagen.md, "Locomotion").
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ppl_torchrl.errors import ConfigError, user_error
from ppl_torchrl.training.recipe import hydra_recipe

log = logging.getLogger("train_behavior")


class MeanAction(torch.nn.Module):
    """The SAC actor's deterministic action ``tanh(loc)`` (the TanhNormal's), from the plain MLP's output."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        loc, _ = self.net(observation).chunk(2, -1)
        return torch.tanh(loc)


def make_evaluation(env_name: str, episodes: int, device: torch.device):
    """``evaluate(net, seed) -> mean return`` of ``tanh(loc)`` over ``episodes``, with the library's evaluation
    (:func:`ppl_torchrl.evaluation.evaluate_policy` on :func:`ppl_torchrl.envs.make_eval_env`: the D4RL task of
    ``<env>-medium-v2``, Gymnasium v4 with its 1000-step limit, as the datasets are evaluated)."""
    from tensordict.nn import TensorDictModule

    from ppl_torchrl.envs import make_eval_env
    from ppl_torchrl.evaluation import evaluate_policy

    dataset_id = f"{env_name}-medium-v2"
    env = make_eval_env(dataset_id, num_envs=episodes, device=device)

    def evaluate(net, seed: int) -> float:
        policy = TensorDictModule(MeanAction(net), in_keys=["observation"], out_keys=["action"])
        return float(evaluate_policy(policy, env, episodes, seed=seed, dataset_id=dataset_id)["return_mean"])

    return evaluate


def build(cfg: DictConfig, device: torch.device):
    """Env, actor (ProbabilisticActor around the plain MLP), twin Q critic and SAC loss."""
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl.envs import DoubleToFloat, GymWrapper, TransformedEnv
    from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
    from torchrl.objectives import SACLoss, SoftUpdate

    from ppl_torchrl.datagen._behavior_net import make_actor_mlp
    from ppl_torchrl.datagen.locomotion import make_gym_env

    env = TransformedEnv(GymWrapper(make_gym_env(cfg.env), device=device), DoubleToFloat())  # MuJoCo obs are float64
    env.set_seed(int(cfg.seed))
    obs_dim = env.observation_spec["observation"].shape[-1]
    act_dim = env.action_spec.shape[-1]
    net = make_actor_mlp(obs_dim, act_dim, tuple(cfg.actor_hidden)).to(device)
    actor = ProbabilisticActor(
        TensorDictModule(nn.Sequential(net, NormalParamExtractor()), in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"], spec=env.action_spec, distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=False,
    )

    class QNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = MLP(in_features=obs_dim + act_dim, out_features=1, num_cells=list(cfg.critic_hidden),
                           activation_class=nn.ReLU)

        def forward(self, obs, act):
            return self.mlp(torch.cat([obs, act], -1))

    qvalue = ValueOperator(QNet().to(device), in_keys=["observation", "action"], out_keys=["state_action_value"])
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2, loss_function="l2", delay_qvalue=True, alpha_init=1.0)
    loss.make_value_estimator(gamma=float(cfg.gamma))
    updater = SoftUpdate(loss, tau=float(cfg.tau))
    return env, actor, net, loss, updater, obs_dim, act_dim


def run(cfg: DictConfig) -> dict:
    """The recipe body (callable without hydra, e.g. from tests)."""
    from torchrl.collectors import (
        Collector,  # SyncDataCollector was renamed Collector in torchrl 0.14
    )
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
    from ppl_torchrl.atomic import atomic_write
    from ppl_torchrl.datagen._behavior_net import save_actor
    from ppl_torchrl.datagen.locomotion import LOCOMOTION_ENVS
    from ppl_torchrl.registry import get_dataset_spec
    from ppl_torchrl.progress import progress_bar
    from ppl_torchrl.training.process import setup_process

    if cfg.env not in LOCOMOTION_ENVS:
        raise ConfigError(f"env must be one of {sorted(LOCOMOTION_ENVS)}, got {cfg.env!r}.")
    device = setup_process(cfg)  # the recipes' device (auto/cpu/cuda, checked), threads and seeds
    ref_max = get_dataset_spec(f"{cfg.env}-medium-v2").ref_max
    target = float(cfg.medium_fraction) * ref_max
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    env, actor, net, loss, updater, obs_dim, act_dim = build(cfg, device)
    evaluate = make_evaluation(cfg.env, int(cfg.eval_episodes), device)
    hidden = tuple(cfg.actor_hidden)
    collector = Collector(env, actor, frames_per_batch=int(cfg.frames_per_batch), total_frames=int(cfg.total_frames),
                          init_random_frames=int(cfg.init_random_frames), device=device,
                          auto_register_policy_transforms=False)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(int(cfg.buffer_size), device=device), batch_size=int(cfg.batch_size))
    opt_actor = torch.optim.Adam(loss.actor_network_params.values(True, True), lr=float(cfg.lr))
    opt_critic = torch.optim.Adam(loss.qvalue_network_params.values(True, True), lr=float(cfg.lr))
    opt_alpha = torch.optim.Adam([loss.log_alpha], lr=float(cfg.lr))
    opts = (opt_actor, opt_critic, opt_alpha)

    history, frames, best, medium_saved = [], 0, -np.inf, False
    t0 = time.perf_counter()
    next_eval = int(cfg.eval_every)
    bar = progress_bar(total=int(cfg.total_frames), desc=f"SAC {cfg.env}", unit="frame", disable=not cfg.progress)

    def snapshot(name: str, ret: float):
        meta = {"env": cfg.env, "frames": frames, "eval_return": ret, "seed": int(cfg.seed),
                "algo": "SAC (torchrl SACLoss)", "wall_s": round(time.perf_counter() - t0, 1)}
        save_actor(out / f"{name}.pt", net, obs_dim, act_dim, hidden, meta)

    for batch in collector:
        rb.extend(batch.reshape(-1))
        frames += batch.numel()
        bar.update(batch.numel())
        if frames >= int(cfg.init_random_frames):
            for _ in range(max(1, round(float(cfg.utd) * batch.numel()))):
                sample = rb.sample().to(device)
                ld = loss(sample)
                # SACLoss detaches the critic inside the actor loss, so one backward of the sum is safe.
                for opt in opts:
                    opt.zero_grad()
                (ld["loss_qvalue"] + ld["loss_actor"] + ld["loss_alpha"]).backward()
                for opt in opts:
                    opt.step()
                updater.step()
            collector.update_policy_weights_()
        stop = time.perf_counter() - t0 > float(cfg.time_budget_s)
        if frames >= next_eval or stop:
            next_eval += int(cfg.eval_every)
            ret = evaluate(net, seed=10_000 + frames)
            history.append({"frames": frames, "return": ret, "wall_s": round(time.perf_counter() - t0, 1)})
            bar.set_postfix(ret=f"{ret:.0f}")
            log.info("frames %d  eval return %.1f  (%.0f s)", frames, ret, time.perf_counter() - t0)
            snapshot(f"step{frames:07d}", ret)
            if ret > best:
                best = ret
                snapshot("best", ret)
            if not medium_saved and ret >= target:
                medium_saved = True
                snapshot("medium", ret)
            atomic_write(out / "log.json", json.dumps({"target": target, "history": history}, indent=1))
        if stop:
            break
    snapshot("final", history[-1]["return"] if history else float("nan"))
    collector.shutdown()
    bar.close()
    summary = {"env": cfg.env, "frames": frames, "wall_s": round(time.perf_counter() - t0, 1), "best": best,
               "medium_reached": medium_saved, "target": target, "history": history}
    atomic_write(out / "log.json", json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return summary


def select_checkpoints(run_dir: str | Path, env_name: str, target: float, policy_dir: str | Path) -> dict:
    """Copies a run's snapshots to ``policy_dir`` as ``<env>_{replay1,replay2,replay3,medium,expert}.pt``.

    * ``medium``: the run's ``medium.pt`` (first eval >= ``target``) if it exists, else the
      snapshot before the best one whose eval return is closest to half of the best (so
      medium-expert still mixes two distinct levels, as D4RL's does);
    * ``expert``: ``best.pt`` (the best eval of the run; not D4RL-expert level);
    * ``replay1..3``: the snapshots nearest to 1/4, 2/4 and 3/4 of the medium checkpoint's frames.
    Returns ``{stage: {"frames", "eval_return", "source"}}``.
    """
    import shutil

    from ppl_torchrl.datagen._behavior_net import load_actor

    run_dir, policy_dir = Path(run_dir), Path(policy_dir)
    snaps = sorted(run_dir.glob("step*.pt"))
    if not snaps or not (run_dir / "best.pt").exists():
        raise user_error(FileNotFoundError(f"{run_dir} has no step*.pt / best.pt snapshots; train first."))
    info = {p: load_actor(p)[1]["meta"] for p in snaps + [run_dir / "best.pt"]}
    best = info[run_dir / "best.pt"]["eval_return"]
    if (run_dir / "medium.pt").exists():
        medium = run_dir / "medium.pt"
        info[medium] = load_actor(medium)[1]["meta"]
    else:
        best_frames = info[run_dir / "best.pt"]["frames"]
        before = [p for p in snaps if info[p]["frames"] < best_frames] or [run_dir / "best.pt"]
        medium = min(before, key=lambda p: abs(info[p]["eval_return"] - 0.5 * best))
    mf = info[medium]["frames"]
    chosen = {"medium": medium, "expert": run_dir / "best.pt"}
    for k in (1, 2, 3):
        chosen[f"replay{k}"] = min(snaps, key=lambda p: abs(info[p]["frames"] - k * mf / 4))
    policy_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for stage, src in chosen.items():
        shutil.copyfile(src, policy_dir / f"{env_name}_{stage}.pt")
        out[stage] = {"frames": info[src]["frames"], "eval_return": round(info[src]["eval_return"], 1),
                      "source": src.name}
    return out


@hydra_recipe("train_behavior")
def main(cfg: DictConfig) -> None:
    if cfg.select_to:
        from ppl_torchrl.registry import get_dataset_spec

        target = float(cfg.medium_fraction) * get_dataset_spec(f"{cfg.env}-medium-v2").ref_max
        print(json.dumps(select_checkpoints(cfg.out_dir, cfg.env, target, cfg.select_to), indent=1))
        return
    run(cfg)


if __name__ == "__main__":
    main()
