r"""The partial-OT potential as one piece that adds to any actor loss: :class:`PartialOT`.

PPL's partial transport (Asadulaev et al., NeurIPS 2024, eq. 12; sign convention and deviations in
:mod:`ppl_torchrl.objectives.partial_ot`) adds two things to an offline RL objective with an actor:

* to the actor's term, :math:`-\,\text{mean}_s f(s, \pi(s))` (``f`` frozen, differentiable in the action);
* a new term for ``f``, the f-step ``loss_potential`` :math:`= \text{mean}_s f(s, \bar\pi(s)) - w\,\text{mean}_{(s,a)} f(s, a)`,
  on the base loss's target actor :math:`\bar\pi` where it keeps one (the authors' code), else on its online
  actor (detached).

:class:`PartialOT` wraps a base TorchRL loss (``TD3BCLoss``, ``CQLLoss``, ``IQLLoss``, our ``ReBRACLoss``, ...)
without subclassing it: every term of the base loss is returned unchanged except ``loss_actor``; the base
loss's parameters, target parameters and buffers are the composed loss's own (one set of tensors, the same
``state_dict`` names), so ``SoftUpdate(composed)``, optimizers over ``composed.actor_network_params`` and
checkpoints work as on the base loss.

**Which action** :math:`\pi(s)`: a deterministic actor's output; for a probabilistic actor (one with
``get_dist``, e.g. TorchRL's ``ProbabilisticActor`` with ``TanhNormal``) a reparameterised sample
``dist.rsample()`` (a fresh draw from the global RNG, not the sample the base loss drew), so the gradient of
``-f`` reaches the distribution's parameters. For CQL (SAC-style actor) this is the same kind of action its
Q term uses. For IQL the actor term is AWR, :math:`-\exp(\beta A(s, a))\log\pi(a|s)` on *data* actions, which
never evaluates :math:`\pi(s)` at all: the potential adds a second, reparameterised term that pushes the
sampled action :math:`\tilde a \sim \pi(\cdot|s)` out of the regions where ``f`` is very negative (where the
policy puts more than ``w`` times the data's mass), i.e. it restricts the policy to the best ``1/w`` share of
the data in the transport sense, while AWR weights the data actions by their advantage.

**Where the term enters.** If the base loss exposes per-sample actor terms (``actor_terms``, as
:class:`~ppl_torchrl.objectives.ReBRACLoss` does), ``-f`` is added per sample before the reduction (priority
weights apply to it too) and the functional methods ``actor_objective`` / ``potential_objective`` of the
compiled update exist; otherwise it is added to the base's reduced ``loss_actor``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule, dispatch
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives.common import LossModule

from ._checks import check_batch

POTENTIAL_OUT_KEYS = ["loss_potential", "potential_policy", "potential_data", "potential_actor"]


def check_w(w: float) -> float:
    """``w`` as a float; a ``ValueError`` saying what it means unless it is a number >= 1."""
    if not (isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 1.0):
        raise ValueError(
            f"w (the unbalance coefficient) must be >= 1 (a number), got {w!r}: the policy maps onto the best "
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


class PartialOT(LossModule):
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

    Keys: the base loss's ``_AcceptedKeys`` plus ``potential``; ``set_keys`` sets both (the base's keys on the
    base loss). ``make_value_estimator`` and ``value_estimator`` are the base loss's.

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
    potential_network: TensorDictModule
    potential_network_params: TensorDictParams
    target_potential_network_params: TensorDictParams  # never created: f has no target (authors' code unused it)

    def __init__(self, base_loss: LossModule, potential_network: TensorDictModule, *, w: float = 8.0,
                 potential_uses_target_actor: bool | None = None) -> None:
        w = check_w(w)
        if not isinstance(base_loss, LossModule):
            raise TypeError(f"base_loss must be a TorchRL LossModule, got {type(base_loss).__name__}.")
        base_children = dict(base_loss.named_children())
        if "actor_network_params" not in base_children or not hasattr(base_loss, "actor_loss"):
            raise ValueError(f"{type(base_loss).__name__} has no actor (actor_network_params and actor_loss): the potential "
                             "adds to an actor's term, so the base loss must train one.")
        has_target_actor = "target_actor_network_params" in base_children
        if potential_uses_target_actor is None:
            potential_uses_target_actor = has_target_actor
        elif potential_uses_target_actor and not has_target_actor:
            raise ValueError(f"potential_uses_target_actor=True, but {type(base_loss).__name__} keeps no target actor "
                             "(create it with delay_actor=True) - or pass False / None to use the online actor.")
        super().__init__()
        self.w = w
        self.potential_uses_target_actor = bool(potential_uses_target_actor)
        # The base loss is held outside nn.Module's registry; its tensors are adopted below as this module's own.
        object.__setattr__(self, "_base_loss", base_loss)
        self._adopt()
        # One "a target updater exists" flag per network for both modules, so that SoftUpdate(composed) tells the
        # base loss its targets move (TorchRL has no public handle on these flags; SoftUpdate writes them itself).
        self._has_update_associated = base_loss._has_update_associated
        self.reduction = base_loss.reduction
        self.use_prioritized_weights = getattr(base_loss, "use_prioritized_weights", "auto")
        self._AcceptedKeys = _accepted_keys(type(base_loss.tensor_keys))
        self.default_keys = self._AcceptedKeys
        self._tensor_keys = self._AcceptedKeys(**{f.name: getattr(base_loss.tensor_keys, f.name)
                                                  for f in fields(type(base_loss.tensor_keys))})
        self.convert_to_functional(potential_network, "potential_network", create_target_params=False)

    # ------------------------------------------------------------------ the base loss
    @property
    def base(self) -> LossModule:
        """The loss the potential adds to (its tensors are this module's own). Not ``base_loss``: TorchRL wraps
        every public ``*loss`` attribute of a loss class as a loss method."""
        return self._base_loss

    def _adopt(self) -> None:
        """Registers the base loss's sub-modules (networks, parameters, target parameters), parameters and
        buffers under their own names here: the same tensors, so updating either updates both."""
        base = self._base_loss
        self._adopted = []
        for name, module in base.named_children():
            self.__dict__.pop(name, None)  # e.g. LossModule's ``_value_estimator = None`` placeholder
            self._modules[name] = module
            self._adopted.append(name)
        for name, param in base.named_parameters(recurse=False):
            self._parameters[name] = param
        for name, buf in base.named_buffers(recurse=False):
            self._buffers[name] = buf

    def _apply(self, fn, *args, **kwargs):
        # Device / dtype moves go through the base loss (which also drops its cached detached parameters),
        # then the adopted tensors are re-read from it and the potential moved.
        self._base_loss._apply(fn, *args, **kwargs)
        for name, module in list(self._modules.items()):
            if name not in self._adopted:
                module._apply(fn, *args, **kwargs)
        self._adopt()
        self._erase_cache()
        return self

    def __getattr__(self, item):
        try:
            return super().__getattr__(item)
        except AttributeError:
            base = self.__dict__.get("_base_loss")
            if base is None:
                raise
            # The base loss's methods and settings (qvalue_loss, critic_objective, target_noise, ...).
            return getattr(base, item)

    def __setattr__(self, name, value):
        # A setting that lives on the base loss (actor_bc_coef, critic_bc_coef, target_noise, ...) is set there:
        # the base's methods read it from the base (fine-tuning's BC decay sets loss.actor_bc_coef). Without this,
        # the assignment would create a shadow attribute here that no term ever reads.
        base = self.__dict__.get("_base_loss")
        if (base is not None and not name.startswith("_") and name not in self.__dict__
                and not hasattr(type(self), name) and name not in self._modules and name not in self._parameters
                and name not in self._buffers and hasattr(base, name)):
            setattr(base, name, value)
            return
        super().__setattr__(name, value)

    def set_keys(self, **kwargs) -> None:
        base_fields = {f.name for f in fields(type(self._base_loss.tensor_keys))}
        unknown = [k for k in kwargs if k not in self._AcceptedKeys.__dataclass_fields__]
        if unknown:
            raise ValueError(f"{unknown[0]} is not an accepted tensordict key. Accepted keys are: "
                             f"{sorted(self._AcceptedKeys.__dataclass_fields__)}.")
        base_kwargs = {k: v for k, v in kwargs.items() if k in base_fields}
        if base_kwargs:
            self._base_loss.set_keys(**base_kwargs)
        for key, value in kwargs.items():
            if key in base_fields:
                value = getattr(self._base_loss.tensor_keys, key)
            elif value is None:
                value = getattr(self.default_keys(), key)
            setattr(self.tensor_keys, key, value)

    @property
    def in_keys(self):
        return list(dict.fromkeys([*self._base_loss.in_keys, *self.potential_network.in_keys]))

    @property
    def out_keys(self):
        return list(dict.fromkeys([*self._base_loss.out_keys, *POTENTIAL_OUT_KEYS]))

    def make_value_estimator(self, value_type=None, **hyperparams):
        """The base loss's value estimator (the potential needs none)."""
        self._base_loss.make_value_estimator(value_type, **hyperparams)
        self._adopt()  # the estimator is a sub-module of the base: in this module's state_dict too
        return self

    @property
    def value_estimator(self):
        return self._base_loss.value_estimator

    @value_estimator.setter
    def value_estimator(self, value):
        self._base_loss.value_estimator = value

    # ------------------------------------------------------------------ network calls
    def policy_action(self, tensordict: TensorDictBase, actor_params) -> torch.Tensor:
        """The actor's action ``pi(s)`` with ``actor_params``: a deterministic actor's output, or a
        reparameterised sample of a probabilistic actor's distribution."""
        actor = self._base_loss.actor_network
        td = tensordict.select(*actor.in_keys, strict=False)
        with actor_params.to_module(actor, preserve_module_state=False):
            if hasattr(actor, "get_dist"):
                with set_exploration_type(ExplorationType.RANDOM):
                    return actor.get_dist(td).rsample()
            return actor(td).get(self.tensor_keys.action)

    def potential(self, tensordict: TensorDictBase, action: torch.Tensor, potential_params) -> torch.Tensor:
        """``f(s, action)`` with ``potential_params``, shape ``[*B]``."""
        td = tensordict.select(*self.potential_network.in_keys, strict=False)
        td.set(self.tensor_keys.action, action)
        with potential_params.to_module(self.potential_network, preserve_module_state=False):
            td = self.potential_network(td)
        return td.get(self.tensor_keys.potential).squeeze(-1)

    def _target_actor_params(self) -> TensorDictParams:
        if self.potential_uses_target_actor:
            return self.target_actor_network_params
        return self.actor_network_params

    # ------------------------------------------------------------------ the math, on explicit parameters
    def actor_terms(self, tensordict: TensorDictBase, actor_params, critic_params,
                    potential_params) -> tuple[dict, torch.Tensor, dict]:
        """The base's per-sample signed actor terms plus ``"f"``: ``-f(s, pi(s))`` (their sum is the per-sample
        actor objective), the policy action and diagnostics. Needs a base with ``actor_terms``."""
        terms, policy_action, metadata = self._base_loss.actor_terms(tensordict, actor_params, critic_params)
        f_actor = self.potential(tensordict, policy_action, potential_params)
        terms["f"] = -f_actor
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

    def potential_objective_on(self, tensordict: TensorDictBase, potential_params,
                               policy_action: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """f-step of eq. 12 with ``f <= 0``: ``mean f(s, policy_action) - w mean f(s, a)`` (``policy_action``
        detached); gradients reach only ``potential_params``."""
        f_policy = self.potential(tensordict, policy_action.detach(), potential_params)
        f_data = self.potential(tensordict, tensordict.get(self.tensor_keys.action), potential_params)
        loss = self._reduce_loss(f_policy - self.w * f_data, tensordict=tensordict)
        return loss, {"potential_policy": f_policy.detach().mean(), "potential_data": f_data.detach().mean()}

    def potential_objective(self, tensordict: TensorDictBase, potential_params, actor_params,
                            target_actor_params) -> tuple[torch.Tensor, dict]:
        """f-step on the target actor's actions (``potential_uses_target_actor``) or the online actor's."""
        policy_params = target_actor_params if self.potential_uses_target_actor else actor_params
        with torch.no_grad():
            policy_action = self.policy_action(tensordict, policy_params)
        return self.potential_objective_on(tensordict, potential_params, policy_action)

    # ------------------------------------------------------------------ losses
    def _potential_required_keys(self):
        return [self.tensor_keys.action, *self._base_loss.actor_network.in_keys, *self.potential_network.in_keys]

    def _check(self, tensordict: TensorDictBase, name: str) -> None:
        if getattr(self._base_loss, "validate_inputs", True):
            check_batch(f"{type(self).__name__}.{name}", tensordict, self._potential_required_keys())

    def check_inputs(self, tensordict: TensorDictBase) -> None:
        """The base loss's checks (where it has them) and the potential's keys, shapes and finiteness."""
        if hasattr(self._base_loss, "check_inputs"):
            self._base_loss.check_inputs(tensordict)
        self._check(tensordict, "potential_loss")

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """The base's actor loss minus ``mean f(s, pi(s))`` (``f`` and the critics frozen)."""
        self._check(tensordict, "actor_loss")
        potential_params = self.potential_network_params.detach()
        if hasattr(self._base_loss, "actor_terms"):
            if hasattr(self._base_loss, "check_actor_inputs"):
                self._base_loss.check_actor_inputs(tensordict)
            return self.actor_objective(tensordict, self.actor_network_params,
                                        self.qvalue_network_params.detach(), potential_params)
        loss, metadata = self._base_loss.actor_loss(tensordict)
        return self._add_actor_potential(loss, metadata, tensordict, potential_params)

    def _add_actor_potential(self, loss, metadata, tensordict, potential_params):
        f_actor = self.potential(tensordict, self.policy_action(tensordict, self.actor_network_params),
                                 potential_params)
        metadata = dict(metadata)
        metadata["potential_actor"] = f_actor.detach().mean()
        return loss + self._reduce_loss(-f_actor, tensordict=tensordict), metadata

    def potential_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """f-step ``mean f(s, pi_bar(s)) - w mean f(s, a)``; gradients reach only the potential."""
        self._check(tensordict, "potential_loss")
        return self.potential_objective(tensordict, self.potential_network_params, self.actor_network_params.detach(),
                                        self._target_actor_params().detach())

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Every term of the base loss, ``loss_actor`` with the potential term, ``loss_potential`` and the
        potential diagnostics."""
        self._check(tensordict, "forward")  # before the base loss reads the batch: our error, not a deep one
        out = self._base_loss(tensordict)
        if hasattr(self._base_loss, "actor_terms"):
            loss_actor, metadata = self.actor_loss(tensordict)
        else:
            loss_actor, metadata = self._add_actor_potential(out.get("loss_actor"), {}, tensordict,
                                                             self.potential_network_params.detach())
        out.set("loss_actor", loss_actor)
        out.set("potential_actor", metadata["potential_actor"])
        loss_potential, metadata = self.potential_loss(tensordict)
        out.set("loss_potential", loss_potential)
        out.update(metadata)
        return out


__all__ = ["PartialOT", "check_w"]
