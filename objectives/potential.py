r"""The partial-OT potential as one piece that adds to any actor loss: :class:`PartialOT`.

PPL's partial transport (Asadulaev et al., NeurIPS 2024, eq. 12; sign convention and deviations in
:mod:`ppl_torchrl.objectives.partial_ot`) adds two things to an offline RL objective with an actor:

* to the actor's term, :math:`-\,\text{mean}_s f(s, \pi(s))` (``f`` frozen, differentiable in the action);
* the f-step ``loss_potential`` :math:`= \text{mean}_s f(s, \bar\pi(s)) - w\,\text{mean}_{(s,a)} f(s, a)`, on the base
  loss's target actor :math:`\bar\pi` where it keeps one (the authors' code), else its online actor (detached).

:class:`PartialOT` holds a base TorchRL loss (``TD3BCLoss``, ``CQLLoss``, ``IQLLoss``, our ``ReBRACLoss``, ...) as
its submodule ``base``, without subclassing it, and returns every term of it unchanged except ``loss_actor``. The
base's parameter groups are children of the composed loss too (``_composition.adopt_groups``), so optimizers,
``SoftUpdate(composed)`` and checkpoints (in the base's own names, plus ``potential_network_params``) work as on the
base. Any attribute of the base that is not a property here is ``loss.base.<name>`` (assigning it on the composed
loss raises rather than leave a copy no term reads).

**Which action** :math:`\pi(s)`: a deterministic actor's output; for a probabilistic actor (one with ``get_dist``,
e.g. TorchRL's ``ProbabilisticActor`` with ``TanhNormal``) a reparameterised sample ``dist.rsample()`` (a fresh draw
from the global RNG, not the base loss's), so the gradient of ``-f`` reaches the distribution's parameters: for CQL
the kind of action its Q term uses. IQL's actor term (AWR, :math:`-\exp(\beta A(s, a))\log\pi(a|s)` on *data*
actions) never evaluates :math:`\pi(s)`: the potential adds a reparameterised term that pushes the sampled action
out of the regions where ``f`` is very negative (where the policy puts more than ``w`` times the data's mass),
restricting the policy to the best ``1/w`` share of the data while AWR weights data actions by their advantage.

**Where the term enters.** If the base loss exposes per-sample actor terms (``actor_terms``, as
:class:`~ppl_torchrl.objectives.ReBRACLoss` does), ``-f`` is added per sample before the reduction and the
functional methods ``actor_objective`` / ``potential_objective`` of the compiled update exist; otherwise it is added
to the base's reduced ``loss_actor``. Priority weights, where the base reads them, weigh it and the f-step as they
weigh the base's terms. Either way ``forward`` computes the base's actor term once.
"""
from __future__ import annotations

from dataclasses import fields

import torch
from tensordict import TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule, dispatch
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives.common import LossModule

from ._checks import check_actor_width, check_batch, check_separate_networks
from ._composition import (POTENTIAL_OUT_KEYS, _accepted_keys, _check_q_scale, _check_settings,
                           _PotentialKeys, PresentsBase, SATURATION_EDGE, _state_dict_flat, _state_dict_nested,
                           adopt_groups, check_w, set_diagnostics)
from ._networks import network_output


class PartialOT(PresentsBase, LossModule):
    r"""A base loss with an actor, plus the partial-OT potential ``f`` (PPL), composed without subclassing.

    Returns every term of ``base_loss`` with ``loss_actor`` replaced by ``loss_actor - mean f(s, pi(s))``, plus
    ``loss_potential`` (the f-step ``mean f(s, pi_bar(s)) - w mean f(s, a)``) and the detached diagnostics
    ``potential_policy``, ``potential_data`` (means of ``f`` on the f-step's policy and data actions) and
    ``potential_actor`` (mean ``f(s, pi(s))`` in the actor term). ``loss_potential``'s gradient reaches only
    the potential; the added actor term's only the actor. See the module docstring for the action used and
    what the term means for each base.

    Args:
        base_loss: a TorchRL loss with an ``actor_network`` (deterministic, or probabilistic with
            ``get_dist``) and an ``actor_loss`` method; its optimizers, target updater and value estimator
            are set up on the composed loss as on the base.
        potential_network: ``f(s, a) <= 0`` reading the observation keys and ``action``, writing
            ``potential`` (:func:`ppl_torchrl.modules.make_potential`).

    Keyword Args:
        w (float): unbalance coefficient, >= 1: the policy maps onto the best ``1/w`` share of the data.
        potential_uses_target_actor (bool or None): the f-step on the base's target actor (the authors' code)
            or on its online actor (detached); ``None``: the target actor where the base keeps one
            (``TD3BCLoss``, ``ReBRACLoss``), else the online one (``CQLLoss``, ``IQLLoss``).

    The switches below make the dual problem well-posed (derivations in docs/algorithm.md, "A potential that
    stays alive"); their defaults are the authors' code, bit for bit:

        potential_bound (float or None): ``f = bound * tanh(f_net / bound)``, so ``f`` lies in ``[-bound, 0]``
            (tanh reaches -1 in floating point; ``None``: unbounded, ``f = f_net``). The dual of an L1 penalty on the
            policy's excess mass.
        potential_gp (float): weight of a one-sided penalty on ``f``'s action gradient in the f-step,
            ``potential_gp * mean(relu(|grad_a f| - potential_lipschitz)^2)`` on the segment between the f-step's
            policy and data actions (BRAC's dual-critic penalty; 0: off). Keeps ``f`` near
            ``potential_lipschitz``-Lipschitz in the action.
        potential_lipschitz (float): the action-gradient norm the penalty allows.
        potential_gp_directions (str): the slope the penalty bounds: ``"segment"`` (along the policy-to-data direction)
            or ``"all"`` (f's whole action gradient, WGAN-GP's: the slope across that segment too).
        potential_actor_scale (str): the weight of ``f(s, pi(s))`` in the actor's term: ``"none"`` (1, the
            authors'), ``"q"`` (the Q term's own weight, ReBRAC's ``lambda = 1 / mean|Q|``, TD3+BC's
            ``alpha / mean|Q|``: both terms of the Lagrangian ``-Q - f`` scaled alike; those two bases only) or
            ``"self"`` (``1 / mean|f(s, pi(s))|``, detached: the f term is O(1) whatever f's scale, as TD3+BC
            normalises Q).
        potential_actor_coef (float): a multiplier of that weight.
        w_anneal_steps (int): ``w`` grows linearly from 1 to ``w`` over this many steps (extremal OT's schedule;
            :meth:`set_training_step`); 0: ``w`` throughout.
        saturation_penalty (float): weight of a penalty in the actor's term on each action component's pre-tanh
            value beyond tanh's flat edge (:meth:`saturation`), which no other term's gradient crosses (0: off).

    The base loss is ``loss.base``. Its parameter groups are children here too (``loss.actor_network_params``, ...;
    ``base_parameter_groups`` names them). Properties of this loss, each present where the base has it: the networks
    ``actor_network``, ``qvalue_network``, ``value_network``; ``log_alpha``, ``log_alpha_prime``, ``min_action``,
    ``max_action``, ``delay_actor``, ``delay_qvalue``; ReBRAC's ``critic_objective``, ``qvalues``, ``target_noise``,
    ``check_actor_inputs``; read and written on the base, ``reduction``, ``use_prioritized_weights``,
    ``loss_mask_key``, ``deterministic_sampling_mode``, ``actor_bc_coef``, ``critic_bc_coef``, ``policy_noise``,
    ``noise_clip``, ``normalize_q``, ``critic_next_action``, ``validate_inputs``, ``alpha``. ``qvalue_loss``,
    ``value_loss``, ``vmap_randomness``, ``set_vmap_randomness`` and ``reset_parameters_recursive`` reach it. Keys:
    the base's ``_AcceptedKeys`` plus ``potential`` (``set_keys`` sets both); ``make_value_estimator`` and
    ``value_estimator`` are the base's.

    Examples:
        >>> from torchrl.objectives import TD3BCLoss, SoftUpdate
        >>> from ppl_torchrl.modules import make_actor, make_potential
        >>> from ppl_torchrl.objectives import PartialOT
        >>> from torchrl.modules import MLP, ValueOperator
        >>> actor = make_actor(17, 6)
        >>> critic = ValueOperator(MLP(in_features=23, out_features=1, num_cells=[256, 256]),
        ...                        in_keys=["observation", "action"])
        >>> loss = PartialOT(TD3BCLoss(actor, critic, bounds=(-1.0, 1.0)), make_potential(17, 6), w=8.0)
        >>> loss.make_value_estimator(gamma=0.99)  # doctest: +ELLIPSIS
        PartialOT(...)
        >>> updater = SoftUpdate(loss, tau=5e-3)
    """

    _AcceptedKeys = _PotentialKeys
    default_keys = _PotentialKeys
    base: LossModule
    potential_network: TensorDictModule
    potential_network_params: TensorDictParams
    target_potential_network_params: TensorDictParams  # never created: f has no target (authors' code unused it)
    # the base's networks with a target, declared as TorchRL's convert_to_functional expects (adopt_groups)
    actor_network: TensorDictModule
    qvalue_network: TensorDictModule
    actor_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    qvalue_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams

    def __init__(self, base_loss: LossModule, potential_network: TensorDictModule, *, w: float = 8.0,
                 potential_uses_target_actor: bool | None = None, potential_bound: float | None = None,
                 potential_gp: float = 0.0, potential_lipschitz: float = 1.0, potential_actor_scale: str = "none",
                 potential_actor_coef: float = 1.0, w_anneal_steps: int = 0,
                 potential_gp_directions: str = "segment", saturation_penalty: float = 0.0) -> None:
        w = check_w(w)
        _check_settings(potential_bound, potential_gp, potential_lipschitz, potential_actor_scale, potential_actor_coef,
                        w_anneal_steps, potential_gp_directions, saturation_penalty)
        if not isinstance(base_loss, LossModule):
            raise TypeError(f"base_loss must be a TorchRL LossModule, got {type(base_loss).__name__}.")
        _check_q_scale(base_loss, potential_actor_scale)
        check_separate_networks(type(self).__name__, base_loss=base_loss, potential_network=potential_network)
        groups = {name: module for name, module in base_loss.named_children() if name.endswith("_params")}
        groups.update({name: value for name, value in vars(base_loss).items()  # a parameter-free network's (fixed
                       if name.endswith("_params") and isinstance(value, TensorDictBase)})  # critic's): a plain TD
        if "actor_network_params" not in groups or not hasattr(base_loss, "actor_loss"):
            raise ValueError(f"{type(base_loss).__name__} has no actor (actor_network_params and actor_loss): the potential "
                             "adds to an actor's term, so the base loss must train one.")
        has_target_actor = "target_actor_network_params" in groups
        if potential_uses_target_actor is None:
            potential_uses_target_actor = has_target_actor
        elif potential_uses_target_actor and not has_target_actor:
            raise ValueError(f"potential_uses_target_actor=True, but {type(base_loss).__name__} keeps no target actor "
                             "(create it with delay_actor=True) - or pass False / None to use the online actor.")
        super().__init__()
        self.w = w
        self.potential_uses_target_actor = bool(potential_uses_target_actor)
        self.potential_bound = None if potential_bound is None else float(potential_bound)
        self.potential_gp, self.potential_lipschitz = float(potential_gp), float(potential_lipschitz)
        self.potential_gp_directions = potential_gp_directions
        self.potential_actor_scale, self.potential_actor_coef = potential_actor_scale, float(potential_actor_coef)
        self.w_anneal_steps, self.saturation_penalty = int(w_anneal_steps), float(saturation_penalty)
        # The w the f-step uses now: a tensor updated in place (set_training_step), so a compiled update reads the
        # new value without recompiling; recomputed from the step, so not saved (resume recomputes it).
        self.register_buffer("w_now", torch.tensor(1.0 if self.w_anneal_steps else w), persistent=False)
        self.base_parameter_groups = tuple(groups)
        adopt_groups(self, base_loss, groups)
        self.convert_to_functional(potential_network, "potential_network", create_target_params=False)
        # TorchRL's reduction reads the mask setting of the module that reduces: the potential's terms reduce here.
        LossModule.loss_mask_key.fset(self, base_loss.loss_mask_key)
        self._selected_out_keys = None
        self._actor_width: int | None = None  # how many action features the actor writes (first checked batch)
        self.default_keys = _accepted_keys(type(base_loss.tensor_keys))
        self._composed_keys = self.default_keys(**{f.name: getattr(base_loss.tensor_keys, f.name)
                                                   for f in fields(type(base_loss.tensor_keys))})
        self.register_state_dict_post_hook(_state_dict_flat)
        self.register_load_state_dict_pre_hook(_state_dict_nested)

    @property
    def w(self) -> float:
        """The unbalance coefficient, >= 1 (checked on every assignment): the policy maps onto the best ``1/w`` share
        of the data; with ``w_anneal_steps`` the value the schedule reaches."""
        return self._w

    @w.setter
    def w(self, value) -> None:
        self._w = check_w(value)

    # ------------------------------------------------------------------ TorchRL's loss conventions, on the base
    @property
    def tensor_keys(self):
        """The base loss's keys and the potential's (set with :meth:`set_keys`)."""
        return self._composed_keys

    def set_keys(self, **kwargs) -> None:
        base_fields = {f.name for f in fields(type(self.base.tensor_keys))}
        unknown = [k for k in kwargs if k not in self.default_keys.__dataclass_fields__]
        if unknown:
            raise ValueError(f"{unknown[0]} is not an accepted tensordict key. Accepted keys are: "
                             f"{sorted(self.default_keys.__dataclass_fields__)}.")
        base_kwargs = {k: v for k, v in kwargs.items() if k in base_fields}
        if base_kwargs:
            self.base.set_keys(**base_kwargs)
        for key, value in kwargs.items():
            if key in base_fields:
                value = getattr(self.base.tensor_keys, key)
            elif value is None:
                value = getattr(self.default_keys(), key)
            setattr(self.tensor_keys, key, value)

    @property
    def in_keys(self):
        return list(dict.fromkeys([*self.base.in_keys, *self.potential_network.in_keys]))

    @property
    def out_keys(self):
        """The base's out keys and the potential's, or those chosen with ``select_out_keys``."""
        if self._selected_out_keys is not None:
            return self._selected_out_keys
        return list(dict.fromkeys([*self.base.out_keys, *POTENTIAL_OUT_KEYS]))

    @out_keys.setter
    def out_keys(self, values) -> None:
        self._selected_out_keys = list(values)

    def make_value_estimator(self, value_type=None, **hyperparams):
        """The base loss's value estimator (the potential needs none)."""
        self.base.make_value_estimator(value_type, **hyperparams)
        self.value_type = self.base.value_type
        return self

    @property
    def value_estimator(self):
        return self.base.value_estimator

    @value_estimator.setter
    def value_estimator(self, value) -> None:
        self.base.value_estimator = value

    @property
    def vmap_randomness(self):
        """The base's vmap randomness mode (the base vmaps its networks; the potential is never vmapped)."""
        return self.base.vmap_randomness

    def set_vmap_randomness(self, value) -> None:
        self.base.set_vmap_randomness(value)

    def reset_parameters_recursive(self) -> None:
        """Re-initialises every network: the base's and their targets (by the base), then the potential."""
        self.base.reset_parameters_recursive()
        with self.potential_network_params.to_module(self.potential_network, preserve_module_state=False):
            self.potential_network.reset_parameters_recursive()

    # ------------------------------------------------------------------ network calls
    def policy_action(self, tensordict: TensorDictBase, actor_params) -> torch.Tensor:
        """The actor's action ``pi(s)`` with ``actor_params``: a deterministic actor's output, or a
        reparameterised sample of a probabilistic actor's distribution."""
        actor = self.actor_network
        if not hasattr(actor, "get_dist"):
            return network_output(actor, actor_params, tensordict, self.tensor_keys.action)
        td = tensordict.select(*actor.in_keys, strict=False)
        with actor_params.to_module(actor, preserve_module_state=False), set_exploration_type(ExplorationType.RANDOM):
            return actor.get_dist(td).rsample()

    def potential(self, tensordict: TensorDictBase, action: torch.Tensor, potential_params) -> torch.Tensor:
        """``f(s, action)`` with ``potential_params``, shape ``[*B]``; in ``[-potential_bound, 0]`` when bounded."""
        f = network_output(self.potential_network, potential_params, tensordict, self.tensor_keys.potential,
                           replace={self.tensor_keys.action: action}).squeeze(-1)
        if self.potential_bound is not None:
            # tanh keeps f's slope where f is small (the unbounded head's) and flattens it only near the bound
            f = self.potential_bound * torch.tanh(f / self.potential_bound)
        return f

    def saturation(self, action: torch.Tensor) -> torch.Tensor:
        """Per sample, ``sum_i relu(|atanh(u_i)| - atanh(0.99))^2`` with ``u`` the action rescaled to ``[-1, 1]``
        by the base's bounds (``[-1, 1]`` where it has none): the pre-tanh value beyond ``|u| = 0.99``. Its gradient
        on the pre-tanh value does not vanish where tanh's does (docs/algorithm.md)."""
        low, high = getattr(self.base, "min_action", -1.0), getattr(self.base, "max_action", 1.0)
        unit = ((2 * action - (high + low)) / (high - low)).clamp(-1 + 1e-6, 1 - 1e-6)
        return (torch.atanh(unit).abs() - SATURATION_EDGE).clamp_min(0.0).pow(2).sum(-1)

    def set_training_step(self, step: int) -> None:
        """The annealed ``w`` at training step ``step``: ``1 + (w - 1) min(1, step / w_anneal_steps)`` (a no-op
        without annealing). The updates call it before each step."""
        if step < 0:
            raise ValueError(f"set_training_step takes the number of training steps done, >= 0; got {step}.")
        if self.w_anneal_steps:
            self.w_now.fill_(1.0 + (self.w - 1.0) * min(1.0, step / self.w_anneal_steps))

    def _added_terms(self, f_actor: torch.Tensor, policy_action: torch.Tensor, metadata: dict) -> dict:
        """The per-sample terms the potential adds to the actor's: ``"f"``, ``-weight f(s, pi(s))`` with the detached
        weight of ``potential_actor_scale``, and ``"saturation"`` where the penalty is on."""
        weight = self.potential_actor_coef
        if self.potential_actor_scale == "q":  # the Q term's own weight, detached: ReBRAC's "lmbda", TD3BCLoss's "lmbd"
            weight = weight * (metadata["lmbda"] if "lmbda" in metadata else metadata["lmbd"])
        elif self.potential_actor_scale == "self":
            weight = weight / f_actor.detach().abs().mean().clamp_min(1e-8)
        added = {"f": -f_actor if isinstance(weight, float) and weight == 1.0 else -weight * f_actor}
        if self.saturation_penalty > 0:
            added["saturation"] = self.saturation_penalty * self.saturation(policy_action)
        return added

    # ------------------------------------------------------------------ the math, on explicit parameters
    def actor_terms(self, tensordict: TensorDictBase, actor_params, critic_params,
                    potential_params) -> tuple[dict, torch.Tensor, dict]:
        """The base's per-sample signed actor terms plus ``"f"``: ``-f(s, pi(s))`` (their sum is the per-sample
        actor objective), the policy action and diagnostics. Needs a base with ``actor_terms``."""
        terms, policy_action, metadata = self.base.actor_terms(tensordict, actor_params, critic_params)
        f_actor = self.potential(tensordict, policy_action, potential_params)
        terms.update(self._added_terms(f_actor, policy_action, metadata))
        metadata["potential_actor"] = f_actor.detach().mean()
        return terms, policy_action, metadata

    def actor_objective(self, tensordict: TensorDictBase, actor_params, critic_params,
                        potential_params) -> tuple[torch.Tensor, dict]:
        """The base's actor objective minus ``f(s, pi(s))``, reduced once (priority weights included); pass
        detached ``critic_params`` and ``potential_params``. Needs a base with ``actor_terms``."""
        terms, _, metadata = self.actor_terms(tensordict, actor_params, critic_params, potential_params)
        values = iter(terms.values())
        objective = next(values)
        for value in values:
            objective = objective + value
        weights = self._maybe_get_priority_weight(tensordict)
        return self._reduce_loss(objective, tensordict=tensordict, weights=weights), metadata

    def _weights(self, tensordict: TensorDictBase):
        """Priority weights where the base reads them (a ``priority_weight`` key): f's terms weigh as the base's."""
        return self._maybe_get_priority_weight(tensordict) if hasattr(self.tensor_keys, "priority_weight") else None

    def potential_objective_on(self, tensordict: TensorDictBase, potential_params,
                               policy_action: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """f-step of eq. 12 with ``f <= 0``: ``mean f(s, policy_action) - w mean f(s, a)`` (``policy_action``
        detached); gradients reach only ``potential_params``."""
        policy_action = policy_action.detach()
        data_action = tensordict.get(self.tensor_keys.action)
        f_policy = self.potential(tensordict, policy_action, potential_params)
        f_data = self.potential(tensordict, data_action, potential_params)
        w = self.w_now if self.w_anneal_steps else self.w
        objective = f_policy - w * f_data
        metadata = {"potential_policy": f_policy.detach().mean(), "potential_data": f_data.detach().mean()}
        if self.potential_gp > 0:
            penalty = self.gradient_penalty(tensordict, potential_params, policy_action, data_action)
            objective = objective + self.potential_gp * penalty
            metadata["potential_gp"] = penalty.detach().mean()
        return self._reduce_loss(objective, tensordict=tensordict, weights=self._weights(tensordict)), metadata

    def gradient_penalty(self, tensordict: TensorDictBase, potential_params, policy_action: torch.Tensor,
                         data_action: torch.Tensor) -> torch.Tensor:
        """Per sample, ``relu(|D_u f(s, a_t)| - potential_lipschitz)^2``, f's slope along ``u`` (policy action to data
        action) at ``a_t = t a + (1 - t) pi(s)``; with ``potential_gp_directions="all"`` the norm of f's whole action
        gradient there instead. Central differences (``h = 1e-2``, along ``u`` or each action axis): first-order
        gradients only, which inductor needs. ``t``: the fractional part of ``0.618.. * (i + 1)`` for sample ``i``, a
        fixed sequence, so eager, compiled and resumed runs share one random stream (docs/algorithm.md)."""
        index = torch.arange(1, policy_action[..., 0].numel() + 1, device=policy_action.device,
                             dtype=policy_action.dtype).reshape(policy_action.shape[:-1] + (1,))
        t = torch.frac(index * 0.6180339887498949)
        between = t * data_action + (1 - t) * policy_action
        gap = data_action - policy_action
        h = 1e-2

        def slope_along(e):
            return (self.potential(tensordict, between + h * e, potential_params)
                    - self.potential(tensordict, between - h * e, potential_params)) / (2 * h)

        if self.potential_gp_directions == "all":
            axes = torch.eye(gap.shape[-1], device=gap.device, dtype=gap.dtype)
            slope = torch.stack([slope_along(e) for e in axes], -1).norm(dim=-1)
        else:
            slope = slope_along(gap / gap.norm(dim=-1, keepdim=True).clamp_min(1e-6)).abs()
        return (slope - self.potential_lipschitz).clamp_min(0.0).pow(2)

    def potential_objective(self, tensordict: TensorDictBase, potential_params, actor_params,
                            target_actor_params) -> tuple[torch.Tensor, dict]:
        """f-step on the target actor's actions (``potential_uses_target_actor``) or the online actor's."""
        policy_params = target_actor_params if self.potential_uses_target_actor else actor_params
        with torch.no_grad():
            policy_action = self.policy_action(tensordict, policy_params)
        return self.potential_objective_on(tensordict, potential_params, policy_action)

    # ------------------------------------------------------------------ losses
    def _potential_required_keys(self):
        return [self.tensor_keys.action, *self.actor_network.in_keys, *self.potential_network.in_keys]

    def _check(self, tensordict: TensorDictBase, name: str, whole_loss: bool = False) -> None:
        """The potential's keys, shapes, finiteness and action width; for the whole loss on a base without checks of
        its own (TorchRL's losses), the base's keys too, so that a missing or NaN entry is this one-line error, not
        a deep one."""
        if getattr(self.base, "validate_inputs", True):
            loss_name = f"{type(self).__name__}.{name}"
            base_keys = list(self.base.in_keys) if whole_loss and not hasattr(self.base, "check_inputs") else []
            check_batch(loss_name, tensordict, [*base_keys, *self._potential_required_keys()])
            # the actor's width is learnt once (getattr: a loss unpickled from before this check has none)
            self._actor_width = check_actor_width(loss_name, self, tensordict, [self.tensor_keys.action],
                                                  getattr(self, "_actor_width", None))

    def check_inputs(self, tensordict: TensorDictBase) -> None:
        """The base loss's checks (where it has them) and the potential's keys, shapes and finiteness."""
        if hasattr(self.base, "check_inputs"):
            self.base.check_inputs(tensordict)
        self._check(tensordict, "check_inputs", whole_loss=True)

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """The base's actor loss minus ``mean f(s, pi(s))`` (``f`` and the critics frozen)."""
        self._check(tensordict, "actor_loss")
        potential_params = self.potential_network_params.detach()
        if hasattr(self.base, "actor_terms"):
            if hasattr(self.base, "check_actor_inputs"):
                self.base.check_actor_inputs(tensordict)
            return self.actor_objective(tensordict, self.actor_network_params,
                                        self.qvalue_network_params.detach(), potential_params)
        loss, metadata = self.base.actor_loss(tensordict)
        return self._add_actor_potential(loss, metadata, tensordict, potential_params)

    def _add_actor_potential(self, loss, metadata, tensordict, potential_params):
        """The base's reduced actor loss plus ``-f(s, pi(s))``, reduced like it (priority weights where the base
        has a priority_weight key)."""
        policy_action = self.policy_action(tensordict, self.actor_network_params)
        f_actor = self.potential(tensordict, policy_action, potential_params)
        metadata = {**metadata, "potential_actor": f_actor.detach().mean()}
        added = sum(self._added_terms(f_actor, policy_action, metadata).values())
        return loss + self._reduce_loss(added, tensordict=tensordict, weights=self._weights(tensordict)), metadata

    def potential_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """f-step ``mean f(s, pi_bar(s)) - w mean f(s, a)``; gradients reach only the potential."""
        self._check(tensordict, "potential_loss")
        target_actor = self.target_actor_network_params if self.potential_uses_target_actor else None
        return self.potential_objective(tensordict, self.potential_network_params, self.actor_network_params.detach(),
                                        None if target_actor is None else target_actor.detach())

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Every term of the base loss, ``loss_actor`` with the potential's, ``loss_potential`` and diagnostics."""
        # before the base reads the batch: our error, not a deep one
        self._check(tensordict, "forward", whole_loss=True)
        if hasattr(self.base, "forward_with"):  # the base's terms with our actor term in place of its own
            out = self.base.forward_with(tensordict, self.actor_loss)
        else:  # a TorchRL loss computes its actor term in forward: the potential's is added to it
            out = self.base(tensordict)
            lmbd = {"lmbd": out.get("lmbd")} if "lmbd" in out.keys() else {}  # TD3BCLoss's Q weight, for scale "q"
            loss_actor, metadata = self._add_actor_potential(out.get("loss_actor"), lmbd, tensordict,
                                                             self.potential_network_params.detach())
            out.set("loss_actor", loss_actor)
            set_diagnostics(out, self.base, {"potential_actor": metadata["potential_actor"]})
        loss_potential, metadata = self.potential_loss(tensordict)
        out.set("loss_potential", loss_potential)
        set_diagnostics(out, self.base, metadata)
        return out


__all__ = ["PartialOT", "check_w"]
