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
from ppl_torchrl.training.config import dotted

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


#: what a resumed run may change: where and how it runs (device, threads, compilation), how it is logged, evaluated,
#: probed and checkpointed, how far it trains (any ``*steps`` of ``optim`` / ``finetune``) and where its files are.
#: Everything else (data, loss, networks, optimizer, seed) is what its checkpoint was trained with.
MAY_CHANGE_ON_RESUME = ("run_dir", "resume", "device", "threads", "compile", "logger", "eval", "probe", "checkpoint",
                        "hydra", "quickstart", "phases_dir", "dataset.path", "dataset.eval_id",
                        "finetune.offline_checkpoint")


def check_same_training(saved: dict, cfg: DictConfig, run_dir: Path, step: int, total_steps: int) -> None:
    """Refuses, in one line, to resume the checkpoint of a run trained with other settings (``saved``, its resolved
    config) than ``cfg``'s, or one already past ``total_steps``: its optimizer state and weights would continue the
    old settings while ``results.json`` recorded the new ones. Keys only one of the configs has (a setting added
    by a later version) are not compared. Raises :class:`~ppl_torchrl.errors.ConfigError`."""
    from omegaconf import OmegaConf

    def fixed(key: str) -> bool:
        section = key.split(".")[0]
        if section in ("optim", "finetune") and key.endswith("steps"):
            return False
        return not any(key == k or key.startswith(f"{k}.") for k in MAY_CHANGE_ON_RESUME)

    old, new = dotted(saved), dotted(OmegaConf.to_container(cfg, resolve=True))
    changed = [k for k in old if k in new and fixed(k) and old[k] != new[k]]
    if changed:
        more = f" (and {len(changed) - 1} more setting(s))" if len(changed) > 1 else ""
        raise ConfigError(f"{run_dir} was trained with {changed[0]}={old[changed[0]]!r}, this command says "
                          f"{new[changed[0]]!r}{more}: a resumed run continues the settings of its checkpoint. Drop "
                          "the change to continue it, or train the new settings in another run_dir.")
    if step > total_steps:
        raise ConfigError(f"{run_dir} is at step {step}, past the {total_steps} steps this command asks for: pass at "
                          f"least {step} to continue it (or resume=auto to leave a finished run as it is).")

