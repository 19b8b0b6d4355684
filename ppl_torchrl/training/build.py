"""How every training run is set up: config -> process -> data -> algorithm -> evaluation -> probe -> trainer.

:func:`build_run` is the one set-up chain (offline, each phase of fine-tuning and of the one-step setting, each toy
phase); nothing touches the run folder before the run is accepted (config valid, resume possible, data loaded,
algorithm and evaluation built): a refused or failed command leaves every run folder as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig

from ppl_torchrl.errors import user_errors
from ppl_torchrl.training.algorithms import Algorithm, algorithm_from_config
from ppl_torchrl.training.config import validate_config
from ppl_torchrl.training.data_source import TrainingData, load_training_data
from ppl_torchrl.training.evaluator import make_evaluator
from ppl_torchrl.training.process import setup_process
from ppl_torchrl.training.resume import resume_mode
from ppl_torchrl.training.trainer import Trainer


@dataclass
class RunParts:
    """What the set-up chain (:func:`build_run`) has built when it asks a run for its batch source."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: TrainingData
    algorithm: Algorithm


def build_run(cfg: DictConfig, run_dir: Path | None = None, *, data: TrainingData | None = None,
              batch_size: int | None = None, algorithm: Callable | None = None, evaluation: bool = True,
              probe: bool = True, source: Callable | None = None, start_from: Path | None = None,
              keep_optimizers: bool = False, evaluate_start: bool = False) -> Trainer:
    """Config -> data -> algorithm -> evaluation -> probe -> trainer: the one set-up chain of every training run
    (offline, each phase of fine-tuning and of the one-step setting, each toy phase), resumed if ``cfg.resume`` says
    so. Runs of several phases call it once per phase (:mod:`ppl_torchrl.training.phases`).

    What differs between runs is given here, never a second chain:

    * ``data``: the data to train on (:class:`~ppl_torchrl.training.data_source.TrainingData`: the toy's full batch),
      by default the ``dataset`` section's (:func:`~ppl_torchrl.training.data_source.load_training_data`, after the
      process is seeded) in batches of ``batch_size`` (default ``optim.batch_size``);
    * ``algorithm(cfg, obs_dim, act_dim, device) -> Algorithm`` (default :func:`~ppl_torchrl.training.algorithms.algorithm_from_config`);
    * ``evaluation`` / ``probe``: whether this run evaluates its policy / runs the mechanism probe;
    * ``source(parts: RunParts)``: where the batches come from (:mod:`ppl_torchrl.training.sources`; default the
      offline replay buffer);
    * ``start_from``: the checkpoint a new run starts from (the phase before), with ``keep_optimizers`` and
      ``evaluate_start`` as :class:`~ppl_torchrl.training.trainer.Trainer` takes them.

    Errors the user can fix (config values, ids, files, network, device) are user errors
    (:func:`ppl_torchrl.errors.is_user_error`), raised before the run folder is touched.
    """
    from ppl_torchrl.training.probe import make_probe

    validate_config(cfg)
    run_dir = Path(run_dir or cfg.run_dir)
    resume = resume_mode(cfg, run_dir)
    device = setup_process(cfg)
    data = data if data is not None else load_training_data(cfg, batch_size)
    buffer = data.buffer
    with user_errors(ValueError):  # unknown loss, compile value
        built = (algorithm or algorithm_from_config)(cfg, data.obs_dim, data.act_dim, device)
    evaluate = None
    if evaluation and data.eval_id is not None and int(cfg.eval.episodes) > 0:
        with user_errors(ImportError, KeyError):  # a missing simulator package, an unknown eval id
            evaluate = make_evaluator(cfg, data.eval_id, buffer.state_mean, buffer.state_std, device,
                                      buffer.dataset_stats)
    run_probe = make_probe(cfg, data.source, buffer, built, device) if probe else None
    batches = source(RunParts(cfg, run_dir, device, data, built)) if source is not None else None
    run = Trainer(cfg, built, buffer, evaluate, run_dir, device, run_probe, source=batches,
                  keep_optimizers=keep_optimizers, evaluate_start=evaluate_start)
    run.start(resume, start_from)  # the run is accepted: only now is the run folder touched
    return run


def build_trainer(cfg: DictConfig, run_dir: Path | None = None) -> Trainer:
    """The offline recipes' :class:`Trainer` (``cfg.loss`` on ``cfg.dataset``): :func:`build_run` as it is."""
    return build_run(cfg, run_dir)
