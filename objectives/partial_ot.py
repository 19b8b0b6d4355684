r"""Partial Policy Learning (PPL): policy learning as partial (extremal) optimal transport.

PPL (Asadulaev et al., NeurIPS 2024, eq. 12) solves, with cost :math:`c(s, a) = -Q(s, a)`,

.. math::

    \max_{f \le 0} \min_\pi \; \mathbb{E}_{s}\big[-Q(s, \pi(s)) - f(s, \pi(s))\big] + w\, \mathbb{E}_{(s,a)\sim D}[f(s, a)]

so that the policy transports the states onto the best :math:`1/w` share of the dataset's actions
(:math:`w \ge 1`; :math:`w = 1` is the balanced problem, i.e. behaviour cloning).

**Sign convention.** The paper writes :math:`f \ge 0`; the authors' code uses
:math:`f(s, a) = -|g_\omega(s, a)| \le 0` and minimises ``mean f(s, pi(s)) - w mean f(s, a)``. Only the
non-positive version is a consistent Lagrangian of :math:`\pi_\# d \le w \beta` (:math:`f = -g`, with a
multiplier :math:`g \ge 0`); with :math:`f \ge 0` the printed objective is unbounded. We follow the code:
:func:`ppl_torchrl.modules.make_potential` returns :math:`-|g|`, the actor is pulled towards data actions
where :math:`f` is close to 0 and pushed away from actions where :math:`f` is very negative.

**Deviations from Algorithm 1 (all taken from the authors' code):**

1. order critic -> actor -> potential, with actor, potential and targets updated only every
   ``policy_freq`` (2) critic steps (Algorithm 1: critic -> f -> pi, every step);
2. the f-step uses the *target* actor :math:`\bar\pi(s)` (``potential_uses_target_actor=True``;
   Algorithm 1 uses :math:`\pi^k`);
3. PPL^R keeps both ReBRAC BC penalties and the :math:`\lambda = 1/\text{mean}|Q|` normalisation, which
   applies to Q only, not to f;
4. the potential's optimiser uses lr = critic lr / 100 (a recipe setting).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule, dispatch
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import CQLLoss

from ._checks import check_batch
from .rebrac import ReBRACLoss


def check_w(w: float) -> float:
    """``w`` as a float; a ``ValueError`` saying what it means unless it is a number >= 1."""
    if not (isinstance(w, (int, float)) and w >= 1.0):
        raise ValueError(
            f"w (the unbalance coefficient) must be >= 1 (a number), got {w!r}: the policy maps onto the best "
            "1/w share of the data (w = 1 is behaviour cloning; the paper uses 3-12, 8 by default)."
        )
    return float(w)


class _PotentialMixin:
    """The potential network ``f`` and the f-step shared by PPL^R and PPL^CQL."""

    potential_network: TensorDictModule
    potential_network_params: TensorDictParams
    target_potential_network_params: TensorDictParams  # never created: f has no target (authors' code unused it)

    def _init_potential(self, potential_network, w, potential_uses_target_actor):
        self.w = check_w(w)
        self.potential_uses_target_actor = potential_uses_target_actor
        self.convert_to_functional(potential_network, "potential_network", create_target_params=False)

    def _potential(self, tensordict: TensorDictBase, action: torch.Tensor, params) -> torch.Tensor:
        """``f(s, action)``, shape ``[*B]``."""
        td = tensordict.select(*self.potential_network.in_keys, strict=False)
        td.set(self.tensor_keys.action, action)
        with params.to_module(self.potential_network, preserve_module_state=False):
            td = self.potential_network(td)
        return td.get(self.tensor_keys.potential).squeeze(-1)

    @property
    def _detached_potential_params(self):
        return self.potential_network_params.detach()

    def _add_potential_loss(self, out: TensorDictBase, tensordict: TensorDictBase) -> TensorDictBase:
        loss_potential, metadata = self.potential_loss(tensordict)
        out.set("loss_potential", loss_potential)
        out.update(metadata)
        return out

    def _potential_objective_on(self, tensordict, potential_params, policy_action) -> tuple[torch.Tensor, dict]:
        # f-step of eq. 12 with f <= 0: minimise mean f(s, pi(s)) - w mean f(s, a).
        f_policy = self._potential(tensordict, policy_action.detach(), potential_params)
        f_data = self._potential(tensordict, tensordict.get(self.tensor_keys.action), potential_params)
        loss = self._reduce_loss(f_policy - self.w * f_data, tensordict=tensordict)
        return loss, {"potential_policy": f_policy.detach().mean(), "potential_data": f_data.detach().mean()}


class PartialOTLoss(_PotentialMixin, ReBRACLoss):
    r"""PPL^R: the ReBRAC critic and actor plus the partial-OT potential (authors' code).

    Adds to :class:`ReBRACLoss` (see there for the critic and the ReBRAC actor terms):

    * ``loss_actor`` = ReBRAC actor loss :math:`-\,\text{mean}_s f(s, \pi(s))` (f frozen, differentiable in
      the action; not multiplied by :math:`\lambda`);
    * ``loss_potential`` = :math:`\text{mean}_s f(s, \bar\pi(s)) - w\, \text{mean}_{(s,a)} f(s, a)`, with the
      target actor :math:`\bar\pi` (or the online actor, detached, if ``potential_uses_target_actor=False``).

    The f-step gradient reaches only ``potential_network_params``; the actor's only the actor; the
    critic's only the critics. See the module docstring for the sign convention and the deviations from
    the paper's Algorithm 1.

    Args:
        actor_network, qvalue_network: as for :class:`ReBRACLoss`.
        potential_network: ``f(s, a) <= 0`` reading observation and ``action``, writing ``potential``
            (:func:`ppl_torchrl.modules.make_potential`).

    Keyword Args:
        w (float): unbalance coefficient, >= 1 (8 in the authors' code; 12 for antmaze-large-diverse).
        potential_uses_target_actor (bool): f-step on the target actor's actions (authors' code) or the
            online actor's.
        critic_next_action (str): ``"policy"`` for PPL^R, ``"dataset"`` for the SARSA-style :math:`Q^\beta`
            of the paper's one-step setting and toy experiment.
        **kwargs: every other :class:`ReBRACLoss` argument.

    Examples:
        >>> from ppl_torchrl import PartialOTLoss
        >>> from ppl_torchrl.modules import make_actor, make_qvalue_ensemble, make_potential
        >>> actor, qvalue, potential = make_actor(17, 6), make_qvalue_ensemble(17, 6), make_potential(17, 6)
        >>> loss = PartialOTLoss(actor, qvalue, potential, w=8.0, actor_bc_coef=1e-3, critic_bc_coef=5e-4)
        >>> loss.make_value_estimator(gamma=0.99)  # doctest: +ELLIPSIS
        PartialOTLoss(...)
    """

    @dataclass
    class _AcceptedKeys(ReBRACLoss._AcceptedKeys):
        """As :class:`ReBRACLoss`, plus ``potential``: the key the potential network writes."""

        potential: NestedKey = "potential"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    out_keys = ReBRACLoss.out_keys + ["loss_potential", "potential_policy", "potential_data", "potential_actor"]

    def __init__(
        self,
        actor_network: TensorDictModule,
        qvalue_network: TensorDictModule,
        potential_network: TensorDictModule,
        *,
        w: float = 8.0,
        potential_uses_target_actor: bool = True,
        **kwargs,
    ) -> None:
        check_w(w)
        super().__init__(actor_network, qvalue_network, **kwargs)
        self._init_potential(potential_network, w, potential_uses_target_actor)

    def _set_in_keys(self):
        super()._set_in_keys()
        if hasattr(self, "potential_network"):
            self._in_keys = list(dict.fromkeys([*self._in_keys, *self.potential_network.in_keys]))

    # ------------------------------------------------------------------ the math, on explicit parameters
    def actor_objective(self, tensordict: TensorDictBase, actor_params, critic_params,
                        potential_params=None) -> tuple[torch.Tensor, dict]:
        """ReBRAC actor objective minus ``f(s, pi(s))`` (the partial-OT constraint term, not scaled by
        lambda); pass detached ``critic_params`` and ``potential_params``."""
        objective, policy_action, metadata = self._actor_terms(tensordict, actor_params, critic_params)
        f_actor = self._potential(tensordict, policy_action, potential_params)
        metadata["potential_actor"] = f_actor.detach().mean()
        weights = self._maybe_get_priority_weight(tensordict)
        return self._reduce_loss(objective - f_actor, tensordict=tensordict, weights=weights), metadata

    def potential_objective(self, tensordict: TensorDictBase, potential_params, actor_params,
                            target_actor_params) -> tuple[torch.Tensor, dict]:
        """f-step ``mean f(s, pi_target(s)) - w mean f(s, a)`` (online actor if not
        ``potential_uses_target_actor``); gradients reach only ``potential_params``."""
        policy_params = target_actor_params if self.potential_uses_target_actor else actor_params
        with torch.no_grad():
            policy_action = self._actor(tensordict, policy_params)
        return self._potential_objective_on(tensordict, potential_params, policy_action)

    # ------------------------------------------------------------------ losses
    def _potential_required_keys(self):
        return [self.tensor_keys.action, *self.actor_network.in_keys, *self.potential_network.in_keys]

    def check_inputs(self, tensordict: TensorDictBase) -> None:
        super().check_inputs(tensordict)
        self._check(tensordict, "potential_loss", self._potential_required_keys())

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """ReBRAC actor objective minus ``f(s, pi(s))`` (the partial-OT constraint term)."""
        self._check(tensordict, "actor_loss", self._actor_required_keys())
        return self.actor_objective(tensordict, self.actor_network_params, self._cached_detach_qvalue_network_params,
                                    self._detached_potential_params)

    def potential_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """f-step: ``mean f(s, pi_target(s)) - w mean f(s, a)``; gradients reach only the potential."""
        self._check(tensordict, "potential_loss", self._potential_required_keys())
        return self.potential_objective(tensordict, self.potential_network_params, self.actor_network_params.detach(),
                                        self.target_actor_network_params.detach())

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``loss_qvalue``, ``loss_actor``, ``loss_potential`` and detached diagnostics for one batch."""
        return self._add_potential_loss(super().forward(tensordict), tensordict)


class PartialOTCQLLoss(_PotentialMixin, CQLLoss):
    r"""PPL^CQL: TorchRL's :class:`~torchrl.objectives.CQLLoss` with the partial-OT potential.

    The paper's PPL^CQL keeps CORL's CQL unchanged and adds the potential; its code is not released. Here,
    with a stochastic (TanhNormal) actor:

    * ``loss_actor`` = CQL's SAC-style actor loss :math:`-\,\text{mean}\, f(s, \tilde a)`, with
      :math:`\tilde a \sim \pi(\cdot|s)` the same reparameterised sample CQL's actor term uses;
    * ``loss_potential`` = :math:`\text{mean}\, f(s, \tilde a) - w\, \text{mean}\, f(s, a)` with a detached sample
      of the online actor (CQL keeps no target actor).

    All other terms (``loss_qvalue``, ``loss_cql``, ``loss_alpha``, ...) are CQLLoss's own.

    Args:
        actor_network: a probabilistic actor (e.g. ``ProbabilisticActor`` with ``TanhNormal``).
        qvalue_network: a single critic; CQLLoss stacks ``num_qvalue_nets`` copies.
        potential_network: as for :class:`PartialOTLoss`.

    Keyword Args:
        w (float): unbalance coefficient >= 1 (the paper uses 8 on all AntMaze datasets).
        **kwargs: every :class:`~torchrl.objectives.CQLLoss` argument.
    """

    @dataclass
    class _AcceptedKeys(CQLLoss._AcceptedKeys):
        """As :class:`~torchrl.objectives.CQLLoss`, plus ``potential``."""

        potential: NestedKey = "potential"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(self, actor_network, qvalue_network, potential_network, *, w: float = 8.0, **kwargs) -> None:
        check_w(w)
        super().__init__(actor_network, qvalue_network, **kwargs)
        self._init_potential(potential_network, w, potential_uses_target_actor=False)

    @property
    def out_keys(self):
        keys = list(super().out_keys)
        for key in ("loss_potential", "potential_policy", "potential_data", "potential_actor"):
            if key not in keys:
                keys.append(key)
        return keys

    @out_keys.setter
    def out_keys(self, values):
        self._out_keys = values

    def _sample_action(self, tensordict, params):
        with set_exploration_type(ExplorationType.RANDOM), params.to_module(
            self.actor_network, preserve_module_state=False
        ):
            dist = self.actor_network.get_dist(tensordict.select(*self.actor_network.in_keys, strict=False))
        action = dist.rsample()
        return action, dist.log_prob(action)

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """CQL/SAC actor loss ``alpha log pi(a~|s) - min_i Q_i(s, a~) - f(s, a~)``."""
        check_batch(f"{type(self).__name__}.actor_loss", tensordict,
                    [self.tensor_keys.action, *self.actor_network.in_keys])
        action, log_prob = self._sample_action(tensordict, self.actor_network_params)
        td_q = tensordict.select(*self.qvalue_network.in_keys, strict=False)
        td_q.set(self.tensor_keys.action, action)
        td_q = self._vmap_qvalue_networkN0(td_q, self._cached_detach_qvalue_params)
        min_q = td_q.get(self.tensor_keys.state_action_value).min(0)[0].squeeze(-1)
        f_actor = self._potential(tensordict, action, self._detached_potential_params)
        loss = self._alpha * log_prob - min_q - f_actor
        metadata = {self.tensor_keys.log_prob: log_prob.detach(), "potential_actor": f_actor.detach().mean()}
        return self._reduce_loss(loss, tensordict=tensordict), metadata

    def potential_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """f-step ``mean f(s, a~) - w mean f(s, a)`` with ``a~`` a detached sample of the online actor."""
        check_batch(f"{type(self).__name__}.potential_loss", tensordict,
                    [self.tensor_keys.action, *self.actor_network.in_keys])
        with torch.no_grad():
            action, _ = self._sample_action(tensordict, self.actor_network_params.detach())
        return self._potential_objective_on(tensordict, self.potential_network_params, action)

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """All of CQLLoss's terms plus ``loss_potential`` and the potential diagnostics."""
        return self._add_potential_loss(super().forward(tensordict), tensordict)


__all__ = ["PartialOTLoss", "PartialOTCQLLoss"]
