"""The one-step setting as a sequence of phases (:func:`onestep_phases`): BC in ``phases_dir/bc``, Q^beta in
``phases_dir/qbeta`` (``phases_dir`` defaults to ``run_dir``; pointing several runs at one folder shares their beta and
Q^beta), then the PPL policy in ``run_dir``. Each phase is :func:`~ppl_torchrl.training.build.build_run` with its
algorithm (:mod:`ppl_torchrl.training.onestep`) and starts from the weights of the one before
(:func:`~ppl_torchrl.training.phases.run_phases`); a relaunch continues an interrupted phase and skips a finished one.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ppl_torchrl.errors import ConfigError
from ppl_torchrl.training.onestep import PHASES, onestep_algorithm_from_config
from ppl_torchrl.training.phases import Phase, run_phases


def validate_onestep(cfg: DictConfig) -> None:
    for phase in PHASES:
        key = f"{phase}_steps"
        value = cfg.optim.get(key)
        if not (isinstance(value, int) and value >= 1):
            raise ConfigError(f"optim.{key} must be a positive integer (the {phase} phase's updates), got {value}.")
    if float(cfg.loss.get("conservative_weight", 0.0)) < 0:
        raise ConfigError(f"loss.conservative_weight must be >= 0, got {cfg.loss.conservative_weight}.")
    if cfg.compile.enabled is True or bool(cfg.compile.cudagraphs):
        raise ConfigError("the one-step phases run eagerly: set compile.enabled=auto (or false) and "
                          "compile.cudagraphs=false.")


def phase_dir(cfg: DictConfig, phase: str, run_dir: Path | None = None) -> Path:
    """Where a phase runs: ``run_dir`` for the policy, ``phases_dir/<phase>`` (default ``run_dir/<phase>``) else."""
    run_dir = Path(run_dir or cfg.run_dir)
    if phase == "policy":
        return run_dir
    return Path(str(cfg.get("phases_dir") or run_dir)).expanduser() / phase


def phase_config(cfg: DictConfig, phase: str) -> DictConfig:
    """The config of one phase's run: its own steps, folder and log names; the earlier phases always continue where
    they stopped (``resume=auto``); only the policy phase evaluates during training (BC once, at its end)."""
    steps = int(cfg.optim[f"{phase}_steps"])
    if phase == "policy":
        return OmegaConf.merge(cfg, {"optim": {"steps": steps}})
    over = {"run_dir": str(phase_dir(cfg, phase)), "phases_dir": str(phase_dir(cfg, phase).parent), "resume": "auto",
            "optim": {"steps": steps},
            "eval": {"every": steps}, "checkpoint": {"stop_after": None},
            "logger": {"run_name": f"{cfg.logger.run_name}-{phase}", "run_id": None}}
    return OmegaConf.merge(cfg, over)


def build_onestep_phase(cfg: DictConfig, phase: str, start_from: Path | None = None):
    """The started :class:`~ppl_torchrl.training.trainer.Trainer` of one phase (``cfg`` as :func:`phase_config` gives
    it), from the weights in ``start_from`` (the phase before). Only the policy runs the mechanism probe; Q^beta
    has no policy to evaluate."""
    from ppl_torchrl.training.build import build_run

    validate_onestep(cfg)
    return build_run(cfg, algorithm=partial(onestep_algorithm_from_config, phase), evaluation=phase != "qbeta",
                     probe=phase == "policy", start_from=start_from)


def onestep_phases(cfg: DictConfig) -> list[Phase]:
    """BC -> Q^beta -> policy, each with its own config (:func:`phase_config`)."""
    return [Phase(phase, phase_config(cfg, phase), partial(build_onestep_phase, phase=phase), check=validate_onestep)
            for phase in PHASES]


def build_onestep(cfg: DictConfig):
    """The policy phase's started trainer in ``run_dir``, after the BC and Q^beta phases have trained (or were
    found finished); ``resume`` applies to the policy phase."""
    if cfg.optim.steps != cfg.optim.policy_steps:  # onestep.yaml: steps is ${optim.policy_steps}, unless overridden
        raise ConfigError(f"optim.steps={cfg.optim.steps}: the one-step recipe's phases train optim.bc_steps, "
                          "optim.qbeta_steps and optim.policy_steps updates; set those (optim.steps follows "
                          "optim.policy_steps).")
    return run_phases(onestep_phases(cfg))
