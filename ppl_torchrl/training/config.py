"""The recipe config as the training code reads it: checks of its values, and small typed views of its sections.

:func:`validate_config` fails fast, before any data is loaded or any file written, on values that cannot be
right. :class:`LossConfig`, :class:`NetworkConfig`, :class:`OptimConfig` and :class:`CompileConfig` are what the
algorithm builders (:func:`ppl_torchrl.training.algorithms.make_algorithm`) take instead of the Hydra config: a test,
a benchmark or a script builds an algorithm from the settings it uses, and the recipes go through one adapter
(:func:`ppl_torchrl.training.algorithms.algorithm_from_config`).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields

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


def dotted(node, prefix: str = "") -> dict:
    """A nested config (a plain container) as ``{"optim.steps": value, ...}``."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    return {key: value for name, child in node.items() for key, value in dotted(child, f"{prefix}{name}.").items()}


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
    # The update's settings are checked where a config carries them (every recipe's does); a toy phase's run config
    # holds only what the loop reads (its update's settings are the toy's own, typed).
    optim = cfg.optim
    for key in ("actor_lr", "critic_lr", "potential_lr_scale", "tau", "gamma"):
        if key in optim and not (_number(optim, key, "optim") > 0):
            raise ConfigError(f"optim.{key} must be > 0, got {optim[key]}.")
    if not (0 < optim.get("gamma", 1) <= 1 and 0 < optim.get("tau", 1) <= 1):
        raise ConfigError("optim.gamma and optim.tau must lie in (0, 1].")
    counts = [("optim", optim, "steps"), ("logger", cfg.logger, "log_every"), ("eval", cfg.eval, "every"),
              ("checkpoint", cfg.checkpoint, "every")]
    counts += [("optim", optim, key) for key in ("batch_size", "policy_freq") if key in optim]
    for where, section, key in counts:
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
    wandb_mode = cfg.logger.get("wandb_mode")
    if backend == "wandb" and wandb_mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb_mode must be one of {', '.join(WANDB_MODES)}, got {wandb_mode!r}.")
    check_int("checkpoint.stop_after", cfg.checkpoint.get("stop_after"), 1, hint=" (or null: run to optim.steps)")
    dataset = cfg.get("dataset") or {}
    for key in ("reward_scale", "reward_bias"):
        if dataset.get(key) is not None:
            _number(dataset, key, "dataset")
    _check_compile(cfg.get("compile") or {})
    model = cfg.get("model") or {}
    for key in ("hidden_dim", "num_hidden", "num_qvalue_nets"):
        if key in model:
            check_int(f"model.{key}", model[key], 0 if key == "num_hidden" else 1)
    _check_network_choices(model)


#: what ``wandb.init(mode=...)`` accepts
WANDB_MODES = ("offline", "online", "disabled", "shared")


def _check_compile(section) -> None:
    """``compile.*`` checked here, not where torch.compile raises (deep inside a run, as a traceback); torch is
    imported only for a value that needs it, so that the default config is checked before the heavy imports."""
    check_int("compile.updates_per_call", section.get("updates_per_call"), 1)
    backend, mode = section.get("backend"), section.get("mode")
    if backend not in (None, "inductor"):
        import torch

        if backend not in torch.compiler.list_backends(exclude_tags=()):
            raise ConfigError(f"compile.backend must be a torch.compile backend (inductor, aot_eager, eager, ...: "
                              f"torch.compiler.list_backends()), got {backend!r}.")
    if mode is not None:
        import torch._inductor

        list_modes = getattr(torch._inductor, "list_mode_options", None)  # torch.compile's modes, where torch says
        modes = list(dict.fromkeys(["default", *(list_modes() if list_modes else ("reduce-overhead", "max-autotune"))]))
        if mode not in modes:
            raise ConfigError(f"compile.mode must be one of {', '.join(modes)} or null, got {mode!r}.")


def _check_network_choices(model) -> None:
    from ppl_torchrl.modules import ACTIVATIONS, INITS

    for key, allowed, optional in (("activation", ACTIVATIONS, False), ("potential_activation", ACTIVATIONS, True),
                                   ("init", INITS, False)):
        value = model.get(key)
        if key in model and not (value in allowed or (optional and value is None)):
            raise ConfigError(f"model.{key} must be one of {', '.join(allowed)}{' or null' if optional else ''}, "
                              f"got {value!r}.")


def _from_section(cls, section):
    """``cls`` from the config section's keys of the same names. Every field without a default is required (the
    defaults live in ``recipes/config/base.yaml``); a field with one is a key added later, whose default is what
    configs saved before it meant (a checkpoint's config still loads)."""
    missing = [f.name for f in fields(cls) if f.name not in section and f.default is MISSING]
    if missing:
        raise ConfigError(f"the config lacks {missing} for {cls.__name__}.")
    return cls(**{f.name: section[f.name] for f in fields(cls) if f.name in section})


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
    potential_activation: str | None = None  # f's own activation; None: ``activation`` (and configs saved before it)

    @classmethod
    def from_config(cls, section) -> "NetworkConfig":
        return _from_section(cls, section)

    # The one builder of the library's networks for every loss: width, depth, activation and initialisation from this
    # section, the same way for the actor, the critics and the potential whichever loss they serve.
    def actor(self, obs_dim: int, act_dim: int, device=None):
        """The deterministic tanh actor (:func:`ppl_torchrl.modules.make_actor`)."""
        from ppl_torchrl.modules import make_actor

        return make_actor(obs_dim, act_dim, hidden_dim=self.hidden_dim, num_hidden=self.num_hidden, device=device,
                          activation=self.activation, init=self.init)

    def critics(self, obs_dim: int, act_dim: int, device=None):
        """The LayerNorm critic ensemble of ``num_qvalue_nets`` members (:func:`ppl_torchrl.modules.make_qvalue_ensemble`)."""
        from ppl_torchrl.modules import make_qvalue_ensemble

        return make_qvalue_ensemble(obs_dim, act_dim, num_qvalue_nets=self.num_qvalue_nets, hidden_dim=self.hidden_dim,
                                    num_hidden=self.num_hidden, device=device, activation=self.activation,
                                    init=self.init)

    def potential(self, obs_dim: int, act_dim: int, device=None):
        """The potential ``f(s, a) <= 0`` (:func:`ppl_torchrl.modules.make_potential`)."""
        from ppl_torchrl.modules import make_potential

        return make_potential(obs_dim, act_dim, hidden_dim=self.hidden_dim, num_hidden=self.num_hidden, device=device,
                              activation=self.potential_activation or self.activation, init=self.init)


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


#: the partial-OT potential's switches (:class:`~ppl_torchrl.objectives.PartialOT`'s keyword arguments beyond ``w``)
POTENTIAL_SWITCHES = ("potential_bound", "potential_gp", "potential_lipschitz", "potential_gp_directions",
                      "potential_actor_scale", "potential_actor_coef", "w_anneal_steps", "saturation_penalty")
#: the loss file's ``temperature`` of each loss that reads one (IQL's advantage temperature, CQL's entropy
#: temperature): one key in the Hydra files, two meanings
_TEMPERATURE = {"iql": 3.0, "ppl_iql": 3.0, "cql": 1.0, "ppl_cql": 1.0}


@dataclass(frozen=True)
class LossConfig:
    """The ``loss`` section: which loss (``name``, one of :data:`~ppl_torchrl.training.algorithms.LOSSES`) and its
    settings, each read by the losses its comment names; every default is the loss file's
    (``recipes/config/loss/<name>.yaml``), or for the potential's switches :class:`~ppl_torchrl.objectives.PartialOT`'s
    (the authors' code). ``LossConfig("ppl", actor_bc_coef=1e-2)`` is PPL^R with that BC weight."""

    name: str
    # ReBRAC and PPL^R (loss/rebrac.yaml; the BC weights are per-dataset hparams); the noise also TD3+BC's
    actor_bc_coef: float = 1e-3
    critic_bc_coef: float = 5e-4
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    normalize_q: bool = True
    critic_next_action: str = "policy"  # policy (ReBRAC, PPL^R) | dataset (SARSA-style Q^beta)
    validate_inputs: bool = True
    # the partial-OT potential: every ppl* loss (loss/ppl.yaml)
    w: float = 8.0
    potential_uses_target_actor: bool | None = None  # None: the base loss's target actor where it keeps one
    potential_bound: float | None = None
    potential_gp: float = 0.0
    potential_lipschitz: float = 1.0
    potential_gp_directions: str = "segment"  # segment | all
    potential_actor_scale: str = "none"
    potential_actor_coef: float = 1.0
    potential_steps: int = 1  # f-steps per actor step
    w_anneal_steps: int = 0
    saturation_penalty: float = 0.0  # the actor's penalty beyond tanh's flat edge
    # TD3+BC (loss/td3_bc.yaml)
    alpha: float = 2.5
    # IQL (loss/iql.yaml) and CQL (loss/cql.yaml, CORL's AntMaze settings)
    temperature: float | None = None  # None: the loss's own (IQL 3.0, CQL 1.0)
    expectile: float = 0.7
    q_num_hidden: int = 5  # CQL's critic depth
    min_q_weight: float = 5.0
    with_lagrange: bool = True
    lagrange_thresh: float = 0.8
    num_random: int = 10
    max_q_backup: bool = True
    deterministic_backup: bool = True
    # the one-step setting's Q^beta (recipes/config/onestep.yaml)
    conservative_weight: float = 0.0

    def __post_init__(self):
        if self.temperature is None and self.name in _TEMPERATURE:
            object.__setattr__(self, "temperature", _TEMPERATURE[self.name])

    def potential_settings(self) -> dict:
        """The potential's switches, as :class:`~ppl_torchrl.objectives.PartialOT` takes them."""
        return {k: getattr(self, k) for k in POTENTIAL_SWITCHES}

    @classmethod
    def from_config(cls, section) -> "LossConfig":
        """From the ``loss`` section: its keys of the same names (those absent keep the defaults; the keys that are no
        algorithm's, such as ``reward_family``, are the data's)."""
        if "name" not in section:
            raise ConfigError("the config lacks loss.name.")
        return cls(**{f.name: section[f.name] for f in fields(cls) if f.name in section})


@dataclass(frozen=True)
class CompileConfig:
    """How the update runs (``compile`` section, resolved: ``compile.enabled=auto`` has become ``enabled`` with
    ``fallback``; :func:`~ppl_torchrl.training.algorithms.compile_config`). None of it changes the math."""

    enabled: bool = False  # torch.compile the update
    mode: str | None = None  # torch.compile mode
    backend: str = "inductor"
    cudagraphs: bool = False  # CUDA: replay the compiled PPL^R/ReBRAC update as a CUDA graph
    fallback: bool = False  # a failed compilation falls back to the eager update with a warning (auto); else raises
