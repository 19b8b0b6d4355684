"""Reading a training run's ``checkpoint.pt`` back: one place for the error an unreadable file gives, one for restoring
an algorithm from it (:func:`restore_algorithm`), and one for rebuilding a finished run's networks to score or inspect
them (``recipes/evaluate.py``, the dead-unit count)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf

from ppl_torchrl.errors import UserError, user_errors

#: the file a training run keeps its state in, inside its run folder
CHECKPOINT = "checkpoint.pt"


def read_checkpoint(path: str | Path, hint: str) -> dict:
    """``torch.load`` of a checkpoint onto the CPU (RNG states must stay CPU tensors; ``load_state_dict`` copies the
    rest onto the device), a :class:`UserError` ending in ``hint`` when the file is truncated or not a checkpoint."""
    with user_errors(RuntimeError, EOFError, OSError, pickle.UnpicklingError, hint=hint):
        return torch.load(path, map_location="cpu", weights_only=False)


class TrainedRun(NamedTuple):
    state: dict  # the checkpoint as saved (step, dims, state_mean/std, ...)
    config: DictConfig  # the training run's config, compile switches off
    algorithm: object  # ppl_torchrl.training.algorithms.Algorithm with the checkpoint's weights


def load_trained_run(path: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
    """Rebuilds the networks of a training checkpoint (``path``: the file, or the run folder that holds it) from the
    config saved in it and loads their weights."""
    from functools import partial

    from ppl_torchrl.training.algorithms import algorithm_from_config
    from ppl_torchrl.training.onestep import PHASE_OF, onestep_algorithm_from_config

    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise UserError(f"{path} holds no {CHECKPOINT}: pass a training run folder, or its {CHECKPOINT}.")
        path = path / CHECKPOINT
    if not path.is_file():
        raise UserError(f"checkpoint={path} does not exist; pass the {CHECKPOINT} of a training run folder.")
    state = read_checkpoint(path, hint=f"{path} is not a readable {CHECKPOINT} of a training recipe.")
    if not isinstance(state, dict) or not {"config", "dims", "algorithm"} <= set(state):
        raise UserError(f"{path} is not a {CHECKPOINT} of a training recipe (no config/dims/algorithm).")
    config = OmegaConf.create(state["config"])
    # Nothing here runs the update: build it plain, whatever the training run's compile settings (a CUDA-graph
    # run's checkpoint is read on a CPU machine too).
    config.compile.enabled, config.compile.cudagraphs = False, False
    build = algorithm_from_config
    if state.get("algorithm_name") in PHASE_OF:  # a phase of the one-step setting: its own algorithm
        build = partial(onestep_algorithm_from_config, PHASE_OF[state["algorithm_name"]])
    with user_errors(ValueError, KeyError):
        algorithm = build(config, state["dims"]["obs_dim"], state["dims"]["act_dim"], device)
    load_algorithm_state(algorithm, state, f"{path} does not match the networks its own config builds: was it written "
                         "by another version of ppl-torchrl?")
    return TrainedRun(state, config, algorithm)


def restore_algorithm(algorithm, state: dict, hint: str, weights_only: bool = False) -> None:
    """The one way a run takes state from a checkpoint: resuming it (:meth:`Trainer.load_checkpoint`), starting from
    another run's weights (fine-tuning from its offline run, a one-step phase from the phase before).

    Every weight, optimizer and the target updater, or with ``weights_only`` the loss's weights alone (a run with
    other optimizers). ``hint`` ends the one-line error of a checkpoint that does not fit (:func:`load_algorithm_state`).
    Checkpoints written before 2026-12 also hold a ``gemm_plan`` entry (the CPU GEMM backends of a routing layer since
    deleted); it is ignored: such a run resumes on torch's own GEMMs.
    """
    load_algorithm_state(algorithm, state, hint, weights_only=weights_only)


def load_algorithm_state(algorithm, state: dict, hint: str, weights_only: bool = False) -> None:
    """``algorithm.load_state_dict(state["algorithm"])`` (``weights_only``: the loss's weights alone); weights that do
    not fit (a parameter of another shape is a ``RuntimeError`` from torch, a ``ValueError`` with the whole TensorDict
    in it from tensordict; a missing one a ``KeyError``) raise a one-line :class:`UserError`: ``hint`` and the
    innermost cause's first line."""
    try:
        if weights_only:
            algorithm.loss.load_state_dict(state["algorithm"]["loss"])
        else:
            algorithm.load_state_dict(state["algorithm"])
    except (RuntimeError, KeyError, ValueError) as err:
        cause = err
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise UserError(f"{hint} ({first_line[:200]})") from err
