"""The body of every training recipe, and how every recipe reports errors.

:func:`train` builds the trainer from the config, runs it and prints the result. :func:`hydra_recipe` is every
recipe's entry point (``@hydra.main`` with :func:`recipe_main`): an error the user can fix (a bad config value, an
unknown id, a config-group option that does not exist, a missing or corrupt file, no network, no CUDA) prints as
one line, ``error: <message>``, on stderr and exits with status 2; any other exception is a bug and keeps its
traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback of user errors too.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from ppl_torchrl.atomic import atomic_write, exclusive
from ppl_torchrl.errors import ConfigError, UserError, did_you_mean, error_line, is_user_error
from ppl_torchrl.reporting.tables import format_scores
from ppl_torchrl.training.config import dotted, validate_config

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
            _print_error(err)
            if _in_multirun():
                raise
            sys.exit(USER_ERROR_STATUS)

    return main


def _print_error(err: BaseException) -> None:
    sys.stdout.flush()
    print(f"error: {error_line(err)}", file=sys.stderr, flush=True)


def hydra_recipe(config_name: str, *, version_base: str | None = "1.3") -> Callable:
    """The entry point of every hydra recipe: ``@hydra.main`` on ``config/<config_name>.yaml`` beside the recipe,
    around :func:`recipe_main`.

    Hydra resolves the command line's config-group choices (``dataset=<id>``, ``loss=<name>``) before the recipe's
    function runs, and answers a choice it cannot find with the list of every option (150+ dataset ids). They are
    checked first here (:func:`check_group_choices`), so that a mistyped choice is one line naming the closest
    options, with the exit status of every other user error.
    """

    def decorate(fn: Callable) -> Callable:
        import hydra

        config_dir = Path(inspect.getfile(inspect.unwrap(fn))).resolve().parent / "config"
        launch = hydra.main(config_path="config", config_name=config_name, version_base=version_base)(recipe_main(fn))

        @functools.wraps(launch)
        def main(cfg: DictConfig | None = None):
            if cfg is not None:  # called with a config (tests): no command line to check
                return launch(cfg)
            if not _debug():  # HYDRA_FULL_ERROR=1: hydra's own report, as for every user error
                try:
                    check_group_choices(config_dir, sys.argv[1:])
                    check_override_keys(config_dir, config_name, sys.argv[1:], version_base)
                except ConfigError as err:
                    _print_error(err)
                    sys.exit(USER_ERROR_STATUS)
            return launch()

        return main

    return decorate


def check_group_choices(config_dir: str | Path, argv: Sequence[str]) -> None:
    """Raises :class:`~ppl_torchrl.errors.ConfigError` for a command-line override that picks an option of one of
    ``config_dir``'s config groups (``dataset=...``, also in a multirun sweep ``dataset=a,b``) that has no file there.

    Overrides hydra cannot parse, hydra's own groups (``hydra/launcher=...``) and command lines that add config folders
    (``--config-dir``, ``hydra.searchpath``) are left to hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    config_dir = Path(config_dir)
    if any(a.startswith(("-cd", "--config-dir", "hydra.searchpath")) for a in argv):
        return
    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:  # hydra's flags and their values
            continue
        try:
            override = parser.parse_override(arg)
        except HydraException:
            continue
        folder = config_dir / override.key_or_group
        # hydra's own groups (hydra/launcher=...) also take their options from its plugins
        if override.is_delete() or not folder.is_dir() or override.key_or_group.split("/")[0] == "hydra":
            continue
        try:
            values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                      else [override.get_value_element_as_str()])
        except HydraException:  # a glob or range sweep: hydra expands it against the folder itself
            continue
        options = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))
        for value in values:
            if value != "null" and value not in options:
                shown = folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder
                hint = did_you_mean(value, options) or f" The options are the files of {shown}/."
                raise ConfigError(f"{override.key_or_group}={value}: there is no such option in {shown}/.{hint}")


def check_override_keys(config_dir: str | Path, config_name: str, argv: Sequence[str],
                        version_base: str | None = "1.3") -> None:
    """Raises :class:`~ppl_torchrl.errors.ConfigError` for an override of a key the composed config does not have
    (``optim.stepz=10``), which hydra answers with several lines and status 1, naming the closest keys.

    Composes the config once with the command line's overrides; sweeps, hydra's own flags and keys, and overrides
    hydra cannot parse are left to hydra.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, HydraException

    if any(a.startswith("-") for a in argv):  # --multirun, --config-name, --cfg ...: hydra's own command lines
        return
    overrides = [a for a in argv if "=" in a and not a.lstrip("+~").startswith("hydra")]
    try:
        if any(OverridesParser.create().parse_override(a).is_sweep_override() for a in overrides):
            return
    except HydraException:
        return

    def composed(args):
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base=version_base):
            return compose(config_name=config_name, overrides=list(args))

    try:
        composed(overrides)
    except ConfigCompositionException as err:
        unknown = re.match(r"Could not override '([^']+)'", str(err))
        if unknown is None:
            return  # hydra's message
        key = unknown.group(1)
        arg = next((a for a in overrides if a.split("=", 1)[0].strip() == key), f"{key}=...")
        try:
            keys = list(dotted(OmegaConf.to_container(composed([a for a in overrides if a != arg]))))
        except HydraException:
            keys = []
        raise ConfigError(f"{arg}: the config has no key {key}.{did_you_mean(key, keys)} To add a new key, "
                          f"write +{arg}.") from None


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
    from ppl_torchrl.training.build import build_trainer

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
    from ppl_torchrl.training.resume import finished_results

    if str(cfg.resume).lower() == "auto":
        done = finished_results(Path(cfg.run_dir))
        if done is not None:
            print(f"{cfg.run_dir} is finished; skipping (delete results.json to retrain).")
            return done
    # one process per run folder: a second one (a relaunch while the first still trains) would interleave its
    # checkpoints and logs with the first's
    with exclusive(Path(cfg.run_dir), wait=False, busy=" (a run training there): let it finish or stop it, then "
                   "relaunch with resume=auto to continue it; or choose another run_dir."):
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

