"""How :class:`~ppl_torchrl.objectives.PartialOT` is put together around its base loss, apart from its math: the
checks of its settings, its tensordict keys (the base's plus the potential's), the properties that present the
base's attributes, the state-dict hooks that keep checkpoints in the base's own names, and how a target updater
is declared on a loss through TorchRL's public API."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, make_dataclass

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import HardUpdate, LossModule

POTENTIAL_OUT_KEYS = ["loss_potential", "potential_policy", "potential_data", "potential_actor"]

#: how ``f(s, pi(s))`` is weighted in the actor's term (docs/algorithm.md, "A potential that stays alive")
ACTOR_SCALES = ("none", "q", "self")
#: which of f's slopes the gradient penalty bounds: along the policy-to-data segment only, or in every direction
GP_DIRECTIONS = ("segment", "all")
#: an action component beyond this (in absolute value, in [-1, 1] units) sits where tanh's slope is below 0.02: (almost)
#: no gradient from any loss reaches a tanh actor's weights through it (the probe counts these; the saturation penalty
#: starts here)
SATURATED = 0.99
#: the pre-tanh value of an action component at the edge :data:`SATURATED`
SATURATION_EDGE = math.atanh(SATURATED)


def _check_q_scale(base_loss, scale: str) -> None:
    """``potential_actor_scale='q'`` weighs f like the base actor loss's normalised Q term: ReBRAC's (``actor_terms``)
    or TorchRL's TD3+BC's; other bases have none."""
    from torchrl.objectives import TD3BCLoss

    if scale == "q" and not (hasattr(base_loss, "actor_terms") or isinstance(base_loss, TD3BCLoss)):
        raise ValueError(f"potential_actor_scale='q' scales f like the normalised Q term of a ReBRAC or TD3+BC actor "
                         f"loss; {type(base_loss).__name__} has none: use 'none' or 'self'.")


def _real(name: str, value, low: float, *, strict: bool = False, meaning: str = "") -> float:
    """``value`` as a float; a one-line ``ValueError`` unless it is a finite real number (numpy's too, not a bool)
    ``>= low`` (``> low`` if ``strict``)."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and (value > low if strict else value >= low)):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}{meaning}, got {value!r}.")
    return float(value)


def _check_settings(potential_bound, potential_gp, potential_lipschitz, potential_actor_scale, potential_actor_coef,
                    w_anneal_steps, potential_gp_directions="segment", saturation_penalty=0.0) -> None:
    if potential_bound is not None:
        _real("potential_bound", potential_bound, 0.0, strict=True,
              meaning=" (f lies in [-bound, 0]; None: unbounded)")
    _real("potential_gp", potential_gp, 0.0, meaning=" (the gradient-penalty weight; 0 turns it off)")
    _real("potential_lipschitz", potential_lipschitz, 0.0, strict=True,
          meaning=" (the action-gradient norm f may reach unpenalised)")
    if potential_gp_directions not in GP_DIRECTIONS:
        raise ValueError(f"potential_gp_directions must be one of {GP_DIRECTIONS} (the slope along the policy-to-data "
                         f"segment, or the whole action gradient), got {potential_gp_directions!r}.")
    if potential_actor_scale not in ACTOR_SCALES:
        raise ValueError(f"potential_actor_scale must be one of {ACTOR_SCALES}, got {potential_actor_scale!r}.")
    _real("potential_actor_coef", potential_actor_coef, 0.0)
    _real("saturation_penalty", saturation_penalty, 0.0,
          meaning=" (the actor's penalty beyond tanh's flat edge; 0 turns it off)")
    if not (isinstance(w_anneal_steps, numbers.Integral) and not isinstance(w_anneal_steps, bool)
            and w_anneal_steps >= 0):
        raise ValueError(f"w_anneal_steps must be an integer >= 0 (0: w from the first step), got {w_anneal_steps!r}.")


def check_w(w: float) -> float:
    """``w`` as a float; a ``ValueError`` saying what it means unless it is a finite number >= 1."""
    if not (isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w) and w >= 1.0):
        raise ValueError(
            f"w (the unbalance coefficient) must be >= 1 (a finite number), got {w!r}: the policy maps onto the best "
            "1/w share of the data (w = 1 is behaviour cloning; the paper uses 3-12, 8 by default)."
        )
    return float(w)


@dataclass
class _PotentialKeys:
    """The keys the potential adds: ``potential`` (what the potential network writes) and ``action`` (the
    dataset action, also the key the actor writes and ``f`` reads)."""

    action: NestedKey = "action"
    potential: NestedKey = "potential"


def _accepted_keys(base_keys: type) -> type:
    """The base loss's ``_AcceptedKeys`` plus the potential's keys (one dataclass, so ``set_keys`` names all)."""
    own = {f.name for f in fields(base_keys)}
    extra = [(f.name, NestedKey, field(default=f.default)) for f in fields(_PotentialKeys) if f.name not in own]
    return make_dataclass(f"{base_keys.__qualname__.split('.')[0]}PartialOTKeys", extra, bases=(base_keys,))


def _on_base(name: str, doc: str, settable: bool = False) -> property:
    """The base loss's attribute ``name`` as a property of the composed loss: read (and, if ``settable``, written)
    on the base, where its terms read it. Where the base has none, an ``AttributeError`` (so ``hasattr`` tells)."""

    def get(self):
        return getattr(self.base, name)

    def set_(self, value):
        if not hasattr(self.base, name):
            raise AttributeError(f"{type(self.base).__name__} has no {name!r}: there is nothing to set.")
        setattr(self.base, name, value)

    return property(get, set_ if settable else None, doc=doc)


class PresentsBase:
    """What :class:`~ppl_torchrl.objectives.PartialOT` shows of its base loss (a mixin placed before ``LossModule``):
    the base's networks and settings as properties read, and where settable written, on the base, where its terms read
    them; its critic and state-value terms unchanged; and a clear error for any other base attribute read or set on the
    composed loss, which would otherwise be missing or become a copy that no term reads."""

    # The base loss's terms read these on the base: each property reads (settings: and writes) the base's own.
    actor_network = _on_base("actor_network", "The base's actor (stateless: its weights are actor_network_params).")
    qvalue_network = _on_base("qvalue_network", "The base's critic (stateless: weights in qvalue_network_params).")
    value_network = _on_base("value_network", "IQL's state-value network (weights in value_network_params).")
    log_alpha = _on_base("log_alpha", "CQL's entropy coefficient, log scale (a parameter of the base).")
    log_alpha_prime = _on_base("log_alpha_prime", "CQL's Lagrange multiplier, log scale (with_lagrange=True).")
    min_action = _on_base("min_action", "The action bounds' lower end (a buffer of the base).")
    max_action = _on_base("max_action", "The action bounds' upper end (a buffer of the base).")
    delay_actor = _on_base("delay_actor", "Whether the base keeps a target actor.")
    delay_qvalue = _on_base("delay_qvalue", "Whether the base keeps target critics.")
    critic_objective = _on_base("critic_objective", "ReBRAC's critic objective on explicit parameters.")
    qvalues = _on_base("qvalues", "ReBRAC's ensemble values Q_i(s, action) on explicit parameters.")
    target_noise = _on_base("target_noise", "ReBRAC's target-policy smoothing noise (one global-RNG draw).")
    check_actor_inputs = _on_base("check_actor_inputs", "ReBRAC's check of what its actor term reads.")
    reduction = _on_base("reduction", "How every term is reduced: 'mean', 'sum' or 'none'.", settable=True)
    use_prioritized_weights = _on_base("use_prioritized_weights", "Whether the terms weight samples by "
                                       "priority_weight ('auto', True, False).", settable=True)
    deterministic_sampling_mode = _on_base("deterministic_sampling_mode", "The exploration type the terms run under.",
                                           settable=True)
    actor_bc_coef = _on_base("actor_bc_coef", "ReBRAC's actor BC weight (fine-tuning decays it).", settable=True)
    critic_bc_coef = _on_base("critic_bc_coef", "ReBRAC's critic next-action penalty weight.", settable=True)
    policy_noise = _on_base("policy_noise", "Target-policy smoothing noise scale (ReBRAC, TD3+BC).", settable=True)
    noise_clip = _on_base("noise_clip", "Target-policy smoothing noise clip (ReBRAC, TD3+BC).", settable=True)
    normalize_q = _on_base("normalize_q", "ReBRAC's lambda = 1 / mean |Q| (True) or 1.", settable=True)
    critic_next_action = _on_base("critic_next_action", "ReBRAC's next action: 'policy' or 'dataset'.", settable=True)
    validate_inputs = _on_base("validate_inputs", "ReBRAC's input checks (the potential's too).", settable=True)
    alpha = _on_base("alpha", "TD3+BC's Q weight (CQL's entropy coefficient, read only there).", settable=True)

    @property
    def loss_mask_key(self):
        """Which input entry marks the positions that count (TorchRL's ``"auto"``, a key, or ``None``): the base's."""
        return self.base.loss_mask_key

    @loss_mask_key.setter
    def loss_mask_key(self, value) -> None:
        self.base.loss_mask_key = value
        LossModule.loss_mask_key.fset(self, value)  # the potential's terms reduce here (see __init__)

    def qvalue_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """The base loss's critic term, unchanged."""
        return self.base.qvalue_loss(tensordict)

    def value_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """The base loss's state-value term (IQL), unchanged."""
        return self.base.value_loss(tensordict)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError as missing:
            try:
                base = super().__getattr__("base")
            except AttributeError:
                raise missing from None
            if name.startswith("_") or not hasattr(base, name):
                raise missing
            raise AttributeError(f"{type(self).__name__} does not present {type(base).__name__}'s {name!r}: "
                                 f"read loss.base.{name}.") from None

    def __setattr__(self, name: str, value) -> None:
        # A setting of the base that this loss does not present would become a copy here that no term reads (how
        # fine-tuning's BC decay was once lost): refused, with where to set it.
        if not name.startswith("_") and name not in self.__dict__ and not hasattr(type(self), name):
            base = getattr(self, "base", None)
            if base is not None and hasattr(base, name):
                raise AttributeError(f"{name!r} is {type(base).__name__}'s and its terms read it there: set "
                                     f"loss.base.{name} instead.")
        super().__setattr__(name, value)


def _state_dict_flat(module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """``state_dict`` post-hook: the base's entries under the base's own names (``actor_network_params.*``, not
    ``base.actor_network_params.*``), once each. A composed checkpoint is the base's plus the potential's, as it
    was before the base became a submodule, so older checkpoints and the base's own keep loading."""
    head = prefix + "base."
    ours = [(key, state_dict.pop(key)) for key in list(state_dict) if key.startswith(prefix)]
    for key, value in ours:
        state_dict.setdefault(prefix + key[len(head):] if key.startswith(head) else key, value)


def _state_dict_nested(module, state_dict: dict, prefix: str, *_) -> None:
    """``load_state_dict`` pre-hook, the inverse of :func:`_state_dict_flat`: each entry of the base also under
    ``base.`` (parameter groups, which are this module's children too) or only there (the base's other entries)."""
    groups = set(module.base_parameter_groups)
    own = {name for name, _ in module.named_children()} - groups - {"base"}
    own |= {name for name, _ in module.named_parameters(recurse=False)}
    own |= {name for name, _ in module.named_buffers(recurse=False)}
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key[len(prefix):]
        top = name.split(".", 1)[0]
        if top == "base" or top in own:
            continue
        value = state_dict[key] if top in groups else state_dict.pop(key)
        state_dict.setdefault(prefix + "base." + name, value)


def adopt_groups(loss: LossModule, base_loss: LossModule, groups: dict) -> None:
    """Make the base loss's parameter groups children of the composed ``loss`` too, under their own names, then
    register the base.

    TorchRL finds a loss's networks among its direct children named ``<net>_params`` / ``target_<net>_params``
    (``SoftUpdate`` finds targets by those names): here they are the base's own modules. They are registered before
    the base, so ``named_parameters()`` keeps the base's names. TorchRL's record of which targets an updater moves
    gains an entry per network only through ``convert_to_functional``: one per base network with a target, whose
    new groups are then replaced by the base's. ``SoftUpdate(loss)`` marks those entries, and until then TorchRL
    warns on the composed loss as on any other. The base's terms read its targets on the base, which warns until
    an updater is built on the base: the composed loss owns the base and its record speaks for both, so the base's
    is marked once, here.
    """
    for name in groups:
        if f"target_{name}" in groups:
            network = name[:-len("_params")]
            loss.convert_to_functional(getattr(base_loss, network), network, create_target_params=True)
    converted = {name for name, _ in loss.named_children()} | set(vars(loss))
    for name, module in groups.items():
        if name in converted:
            delattr(loss, name)  # the converted copy: the base's group takes its place, in the base's order
        setattr(loss, name, module)
    loss.base = base_loss
    declare_target_updater(base_loss)


def declare_target_updater(loss: LossModule) -> None:
    """Tell TorchRL that something moves ``loss``'s target parameters, and leave them as they are.

    Until a target updater is built on a loss, TorchRL warns at every read of its targets that nothing moves them;
    building one (``SoftUpdate``, ``HardUpdate``) is the only public way to say otherwise. Their constructor also
    copies the online weights into the targets, which would undo a loaded or composed loss's targets: they are
    saved before and put back after. A loss without target parameters needs nothing.
    """
    # target networks' parameters only, not other buffers named target_* (CQLLoss's target_entropy_buffer)
    targets = [buffer for name, buffer in loss.named_buffers()
               if name.split(".")[0].startswith("target_") and name.split(".")[0].endswith("_params")]
    if not targets:
        return
    saved = [buffer.detach().clone() for buffer in targets]
    HardUpdate(loss)
    with torch.no_grad():
        for buffer, value in zip(targets, saved):
            buffer.copy_(value)


def set_diagnostics(out, base_loss: LossModule, values: dict) -> None:
    """Sets the potential's detached diagnostics (0-d means) in ``out``. With ``reduction="none"`` some TorchRL losses
    (IQL, CQL) return an output with the batch's dimensions, which a 0-d value cannot enter: as the base does with its
    own scalars, they are left out, or stored as non-tensor data under ``scalar_output_mode="non_tensor"``."""
    for key, value in values.items():
        if value.ndim or not out.batch_dims:
            out.set(key, value)
        elif getattr(base_loss, "scalar_output_mode", None) == "non_tensor":
            out.set_non_tensor(key, value)

