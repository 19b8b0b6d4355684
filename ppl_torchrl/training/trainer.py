"""The training loop every run shares: updates, then at their steps the log row, evaluation + probe and checkpoint.

Resume is exact on CPU: a checkpoint holds every parameter, target, optimizer state, the target
updater's state, the step counter, the global torch / numpy / random RNG states, the replay buffer's
own generator, the last value of every metric and the logger's position; ``resume=true`` reproduces the
uninterrupted run bit for bit. Checkpoints are taken every ``checkpoint.every`` steps and every
``checkpoint.every_minutes`` minutes, always between two steps (saving reads the RNG states, it draws
nothing), and are written atomically (temp file + ``os.replace``), as are the results.

How a run is set up (data, algorithm, evaluation, resume rules) is :mod:`ppl_torchrl.training.build`; where its
batches come from, and the events the loop sends there, :mod:`ppl_torchrl.training.sources`; runs of several phases,
:mod:`ppl_torchrl.training.phases`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase

from ppl_torchrl import progress
from ppl_torchrl.atomic import atomic_torch_save, atomic_write
from ppl_torchrl.errors import ConfigError
from ppl_torchrl.training.algorithms import Algorithm
from ppl_torchrl.training.checkpoints import CHECKPOINT, read_checkpoint, restore_algorithm
from ppl_torchrl.training.resume import RESULTS, check_same_training
from ppl_torchrl.training.rng import rng_state, set_rng_state
from ppl_torchrl.training.run_logger import RunLogger
from ppl_torchrl.training.sources import OfflineBatches

COMPILE_MESSAGE = ("compiling the update (torch.compile; about 30 s on a small CPU, once per process); "
                   "the progress bar's rate and ETA start after it.")


class Trainer:
    """Runs the updates of ``algorithm`` on the batches of ``source``, with evaluation, probe and checkpoints.

    Args:
        cfg: the recipe config (sections ``optim``, ``eval``, ``logger``, ``checkpoint``).
        algorithm: from :func:`ppl_torchrl.training.algorithms.make_algorithm`.
        buffer: the offline replay buffer (:func:`ppl_torchrl.data.make_offline_replay_buffer`): its state
            normalisation, dimensions and generator go into the checkpoint.
        evaluate: ``evaluate(policy) -> dict`` of eval metrics, or ``None`` to skip evaluation.
        run_dir: where ``metrics.csv``, ``checkpoint.pt`` and ``results.json`` go.
        probe: ``probe(loss) -> dict`` of mechanism diagnostics logged under ``probe/`` at every evaluation
            step (:mod:`ppl_torchrl.training.probe`), or ``None``.
        source: where the batches come from (:mod:`ppl_torchrl.training.sources`); by default ``buffer``'s.
        keep_optimizers: a run started from another run's checkpoint continues its optimizers too (fine-tuning),
            not only its weights (a one-step phase).
        evaluate_start: score the starting policy at step 0 (fine-tuning: the offline policy, under the online
            run's evaluation).
    """

    def __init__(self, cfg: DictConfig, algorithm: Algorithm, buffer, evaluate, run_dir: Path, device, probe=None,
                 source: OfflineBatches | None = None, keep_optimizers: bool = False, evaluate_start: bool = False):
        self.cfg, self.algorithm, self.buffer, self.evaluate = cfg, algorithm, buffer, evaluate
        self.probe = probe  # ppl_torchrl.training.probe.MechanismProbe, run at every evaluation step
        self.source = source if source is not None else OfflineBatches(buffer, device)
        self.keep_optimizers, self.evaluate_start = keep_optimizers, evaluate_start
        self.run_dir, self.device = Path(run_dir), device
        self.step = 0
        self.obs_dim, self.act_dim = buffer.dataset_stats.obs_dim, buffer.dataset_stats.act_dim
        self.logger = RunLogger(self.run_dir, cfg)
        self.last_eval: dict | None = None
        self.start_eval: dict | None = None  # the last evaluation in the checkpoint this run started from
        self.latest: dict = {}  # last value of every metric (actor terms exist only on delayed steps)
        self.wall_time = 0.0  # training only: evaluation, checkpoints and compilation excluded
        self.compile_time = 0.0

    def start(self, resume: bool, start_from: Path | None = None) -> None:
        """Opens the run folder: continues its checkpoint (``resume``) or starts the run at step 0, from the weights
        of the checkpoint ``start_from`` if given (:meth:`initialise`).

        The folder is created here, once the run is accepted (a ``start_from`` that does not fit is refused
        before). Starting at step 0 clears the logs an earlier attempt left without a checkpoint; resuming cuts
        them back to the checkpoint's position. Either way no step is logged twice.
        """
        resuming = resume and (self.run_dir / CHECKPOINT).exists()
        if start_from is not None and not resuming:
            start_from = Path(start_from)
            self.initialise(read_checkpoint(start_from, hint=f"{start_from} is unreadable: restore it, or delete its "
                                            "run folder to train it again."), start_from)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not (resuming and self.load_checkpoint()):
            self.logger.start()

    def initialise(self, state: dict, path: Path) -> None:
        """Starts from another run's checkpoint ``state`` (read from ``path``; trained on this run's dataset): its
        loss's weights, and its optimizers with ``keep_optimizers``."""
        trained_on = (state.get("config") or {}).get("dataset", {}).get("id")
        if trained_on is not None and trained_on != self.cfg.dataset.id:
            raise ConfigError(f"{path} was trained on dataset.id={trained_on}, not {self.cfg.dataset.id}: start "
                              "from a run on this dataset.")
        restore_algorithm(self.algorithm, state, f"{path} holds another model or loss than this run builds: use the "
                          "loss and model settings of the run that wrote it.", weights_only=not self.keep_optimizers)
        self.start_eval = state.get("last_eval")

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        atomic_torch_save(
            {
                "step": self.step,
                "algorithm_name": self.algorithm.name,  # how recipes/evaluate.py rebuilds it (load_trained_run)
                "algorithm": self.algorithm.state_dict(),
                "rng": rng_state(self.buffer),
                "logger": self.logger.state_dict(),
                "latest": {k: v.detach().to("cpu", copy=True) for k, v in self.latest.items()},
                "last_eval": self.last_eval,
                "wall_time": self.wall_time,
                "compile_time": self.compile_time,
                "config": OmegaConf.to_container(self.cfg, resolve=True),
                # what recipes/evaluate.py needs to rebuild and score the policy without the data
                "dims": {"obs_dim": self.obs_dim, "act_dim": self.act_dim},
                "state_mean": self.buffer.state_mean,
                "state_std": self.buffer.state_std,
                "start_eval": self.start_eval,
                **self.source.state_dict(),
            },
            self.run_dir / CHECKPOINT,
        )

    def load_checkpoint(self) -> bool:
        """Restores the run from ``run_dir/checkpoint.pt``; ``False`` if there is none."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        state = read_checkpoint(path, hint=f"{path} is unreadable: restore it, or delete it to start the run over.")
        check_same_training(state.get("config") or {}, self.cfg, self.run_dir, int(state["step"]), self.total_steps)
        restore_algorithm(self.algorithm, state, f"{path} was written by a run of another config (model, loss or "
                          "optimizer): resume it with that config, or choose another run_dir.")
        set_rng_state(state["rng"], self.buffer)
        self.logger.start(state["logger"])
        self.step, self.last_eval, self.wall_time = state["step"], state["last_eval"], state["wall_time"]
        self.latest = dict(state.get("latest") or {})
        self.compile_time = float(state.get("compile_time", 0.0))
        self.start_eval = state.get("start_eval", state.get("offline_eval"))  # "offline_eval": fine-tuning, before
        self.source.load_state_dict(state)
        return True

    # -------------------------------------------------------------- loop
    @property
    def total_steps(self) -> int:
        """Where :meth:`run` stops (the source's count: updates offline, environment steps online)."""
        return self.source.total_steps(self.cfg)

    def run(self) -> dict:
        """The training loop: updates, then at their steps the train log row, evaluation + probe and checkpoint.

        What differs between runs is the batch source and the events it receives
        (:mod:`ppl_torchrl.training.sources`), never the loop itself.
        """
        cfg, source = self.cfg, self.source
        steps, log_every = self.total_steps, int(cfg.logger.log_every)
        eval_every, ckpt_every = int(cfg.eval.every), int(cfg.checkpoint.every)
        # Also a checkpoint when this much time has passed since the last one (taken between two steps).
        ckpt_seconds = 60.0 * float(cfg.checkpoint.get("every_minutes") or 0.0)
        stop_after = cfg.checkpoint.get("stop_after")  # for tests: simulate a killed run
        # A compiled update compiles at its first call in a process (seconds to minutes): kept out of the bar's
        # ETA and of steps/s.
        compiling = self.algorithm.compiled
        bar = progress.progress_bar(total=steps, initial=self.step, unit=source.unit,
                                    desc=f"{self.algorithm.name}{source.label}", disable=not cfg.logger.progress)
        latest, per_call = self.latest, source.updates_per_call(cfg)
        try:
            source.open()
            if self.evaluate_start and self.step == 0 and self.evaluate is not None:
                self.last_eval = self._evaluate()
            t0, timed_steps = time.perf_counter(), 0
            last_ckpt_step, last_ckpt_time = self.step, time.monotonic()
            while self.step < steps:
                # Several updates per call never cross a log, eval, checkpoint or stop step: those stay exact.
                room = min(steps - self.step, *(
                    every - self.step % every for every in (log_every, eval_every, ckpt_every)))
                if stop_after is not None:
                    room = max(1, min(room, int(stop_after) - self.step))
                # A shorter remainder runs as single updates: each new call length would compile another graph.
                n = per_call if per_call <= room else 1
                if compiling:
                    progress.write(COMPILE_MESSAGE)
                call_start = time.perf_counter()
                batches = source.batches(n, self.step)
                if n > 1:
                    metrics = self.algorithm.run_updates(batches, self.step)
                else:
                    metrics = self.algorithm.update(batches[0], self.step)
                latest.update(metrics.items(True, True) if isinstance(metrics, TensorDictBase) else metrics.items())
                self.step += n
                spent = time.perf_counter() - call_start
                for prefix, row in source.after_update(self.step, spent, compiled_now=compiling).items():
                    self.logger.log(self.step, row, prefix=prefix)
                if compiling:
                    compiling = False
                    self.compile_time += spent
                    if getattr(self.algorithm.update, "compiled", True):
                        progress.write(f"compiled in {spent:.0f} s; training.")
                    else:  # compile.enabled=auto and compiling failed (warned): the run goes on eagerly
                        self.algorithm.compiled = False
                        progress.write(f"compiling failed after {spent:.0f} s; training with the eager update.")
                    t0 = time.perf_counter()  # steps/s and wall time count training only
                    bar.unpause()  # the bar's clock (rate, ETA) starts after compilation
                else:
                    timed_steps += n
                bar.update(n)
                if self.step % log_every == 0 or self.step == steps:
                    elapsed = time.perf_counter() - t0
                    row = {k: float(v) for k, v in latest.items() if v.numel() == 1}
                    row["steps_per_second"] = timed_steps / max(elapsed, 1e-9)
                    row.update(source.log_row())
                    self.wall_time += elapsed
                    t0, timed_steps = time.perf_counter(), 0
                    self.logger.log(self.step, row, prefix="train")
                    bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss_qvalue", "loss_actor") if k in row})
                if self.step % eval_every == 0 or self.step == steps:
                    t0 += self._evaluation_step()  # steps/s and wall time count training only
                if self.step == steps or source.checkpoint_due(self.step, self.step - last_ckpt_step,
                                                               time.monotonic() - last_ckpt_time, ckpt_every,
                                                               ckpt_seconds):
                    pause = time.perf_counter()
                    self.save_checkpoint()
                    last_ckpt_step, last_ckpt_time = self.step, time.monotonic()
                    t0 += time.perf_counter() - pause
                if stop_after is not None and self.step >= int(stop_after):
                    return {"stopped_at": self.step}
        finally:
            bar.close()
            source.close()
        return self.finish()

    def _evaluation_step(self) -> float:
        """The mechanism probe and the evaluation of this step (each if configured); returns the seconds taken."""
        start = time.perf_counter()
        if self.probe is not None:
            self.logger.log(self.step, self.probe(self.algorithm.loss), prefix="probe")
        if self.evaluate is not None:
            self.last_eval = self._evaluate()
        return time.perf_counter() - start

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
            "compile_time_s": self.compile_time,
            "compiled": self.algorithm.compiled,
            "final_eval": self.last_eval,
            "start_eval": self.start_eval,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            **self.source.results(),
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
