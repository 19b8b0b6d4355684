"""Whether a run starts, continues or is refused (``resume``: true, false or auto), and a finished run's results.

Only reads: a refused command leaves the run folder as it was.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from ppl_torchrl.errors import ConfigError, ResumeError, RunExistsError
from ppl_torchrl.reporting.metrics import METRICS
from ppl_torchrl.training.checkpoints import CHECKPOINT

#: a finished run's summary, written last (its presence means the run is finished)
RESULTS = "results.json"


def resume_mode(cfg: DictConfig, run_dir: Path) -> bool:
    """``resume``: true (continue ``run_dir``'s checkpoint), false (refuse to overwrite one) or ``auto``
    (continue if a checkpoint exists, else start from step 0): ``auto`` makes relaunched sweeps idempotent.

    Reads only; raises :class:`~ppl_torchrl.errors.ResumeError` / ``RunExistsError`` (user errors).
    """
    path = run_dir / CHECKPOINT
    has_checkpoint = path.exists()
    mode = str(cfg.resume).lower()
    if mode == "auto":
        return has_checkpoint
    if mode == "true":
        if not has_checkpoint:
            ckpt = cfg.checkpoint
            cadence = f"every checkpoint.every={ckpt.every} steps"
            if ckpt.get("every_minutes"):
                cadence += f" and every checkpoint.every_minutes={ckpt.every_minutes} minutes"
            started = (run_dir / METRICS).exists()
            raise ResumeError(
                f"resume=true but {path} does not exist: "
                + ("the run stopped before its first checkpoint" if started else f"there is no run in {run_dir}")
                + f" (checkpoints are taken {cadence}). Relaunch with resume=auto to start it from step 0 (its "
                "logs are cleared), or set a smaller checkpoint.every / checkpoint.every_minutes."
            )
        return True
    if mode == "false":
        if has_checkpoint:
            raise RunExistsError(
                f"{run_dir} already holds a checkpoint; nothing was changed. Pass resume=true (or auto) to "
                "continue it, or choose another run_dir."
            )
        return False
    raise ConfigError(f"resume must be true, false or auto, got {cfg.resume!r}.")


def finished_results(run_dir: Path) -> dict | None:
    """The ``results.json`` of a finished run in ``run_dir``, or ``None``."""
    path = Path(run_dir) / RESULTS
    return json.loads(path.read_text()) if path.exists() else None
