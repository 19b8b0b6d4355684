"""The body of every training recipe, and how every recipe reports errors.

:func:`train` builds the trainer from the config, runs it and prints the result. :func:`recipe_main`
wraps each recipe's ``main``: an error the user can fix (a bad config value, an unknown id, a missing or
corrupt file, no network, no CUDA) prints as one line, ``error: <message>``, on stderr and exits with
status 2; any other exception is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows the
traceback of user errors too.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from ppl_torchrl.atomic import atomic_write
from ppl_torchrl.errors import UserError, error_line, is_user_error
from ppl_torchrl.reporting.tables import format_scores
from ppl_torchrl.training.config import validate_config

#: exit status of a recipe stopped by a user error (argparse's status for a bad command line)
USER_ERROR_STATUS = 2


def _debug() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _hydra_config():
    """Hydra's runtime config inside a ``@hydra.main`` function, else ``None``."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    return HydraConfig.get() if HydraConfig.initialized() else None


def _in_multirun() -> bool:
    from hydra.types import RunMode

    hc = _hydra_config()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def _remove_empty_job_dir() -> None:
    """After a failed job: hydra's job folder (multirun) is removed if the job left it empty."""
    hc = _hydra_config()
    if hc is None or not hc.runtime.get("output_dir"):
        return
    out = Path(hc.runtime.output_dir)
    folders = [out, out.parent] if out.name == "hydra" else [out]
    for folder in folders:
        if folder.resolve() == Path.cwd().resolve():
            return
        try:
            folder.rmdir()  # only succeeds on an empty folder
        except OSError:
            return


def _missing_key(err: Exception) -> str:
    """The config field a MissingMandatoryValue names, also when it was reached through an interpolation."""
    named = re.search(r"Missing mandatory value: (\S+)", str(err))
    return named.group(1) if named else (getattr(err, "full_key", None) or "a required config field")


def recipe_main(fn: Callable) -> Callable:
    """Decorates a recipe's main (inside ``@hydra.main``): user errors print one line and exit 2.

    ``error: <message>`` goes to stderr and the process exits with :data:`USER_ERROR_STATUS`; other
    exceptions (bugs) propagate with their traceback, as do user errors when ``HYDRA_FULL_ERROR=1``.
    In a hydra multirun the user error is printed and re-raised, so that the launcher records the failed
    job and goes on with the others.
    """

    @functools.wraps(fn)
    def main(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if isinstance(err, (MissingMandatoryValue, InterpolationToMissingValueError)):  # a `???` left unset
                key = _missing_key(err)
                err = UserError(f"{key} has no value: pass {key}=<value> on the command line.")
            _remove_empty_job_dir()
            if not is_user_error(err) or _debug():
                raise
            sys.stdout.flush()
            print(f"error: {error_line(err)}", file=sys.stderr, flush=True)
            if _in_multirun():
                raise
            sys.exit(USER_ERROR_STATUS)

    return main


def record_hydra_config(run_dir: Path, cfg: DictConfig) -> None:
    """Writes hydra's record of the command into ``run_dir/hydra/.hydra`` (inside ``@hydra.main`` only).

    Hydra itself writes nothing (``hydra.run.dir: .``, ``hydra.output_subdir: null`` in ``base.yaml``):
    the record is written here once the run is accepted, so a refused or failed command leaves every
    run folder as it was.
    """
    hc = _hydra_config()
    if hc is None:
        return
    folder = Path(run_dir) / "hydra" / ".hydra"
    atomic_write(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hc})))
    atomic_write(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task))))


def train(cfg: DictConfig) -> dict:
    """Trains ``cfg.loss`` on ``cfg.dataset`` and returns ``results.json``'s content.

    With ``resume=auto`` a finished run is not trained again (its results are returned) and an
    interrupted one continues from its checkpoint.
    """
    from ppl_torchrl.training.trainer import build_trainer

    return _run(cfg, build_trainer)


def train_finetune(cfg: DictConfig) -> dict:
    """Fine-tunes ``cfg.loss`` online from an offline checkpoint (``recipes/ppl_finetune.py``); as :func:`train`."""
    from ppl_torchrl.training.finetune import build_finetuner

    return _run(cfg, build_finetuner)


def train_onestep(cfg: DictConfig) -> dict:
    """PPL's one-step setting (``recipes/ppl_onestep.py``): the BC and Q^beta phases, then the PPL policy on the fixed
    Q^beta, each a run of the one trainer; as :func:`train` for the policy phase in ``run_dir``."""
    from ppl_torchrl.training.onestep_phases import build_onestep

    return _run(cfg, build_onestep)


def _run(cfg: DictConfig, build) -> dict:
    validate_config(cfg)  # before the heavy imports: a bad value fails in a second
    from ppl_torchrl.training.trainer import finished_results

    if str(cfg.resume).lower() == "auto":
        done = finished_results(Path(cfg.run_dir))
        if done is not None:
            print(f"{cfg.run_dir} is finished; skipping (delete results.json to retrain).")
            return done
    trainer = build(cfg)
    record_hydra_config(trainer.run_dir, cfg)
    results = trainer.run()
    final = results.get("final_eval") or {}
    if final:
        print(format_scores([results]))
    print(f"run folder: {trainer.run_dir}")
    return results


def compose_variant(*overrides: str) -> DictConfig:
    """Inside a hydra main: the running config re-composed with extra overrides (e.g. ``"loss=rebrac"``)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    # unresolved: an override such as run_dir=out/${loss.name} must follow the new loss
    task = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    return compose(config_name=hydra_cfg.job.config_name, overrides=[*task, *overrides])

