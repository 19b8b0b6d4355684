"""Runs of several phases, written as explicit sequences: each phase is one run of the one set-up chain
(:func:`~ppl_torchrl.training.build.build_run`) in its own folder, started from the checkpoint of the phase before.

    fine-tuning (training/finetune.py):  offline (run_dir/offline)  ->  online (run_dir)
    one-step (training/onestep_phases.py):  bc (phases_dir/bc)  ->  qbeta (phases_dir/qbeta)  ->  policy (run_dir)

:func:`run_phases` checks every phase's config before any phase trains (a bad value of the last phase fails in a
second, not after the first phase's hours), trains each earlier phase to its end (continuing an interrupted one,
reusing a finished one), and returns the last phase's trainer, which the recipe runs like any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig

from ppl_torchrl import progress
from ppl_torchrl.atomic import exclusive
from ppl_torchrl.training.checkpoints import CHECKPOINT
from ppl_torchrl.training.config import validate_config
from ppl_torchrl.training.resume import finished_results, resume_mode
from ppl_torchrl.training.trainer import Trainer


@dataclass(frozen=True)
class Phase:
    """One phase: its run config ``cfg`` (its ``run_dir``, steps and ``resume``), ``build(cfg, start_from=...)`` (its
    started :class:`Trainer`, from the checkpoint of the phase before or ``None``) and ``check(cfg)``, the config
    checks of this kind of run beyond :func:`~ppl_torchrl.training.config.validate_config`."""

    name: str
    cfg: DictConfig
    build: Callable[[DictConfig, Path | None], Trainer]
    check: Callable[[DictConfig], None] | None = None

    @property
    def run_dir(self) -> Path:
        return Path(str(self.cfg.run_dir))

    def check_config(self) -> None:
        """Reads only: the config's values and whether its ``resume`` setting can be honoured."""
        validate_config(self.cfg)
        if self.check is not None:
            self.check(self.cfg)
        resume_mode(self.cfg, self.run_dir)


def run_phases(phases: Sequence[Phase], start_from: Path | None = None) -> Trainer:
    """Trains every phase but the last in order (each from the checkpoint of the one before, the first from
    ``start_from``), then returns the last phase's started trainer."""
    for phase in phases:
        phase.check_config()
    *earlier, last = phases
    for phase in earlier:
        # runs that share an earlier phase's folder (one-step's phases_dir) take turns: one trains it, the others
        # wait for it and then find it finished
        with exclusive(phase.run_dir):
            if finished_results(phase.run_dir) is None:
                progress.write(f"phase {phase.name}: {phase.cfg.optim.steps} steps in {phase.run_dir}")
                phase.build(phase.cfg, start_from=start_from).run()
            else:
                progress.write(f"phase {phase.name}: finished in {phase.run_dir}; reused")
        start_from = phase.run_dir / CHECKPOINT
    return last.build(last.cfg, start_from=start_from)
