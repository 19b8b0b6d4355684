"""The offline training loop every recipe shares: data -> algorithm -> loop -> eval/log -> checkpoint.

Resume is exact on CPU: a checkpoint holds every parameter, target, optimizer state, the target
updater's state, the step counter, the global torch / numpy / random RNG states, the replay buffer's
own generator and the logger's position; ``resume=true`` reproduces the uninterrupted run bit for bit.
Checkpoints and results are written atomically (temp file + ``os.replace``).
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from tqdm.auto import tqdm

from ppl_torchrl.algorithms import Algorithm, make_algorithm
from ppl_torchrl.atomic import atomic_torch_save, atomic_write
from ppl_torchrl.run_logger import RunLogger

CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validate_config(cfg: DictConfig) -> None:
    """Fails fast, before any data is loaded, on values that cannot be right."""
    loss = cfg.loss
    if "w" in loss and not (loss.w >= 1):
        raise ValueError(f"loss.w must be >= 1 (the unbalance coefficient), got {loss.w}.")
    for key in ("actor_bc_coef", "critic_bc_coef", "policy_noise", "noise_clip"):
        if key in loss and not (loss[key] >= 0):
            raise ValueError(f"loss.{key} must be >= 0, got {loss[key]}.")
    for key in ("actor_lr", "critic_lr", "potential_lr_scale", "tau", "gamma"):
        if not (cfg.optim[key] > 0):
            raise ValueError(f"optim.{key} must be > 0, got {cfg.optim[key]}.")
    if not (0 < cfg.optim.gamma <= 1 and 0 < cfg.optim.tau <= 1):
        raise ValueError("optim.gamma and optim.tau must lie in (0, 1].")
    for key in ("steps", "batch_size", "policy_freq"):
        if not (int(cfg.optim[key]) >= 1):
            raise ValueError(f"optim.{key} must be a positive integer, got {cfg.optim[key]}.")


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but CUDA is not available; use device=cpu or device=auto.")
    return device


def _rng_state(buffer) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "buffer": buffer._rng.get_state() if getattr(buffer, "_rng", None) is not None else None,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, buffer) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("buffer") is not None:
        buffer._rng.set_state(state["buffer"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Runs ``cfg.optim.steps`` updates of ``algorithm`` on batches of ``buffer``, with eval and checkpoints.

    Args:
        cfg: the recipe config (sections ``optim``, ``eval``, ``logger``, ``checkpoint``).
        algorithm: from :func:`ppl_torchrl.algorithms.make_algorithm`.
        buffer: a replay buffer from :func:`ppl_torchrl.data.make_offline_replay_buffer`.
        evaluate: ``evaluate(policy) -> dict`` of eval metrics, or ``None`` to skip evaluation.
        run_dir: where ``metrics.csv``, ``checkpoint.pt`` and ``results.json`` go.
    """

    def __init__(self, cfg: DictConfig, algorithm: Algorithm, buffer, evaluate, run_dir: Path, device):
        self.cfg, self.algorithm, self.buffer, self.evaluate = cfg, algorithm, buffer, evaluate
        self.run_dir, self.device = Path(run_dir), device
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.obs_dim, self.act_dim = buffer.dataset_stats.obs_dim, buffer.dataset_stats.act_dim
        self.logger = RunLogger(self.run_dir, cfg)
        self.last_eval: dict | None = None
        self.wall_time = 0.0

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        atomic_torch_save(
            {
                "step": self.step,
                "algorithm": self.algorithm.state_dict(),
                "rng": _rng_state(self.buffer),
                "logger": self.logger.state_dict(),
                "last_eval": self.last_eval,
                "wall_time": self.wall_time,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                # what recipes/evaluate.py needs to rebuild and score the policy without the data
                "dims": {"obs_dim": self.obs_dim, "act_dim": self.act_dim},
                "state_mean": self.buffer.state_mean,
                "state_std": self.buffer.state_std,
            },
            self.run_dir / CHECKPOINT,
        )

    def load_checkpoint(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.algorithm.load_state_dict(state["algorithm"])
        _set_rng_state(state["rng"], self.buffer)
        self.logger.load_state_dict(state["logger"])
        self.step, self.last_eval, self.wall_time = state["step"], state["last_eval"], state["wall_time"]
        return True

    # -------------------------------------------------------------- loop
    def run(self) -> dict:
        cfg = self.cfg
        steps, log_every = int(cfg.optim.steps), int(cfg.logger.log_every)
        eval_every, ckpt_every = int(cfg.eval.every), int(cfg.checkpoint.every)
        stop_after = cfg.checkpoint.get("stop_after")  # for tests: simulate a killed run
        bar = tqdm(total=steps, initial=self.step, desc=f"{self.algorithm.name}", disable=not cfg.logger.progress)
        t0, timed_steps = time.perf_counter(), 0
        latest: dict = {}  # last value of every metric (actor terms exist only on delayed steps)
        per_call = int(cfg.optim.get("updates_per_call", 1))
        several = per_call > 1 and hasattr(self.algorithm.update, "run")
        while self.step < steps:
            # Several updates per call never cross a log, eval, checkpoint or stop step: those stay exact.
            n = min(per_call, steps - self.step, *(
                every - self.step % every for every in (log_every, eval_every, ckpt_every))) if several else 1
            if several and stop_after is not None:
                n = max(1, min(n, int(stop_after) - self.step))
            if n > 1:
                batches = [self.buffer.sample().to(self.device, non_blocking=True) for _ in range(n)]
                metrics = self.algorithm.update.run(batches, self.step)
            else:
                batch = self.buffer.sample().to(self.device, non_blocking=True)
                metrics = self.algorithm.update(batch, self.step)
            latest.update(metrics.items(True, True) if isinstance(metrics, TensorDictBase) else metrics.items())
            self.step += n
            timed_steps += n
            bar.update(n)
            if self.step % log_every == 0 or self.step == steps:
                elapsed = time.perf_counter() - t0
                row = {k: float(v) for k, v in latest.items() if v.numel() == 1}
                row["steps_per_second"] = timed_steps / max(elapsed, 1e-9)
                self.wall_time += elapsed
                t0, timed_steps = time.perf_counter(), 0
                self.logger.log(self.step, row, prefix="train")
                bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss_qvalue", "loss_actor") if k in row})
            if self.evaluate is not None and (self.step % eval_every == 0 or self.step == steps):
                pause = time.perf_counter()
                self.last_eval = self._evaluate()
                t0 += time.perf_counter() - pause  # steps/s and wall time count training only
            if self.step % ckpt_every == 0 or self.step == steps:
                self.save_checkpoint()
            if stop_after is not None and self.step >= int(stop_after):
                bar.close()
                return {"stopped_at": self.step}
        bar.close()
        return self.finish()

    def _evaluate(self) -> dict:
        result = self.evaluate(self.algorithm.policy)
        scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and v is not None}
        self.logger.log(self.step, scalars, prefix="eval")
        return result

    def finish(self) -> dict:
        results = {
            "algorithm": self.algorithm.name,
            "dataset": self.cfg.dataset.id,
            "seed": int(self.cfg.seed),
            "steps": self.step,
            "train_wall_time_s": self.wall_time,
            "final_eval": self.last_eval,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }
        atomic_write(self.run_dir / RESULTS, json.dumps(results, indent=2, default=to_jsonable))
        self.logger.close(results)
        return results


def to_jsonable(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)


def resume_mode(cfg: DictConfig, run_dir: Path) -> bool:
    """``resume``: true (continue ``run_dir``'s checkpoint), false (refuse to overwrite one) or ``auto``
    (continue if a checkpoint exists, else start): ``auto`` makes relaunched sweeps idempotent."""
    has_checkpoint = (run_dir / CHECKPOINT).exists()
    mode = str(cfg.resume).lower()
    if mode == "auto":
        return has_checkpoint
    if mode == "true":
        if not has_checkpoint:
            raise FileNotFoundError(f"resume=true but {run_dir / CHECKPOINT} does not exist.")
        return True
    if mode == "false":
        if has_checkpoint:
            raise FileExistsError(
                f"{run_dir} already holds a checkpoint. Pass resume=true (or auto) to continue it, "
                "or choose another run_dir."
            )
        return False
    raise ValueError(f"resume must be true, false or auto, got {cfg.resume!r}.")


def finished_results(run_dir: Path) -> dict | None:
    """The ``results.json`` of a finished run in ``run_dir``, or ``None``."""
    path = Path(run_dir) / RESULTS
    return json.loads(path.read_text()) if path.exists() else None


def build_trainer(cfg: DictConfig, run_dir: Path | None = None) -> Trainer:
    """Config -> data -> algorithm -> evaluation -> :class:`Trainer` (resumed if ``cfg.resume``)."""
    from ppl_torchrl.data import make_offline_replay_buffer
    from ppl_torchrl.data.transforms import reward_scale_bias
    from ppl_torchrl.datasets import resolve_training_data

    validate_config(cfg)
    run_dir = Path(run_dir or cfg.run_dir)
    resume = resume_mode(cfg, run_dir)
    device = resolve_device(cfg.device)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    seed_everything(int(cfg.seed))
    data_source, eval_id = resolve_training_data(cfg.dataset)
    scale, bias = cfg.dataset.get("reward_scale"), cfg.dataset.get("reward_bias")
    if scale is None or bias is None:
        auto_scale, auto_bias = reward_scale_bias(eval_id or "", cfg.loss.reward_family)
        scale = auto_scale if scale is None else scale
        bias = auto_bias if bias is None else bias
    try:
        buffer = make_offline_replay_buffer(
            data_source, batch_size=int(cfg.optim.batch_size), reward_scale=float(scale), reward_bias=float(bias),
            normalize_states=bool(cfg.dataset.normalize_states), seed=int(cfg.seed), progress=cfg.logger.progress,
        )
    except (OSError, RuntimeError) as err:
        raise type(err)(
            f"{err}\nIn a recipe: dataset.path=/path/to/<file>.hdf5 trains on a local D4RL-format file of "
            f"dataset.id, or dataset.id=<minari id> dataset.eval_id=<registered id> on a local Minari dataset."
        ) from err
    stats = buffer.dataset_stats
    algorithm = make_algorithm(cfg, stats.obs_dim, stats.act_dim, device)
    if algorithm.name not in ("ppl", "rebrac") and cfg.get("compile") is True:
        # PPL^R / ReBRAC compile inside make_algorithm (ppl_torchrl.compiled, also under compile=auto);
        # the other losses only on request, as torch.compile of their eager step.
        algorithm.update = torch.compile(algorithm.update)
    evaluate = None
    if eval_id is not None and int(cfg.eval.episodes) > 0:
        evaluate = make_evaluator(cfg, eval_id, buffer.state_mean, buffer.state_std, device)
    trainer = Trainer(cfg, algorithm, buffer, evaluate, run_dir, device)
    if resume:
        trainer.load_checkpoint()
    return trainer


def make_evaluator(cfg, eval_id: str, state_mean, state_std, device):
    from ppl_torchrl.envs import make_eval_env
    from ppl_torchrl.evaluation import evaluate_policy

    env = make_eval_env(eval_id, num_envs=int(cfg.eval.num_envs), seed=int(cfg.eval.seed), device=device,
                        state_mean=state_mean, state_std=state_std)

    def evaluate(policy):
        # The same eval seed at every evaluation, as the authors' code (eval_seed = 42).
        return evaluate_policy(policy, env, int(cfg.eval.episodes), seed=int(cfg.eval.seed), dataset_id=eval_id)

    return evaluate
