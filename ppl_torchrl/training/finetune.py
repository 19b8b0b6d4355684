"""Offline-to-online fine-tuning: a PPL^R / ReBRAC policy trained offline keeps learning from its own episodes.

One online step is one environment step of a TorchRL ``Collector`` (the current actor plus Gaussian exploration
noise, TorchRL's ``AdditiveGaussianModule``) stored in an online replay buffer, then one update of the same
:class:`~ppl_torchrl.update.ReBRACUpdate` as offline (compiled where the offline run would be) on a batch drawn
``mixing_ratio`` from the online buffer and the rest from the offline data (RLPD / Cal-QL / ReBRAC: 50/50).

ReBRAC's public fine-tuning code sets, and ``finetune:`` in ``recipes/config/ppl_finetune.yaml`` holds: exploration
noise std 0.03; the actor's BC coefficient decays linearly over the online steps down to ``actor_bc_floor`` times
its offline value (0 there); the critic's next-action penalty is off online (``critic_bc_coef`` 0); optimizers are
kept. Each online transition also stores the next action the exploring actor would take, as the critic's penalty
term reads it (its weight is 0 online unless set otherwise).

Exact resume: the online phase checkpoints only at episode boundaries, where the environment's whole state is the
index of its next reset. Each reset draws its seed from (run seed, reset index) (:class:`EpisodeSeeds`), so a
resumed run rebuilds the collector, replays the same reset and continues bit for bit: parameters, optimizers,
online buffer (its contents and generator), every RNG and the collector's frame counters are in the checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict

from ppl_torchrl import keys
from ppl_torchrl.errors import ConfigError, user_errors
from ppl_torchrl.training.algorithms import REBRAC_FAMILY
from ppl_torchrl.training.build import RunParts, build_run
from ppl_torchrl.training.checkpoints import CHECKPOINT
from ppl_torchrl.training.phases import Phase, run_phases
from ppl_torchrl.training.sources import OfflineBatches
from ppl_torchrl.training.trainer import Trainer

#: what one stored online transition holds: the offline batches' keys (the two halves of a batch are concatenated)
TRANSITION_KEYS = (*keys.BATCH_KEYS, keys.TRUNCATED)


class EpisodeSeeds(gym.Wrapper):
    """Seeds every ``reset`` with ``seed_of(base_seed, index)`` (any seed passed in is ignored) and counts them.

    The environment's state at an episode boundary is then ``next_index`` alone: setting it and resetting
    replays the same episode start.
    """

    def __init__(self, env: gym.Env, base_seed: int):
        super().__init__(env)
        self.base_seed, self.next_index = int(base_seed), 0

    def seed_of(self, index: int) -> int:
        return int(np.random.SeedSequence([self.base_seed, index]).generate_state(1)[0])

    def reset(self, *, seed=None, options=None):
        seed = self.seed_of(self.next_index)
        self.next_index += 1
        return self.env.reset(seed=seed, options=options)


def bc_decay(online_step: int, online_steps: int, floor: float) -> float:
    """ReBRAC's fine-tuning schedule: 1 at the first online step, linearly down to ``floor`` at the last."""
    return max(float(floor), 1.0 - online_step / max(1, online_steps))


def batch_split(cfg) -> tuple[int, int]:
    """(offline, online) transitions of each update batch: ``finetune.mixing_ratio`` of ``optim.batch_size`` online."""
    batch = int(cfg.optim.batch_size)
    online = int(round(float(cfg.finetune.mixing_ratio) * batch))
    return batch - online, online


class OnlineBatches(OfflineBatches):
    """Fine-tuning's batch source: one environment step per update (``cfg.finetune.env_steps`` of them), stored in
    the online buffer, then a batch of ``offline_batch`` offline and ``online_batch`` online transitions; the actor's
    BC coefficient follows ReBRAC's decay. It checkpoints only between episodes (the environment's state is then its
    next reset's index).

    Args: the run's ``cfg`` (section ``finetune``), the offline ``buffer`` (its batch size is the offline share),
    ``online_buffer`` (a TorchRL replay buffer with the offline data's reward transform),
    ``make_env() -> (TorchRL env, EpisodeSeeds)``, and the ``algorithm`` whose policy explores and whose loss's BC
    coefficients it schedules.
    """

    label, unit = " online", "step"

    def __init__(self, cfg: DictConfig, buffer, online_buffer, make_env, algorithm, device):
        super().__init__(buffer, device)
        ft = cfg.finetune
        self.cfg, self.online_buffer, self.make_env, self.algorithm = cfg, online_buffer, make_env, algorithm
        self.steps = int(ft.env_steps)
        self.offline_batch, self.online_batch = batch_split(cfg)
        self.episode = {"return": 0.0, "length": 0, "success": False, "count": 0}
        self.reset_index = 0  # EpisodeSeeds index of the current episode's reset
        self.collector_state: dict | None = None
        self._live_collector = None  # built by open(), in the process that runs
        self._episode_done, self._collect_seconds = False, 0.0
        self.timing = {"collect_s": 0.0, "update_s": 0.0}
        loss = algorithm.loss
        # Tensors, filled in place each step: a compiled update reads their values without recompiling.
        self.actor_bc0, self.actor_bc_floor = float(loss.actor_bc_coef), float(ft.actor_bc_floor)
        loss.actor_bc_coef = torch.tensor(self.actor_bc0, device=device)
        loss.critic_bc_coef = torch.tensor(float(ft.critic_bc_coef), device=device)

    def total_steps(self, cfg: DictConfig) -> int:
        return self.steps

    def updates_per_call(self, cfg: DictConfig) -> int:
        return 1  # one update per environment step

    # ------------------------------------------------------------------ events
    def open(self) -> None:
        self._live_collector, self._explore, self._seeds = self._collector()
        self._frames = iter(self._live_collector)

    def batches(self, n: int, step: int) -> list:
        start = time.perf_counter()
        data = next(self._frames)
        self._store(data, self._explore)
        self._episode_done = bool(data.get(keys.DONE).any())
        self.episode["return"] += float(data.get(("next", "reward")).sum())
        self.episode["length"] += 1
        if ("next", "success") in data.keys(True):
            self.episode["success"] |= bool(data.get(("next", "success")).any())
        self._collect_seconds = time.perf_counter() - start
        self.algorithm.loss.actor_bc_coef.fill_(self.actor_bc0 * bc_decay(step, self.steps, self.actor_bc_floor))
        return [self.mixed_batch()]

    def after_update(self, step: int, seconds: float, compiled_now: bool) -> dict:
        if not compiled_now:
            self.timing["collect_s"] += self._collect_seconds
            self.timing["update_s"] += seconds - self._collect_seconds
        if not self._episode_done:
            return {}
        self.episode["count"] += 1
        row = {"episode_return": self.episode["return"], "episode_length": self.episode["length"],
               "episode_success": float(self.episode["success"]), "episodes": self.episode["count"]}
        self.episode.update({"return": 0.0, "length": 0, "success": False})
        self.reset_index = self._seeds.next_index - 1  # the collector has already reset for the next episode
        return {"online": row}

    def log_row(self) -> dict:
        return dict(actor_bc_coef=float(self.algorithm.loss.actor_bc_coef), online_buffer=len(self.online_buffer),
                    **self.timing)

    def checkpoint_due(self, step: int, steps_since: int, seconds_since: float, every: int,
                       every_seconds: float) -> bool:
        # Only between episodes: the environment's state is then its next reset's index.
        return self._episode_done and (steps_since >= every or bool(every_seconds and seconds_since >= every_seconds))

    def close(self) -> None:
        if self._live_collector is not None:
            self._live_collector.shutdown()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "online_buffer": self._online_buffer_state(),
            "episode": dict(self.episode),
            "reset_index": self.reset_index,
            "collector": self._collector_checkpoint(),
            "timing": dict(self.timing),
        }

    def load_state_dict(self, state: dict) -> None:
        self._load_online_buffer(state["online_buffer"])
        self.episode, self.reset_index = dict(state["episode"]), int(state["reset_index"])
        self.collector_state, self.timing = state["collector"], dict(state["timing"])

    def results(self) -> dict:
        return {"online_timing_s": dict(self.timing), "online_episodes": self.episode["count"]}

    def _collector_checkpoint(self) -> dict | None:
        collector = self._live_collector
        if collector is not None:
            self.collector_state = collector.state_dict()
            self.collector_state.pop("policy_state_dict", None)  # the actor is in the algorithm's state
        return self.collector_state

    def _online_buffer_state(self) -> dict:
        # Only the filled rows: the storage is preallocated to finetune.buffer_size (TorchRL's own state_dict
        # would save all of it, ~70 MB per PointMaze checkpoint at the default capacity).
        buffer, n = self.online_buffer, len(self.online_buffer)
        return {"rows": buffer.storage[:n].clone() if n else None, "writer": buffer._writer.state_dict(),
                "rng": buffer._rng.get_state()}

    def _load_online_buffer(self, state: dict) -> None:
        buffer = self.online_buffer
        if state["rows"] is not None:
            buffer.storage.set(torch.arange(state["rows"].shape[0]), state["rows"])
        buffer._writer.load_state_dict(state["writer"])
        buffer._rng.set_state(state["rng"])

    def _collector(self):
        from torchrl.collectors import Collector
        from torchrl.modules import AdditiveGaussianModule
        from tensordict.nn import TensorDictSequential

        env, seeds = self.make_env()
        seeds.next_index = self.reset_index  # the collector's first reset replays the current episode's start
        noise = float(self.cfg.finetune.exploration_noise)
        explore = TensorDictSequential(self.algorithm.policy, AdditiveGaussianModule(
            env.action_spec, sigma_init=noise, sigma_end=noise, annealing_num_steps=1, safe=True, device=self.device))
        # use_buffers=False: the env's "success" info entry is written with another shape than its spec, which
        # the preallocated buffers would resize (a deprecation warning per step).
        collector = Collector(env, explore, frames_per_batch=1, total_frames=-1, device=self.device,
                              auto_register_policy_transforms=False, use_buffers=False)
        if self.collector_state is not None:
            collector.load_state_dict(self.collector_state, strict=False)
        return collector, explore, seeds

    def _store(self, data: TensorDict, explore) -> None:
        """Adds the collected transition with the exploring actor's next action (ReBRAC's fine-tuning)."""
        data = data.reshape(-1)
        with torch.no_grad():
            nxt = explore(TensorDict({keys.OBSERVATION: data.get(keys.NEXT_OBSERVATION)}, batch_size=data.batch_size))
        data.set(keys.NEXT_ACTION, nxt.get(keys.ACTION))
        self.online_buffer.extend(data.select(*TRANSITION_KEYS).to("cpu"))

    def mixed_batch(self) -> TensorDict:
        parts = [source.sample().select(*TRANSITION_KEYS) for source, n in
                 ((self.buffer, self.offline_batch), (self.online_buffer, self.online_batch)) if n > 0]
        return torch.cat(parts, 0).to(self.device)


def validate_finetune(cfg) -> None:
    ft = cfg.finetune
    if cfg.loss.name not in REBRAC_FAMILY:
        raise ConfigError(f"fine-tuning runs PPL^R or ReBRAC (loss=ppl, ppl_stable or rebrac), got loss={cfg.loss.name}.")
    if not 0.0 <= float(ft.mixing_ratio) <= 1.0:
        raise ConfigError(f"finetune.mixing_ratio is the online share of each batch, in [0, 1]; got {ft.mixing_ratio}.")
    if int(ft.env_steps) < 1:
        raise ConfigError(f"finetune.env_steps must be >= 1, got {ft.env_steps}.")
    if float(ft.exploration_noise) < 0:
        raise ConfigError(f"finetune.exploration_noise is a std, >= 0; got {ft.exploration_noise}.")


def finetune_phases(cfg: DictConfig) -> tuple[list[Phase], Path | None]:
    """The phases of a fine-tuning run and the checkpoint the first starts from: ``finetune.offline_checkpoint`` (a
    file or a run folder) then the online phase in ``run_dir``; else the offline run in ``run_dir/offline``
    (``optim.steps`` steps; it always continues where it stopped) then the online phase."""
    online = Phase("online", cfg, build_online_phase, check=validate_finetune)
    given = cfg.finetune.get("offline_checkpoint")
    if given:
        path = Path(str(given)).expanduser()
        path = path / CHECKPOINT if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"finetune.offline_checkpoint={given}: no checkpoint there. Pass the checkpoint.pt "
                                    "(or the run folder) of an offline PPL^R/ReBRAC run, or null to train one first.")
        return [online], path
    offline_cfg = OmegaConf.merge(cfg, {"run_dir": str(Path(str(cfg.run_dir)) / "offline"), "resume": "auto"})
    offline_cfg.checkpoint.stop_after = None
    return [Phase("offline", offline_cfg, build_run), online], None


def build_finetuner(cfg: DictConfig) -> Trainer:
    """The online phase's started trainer, after the offline phase (trained here if no checkpoint is given);
    ``resume`` applies to the online run in ``run_dir``."""
    validate_finetune(cfg)
    with user_errors(FileNotFoundError):
        phases, start_from = finetune_phases(cfg)
    return run_phases(phases, start_from)


def build_online_phase(cfg: DictConfig, start_from: Path | None = None) -> Trainer:
    """The online phase: :func:`~ppl_torchrl.training.build.build_run` with the offline batch share of the buffer and
    the online batch source, continuing the offline checkpoint's weights and optimizers and scoring its policy at
    step 0. Potential steps stop online unless ``finetune.train_potential``."""
    trainer = build_run(cfg, batch_size=max(1, batch_split(cfg)[0]), source=online_batches, start_from=start_from,
                        keep_optimizers=True, evaluate_start=True)
    if not bool(cfg.finetune.train_potential) and "potential" in trainer.algorithm.optimizers:
        # After any checkpoint load (which restores the offline lr). Adam's step is lr * m / (sqrt(v) + eps):
        # with lr 0 the potential stays exactly as trained offline.
        for group in trainer.algorithm.optimizers["potential"].param_groups:
            group["lr"] = 0.0
    return trainer


def online_batches(parts: RunParts) -> OnlineBatches:
    """The online batch source of a fine-tuning run: the online buffer (the offline data's reward transform) and the
    environment factory (the offline data's state normalisation), beside the parts :func:`build_run` built."""
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
    from torchrl.data.replay_buffers.samplers import RandomSampler

    from ppl_torchrl.data.transforms import reward_transform
    from ppl_torchrl.envs import make_env as make_task_env
    from ppl_torchrl.registry import get_dataset_spec

    cfg, buffer, device, eval_id = parts.cfg, parts.data.buffer, parts.device, parts.data.eval_id
    if eval_id is None:
        raise ConfigError(f"fine-tuning needs an environment: dataset.id={cfg.dataset.id} has none registered; set "
                          "dataset.eval_id to the registered id whose task matches the data.")
    ft = cfg.finetune
    online = TensorDictReplayBuffer(storage=LazyTensorStorage(int(ft.buffer_size)), sampler=RandomSampler(),
                                    batch_size=max(1, batch_split(cfg)[1]))
    transform = reward_transform(*parts.data.reward)
    if transform is not None:
        online.append_transform(transform)
    online.set_rng(torch.Generator().manual_seed(int(cfg.seed) + 1))

    spec = get_dataset_spec(eval_id)
    max_steps = int(ft.get("max_episode_steps") or spec.max_episode_steps)

    def make_env():
        seeds: list[EpisodeSeeds] = []

        def wrap(env):
            seeds.append(EpisodeSeeds(env, int(cfg.seed)))
            return seeds[-1]

        env = make_task_env(spec.env_name, max_steps, seed=int(cfg.seed), device=device,
                            state_mean=buffer.state_mean, state_std=buffer.state_std, gym_wrapper=wrap)
        return env, seeds[0]

    return OnlineBatches(cfg, buffer, online, make_env, parts.algorithm, device)
