"""The recipe config as the training code reads it: checks of its values, and small typed views of its sections.

:func:`validate_config` fails fast, before any data is loaded or any file written, on values that cannot be
right. :class:`NetworkConfig` and :class:`OptimConfig` are what the algorithm builders
(:mod:`ppl_torchrl.training.algorithms`) take instead of raw config sections.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from omegaconf import DictConfig

from ppl_torchrl.errors import ConfigError


def _number(section, key: str, where: str) -> float:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}.")
    return value


def check_int(key: str, value, low: int = 0, high: int | None = None, hint: str = "") -> None:
    """A :class:`ConfigError` unless ``value`` is ``None`` or an integer (not a bool) in ``[low, high)``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value >= high):
        where = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"{key} must be an integer {where}{hint}, got {value!r}.")


#: numpy's legacy seeding (np.random.seed), which every seed of a run also feeds, takes [0, 2**32)
SEED_RANGE = (0, 2**32)


def validate_config(cfg: DictConfig) -> None:
    """Fails fast, before any data is loaded or any file written, on values that cannot be right.

    Raises :class:`~ppl_torchrl.errors.ConfigError` (a ``ValueError``) naming the key.
    """
    loss = cfg.loss
    if "w" in loss and not (_number(loss, "w", "loss") >= 1):
        raise ConfigError(f"loss.w must be >= 1 (the unbalance coefficient), got {loss.w}.")
    for key in ("actor_bc_coef", "critic_bc_coef", "policy_noise", "noise_clip"):
        if key in loss and not (_number(loss, key, "loss") >= 0):
            raise ConfigError(f"loss.{key} must be >= 0, got {loss[key]}.")
    for key in ("actor_lr", "critic_lr", "potential_lr_scale", "tau", "gamma"):
        if not (_number(cfg.optim, key, "optim") > 0):
            raise ConfigError(f"optim.{key} must be > 0, got {cfg.optim[key]}.")
    if not (0 < cfg.optim.gamma <= 1 and 0 < cfg.optim.tau <= 1):
        raise ConfigError("optim.gamma and optim.tau must lie in (0, 1].")
    for where, section, keys in (("optim", cfg.optim, ("steps", "batch_size", "policy_freq")),
                                 ("logger", cfg.logger, ("log_every",)), ("eval", cfg.eval, ("every",)),
                                 ("checkpoint", cfg.checkpoint, ("every",))):
        for key in keys:
            if not (_number(section, key, where) >= 1 and int(section[key]) == section[key]):
                raise ConfigError(f"{where}.{key} must be a positive integer, got {section[key]}.")
    for key, value in (("seed", cfg.get("seed")), ("eval.seed", cfg.eval.get("seed")),
                       ("dataset.generation_seed", cfg.dataset.get("generation_seed")),
                       ("probe.seed", (cfg.get("probe") or {}).get("seed"))):
        check_int(key, value, *SEED_RANGE)
    check_int("eval.episodes", cfg.eval.get("episodes"), 0)
    check_int("eval.num_envs", cfg.eval.get("num_envs"), 1)
    check_int("threads", cfg.get("threads"), 1, hint=" (or null: torch's default)")
    minutes = cfg.checkpoint.get("every_minutes")
    if minutes is not None and not (_number(cfg.checkpoint, "every_minutes", "checkpoint") > 0):
        raise ConfigError(f"checkpoint.every_minutes must be > 0 (or null: by steps only), got {minutes}.")
    if str(cfg.get("resume")).lower() not in ("true", "false", "auto"):
        raise ConfigError(f"resume must be true, false or auto, got {cfg.get('resume')!r}.")
    backend = str(cfg.logger.get("backend") or "").lower()
    if backend not in ("wandb", "", "none", "csv"):
        raise ConfigError(f"logger.backend must be 'wandb' or '' (files only), got {backend!r}.")



def _from_section(cls, section):
    """``cls`` from the config section's keys of the same names (every field is required: the defaults live
    in ``recipes/config/base.yaml`` and nowhere else)."""
    missing = [f.name for f in fields(cls) if f.name not in section]
    if missing:
        raise ConfigError(f"the config lacks {missing} for {cls.__name__}.")
    return cls(**{f.name: section[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class NetworkConfig:
    """The ``model`` section: width and depth of every network, size of the critic ensemble, and the activation and
    initialisation of the ReBRAC-family networks (``ppl_torchrl.modules``: ``relu`` / ``corl``, or FQL's ``gelu`` /
    ``fan_avg``)."""

    hidden_dim: int
    num_hidden: int
    num_qvalue_nets: int
    activation: str
    init: str

    @classmethod
    def from_config(cls, section) -> "NetworkConfig":
        return _from_section(cls, section)


@dataclass(frozen=True)
class OptimConfig:
    """The ``optim`` section as the algorithm builders read it (one home for every learning rate and gamma)."""

    actor_lr: float
    critic_lr: float
    potential_lr_scale: float  # potential lr = critic lr x this (authors' code: 1/100)
    tau: float
    policy_freq: int
    gamma: float

    @property
    def potential_lr(self) -> float:
        return self.critic_lr * self.potential_lr_scale

    @classmethod
    def from_config(cls, section) -> "OptimConfig":
        return _from_section(cls, section)
