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

The potential itself is one piece, :class:`~ppl_torchrl.objectives.PartialOT`, that adds to any actor loss;
PPL^R and PPL^CQL below are that piece on ReBRAC and on TorchRL's ``CQLLoss``, with their constructors.
"""
from __future__ import annotations

from tensordict.nn import TensorDictModule
from torchrl.objectives import CQLLoss

from .potential import PartialOT, check_w
from .rebrac import ReBRACLoss


class PartialOTLoss(PartialOT):
    r"""PPL^R: the ReBRAC critic and actor plus the partial-OT potential (authors' code).

    ``PartialOTLoss(actor, qvalue, potential, w=...)`` is ``PartialOT(ReBRACLoss(actor, qvalue, ...), potential,
    w=...)`` (see :class:`ReBRACLoss` for the critic and the ReBRAC actor terms):

    * ``loss_actor`` = ReBRAC actor loss :math:`-\,\text{mean}_s f(s, \pi(s))` (f frozen, differentiable in
      the action; not multiplied by :math:`\lambda`; added per sample, before the reduction);
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
        potential_uses_target_actor (bool or None): f-step on the target actor's actions (authors' code) or the
            online actor's; ``None`` (default): the target actor where there is one (``delay_actor=True``, the
            default). ``True`` with ``delay_actor=False`` is an error, as for :class:`PartialOT`.
        potential_bound, potential_gp, potential_lipschitz, potential_gp_directions, potential_actor_scale,
            potential_actor_coef, w_anneal_steps, saturation_penalty: the switches of :class:`PartialOT`; their
            defaults are the authors' code.
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

    def __init__(
        self,
        actor_network: TensorDictModule,
        qvalue_network: TensorDictModule,
        potential_network: TensorDictModule,
        *,
        w: float = 8.0,
        potential_uses_target_actor: bool | None = None,
        potential_bound: float | None = None,
        potential_gp: float = 0.0,
        potential_lipschitz: float = 1.0,
        potential_gp_directions: str = "segment",
        potential_actor_scale: str = "none",
        potential_actor_coef: float = 1.0,
        w_anneal_steps: int = 0,
        saturation_penalty: float = 0.0,
        **kwargs,
    ) -> None:
        check_w(w)
        super().__init__(ReBRACLoss(actor_network, qvalue_network, **kwargs), potential_network, w=w,
                         potential_uses_target_actor=potential_uses_target_actor, potential_bound=potential_bound,
                         potential_gp=potential_gp, potential_lipschitz=potential_lipschitz,
                         potential_gp_directions=potential_gp_directions,
                         potential_actor_scale=potential_actor_scale, potential_actor_coef=potential_actor_coef,
                         w_anneal_steps=w_anneal_steps, saturation_penalty=saturation_penalty)


class PartialOTCQLLoss(PartialOT):
    r"""PPL^CQL: TorchRL's :class:`~torchrl.objectives.CQLLoss` with the partial-OT potential.

    ``PartialOTCQLLoss(actor, qvalue, potential, w=...)`` is ``PartialOT(CQLLoss(actor, qvalue, ...), potential,
    w=...)``. The paper's PPL^CQL keeps CORL's CQL unchanged and adds the potential; its code is not released.
    Here, with a stochastic (TanhNormal) actor:

    * ``loss_actor`` = CQL's SAC-style actor loss :math:`-\,\text{mean}\, f(s, \tilde a)`, with
      :math:`\tilde a \sim \pi(\cdot|s)` a reparameterised sample (drawn for this term, independently of
      the one CQL's own actor term draws);
    * ``loss_potential`` = :math:`\text{mean}\, f(s, \tilde a) - w\, \text{mean}\, f(s, a)` with a detached sample
      of the online actor (CQL's default keeps no target actor; with ``delay_actor=True``,
      ``potential_uses_target_actor=True`` samples its target actor instead).

    All other terms (``loss_qvalue``, ``loss_cql``, ``loss_alpha``, ...) are CQLLoss's own.

    Args:
        actor_network: a probabilistic actor (e.g. ``ProbabilisticActor`` with ``TanhNormal``).
        qvalue_network: a single critic; CQLLoss stacks ``num_qvalue_nets`` copies.
        potential_network: as for :class:`PartialOTLoss`.

    Keyword Args:
        w (float): unbalance coefficient >= 1 (the paper uses 8 on all AntMaze datasets).
        potential_uses_target_actor (bool): the f-step on CQL's target actor (needs ``delay_actor=True``) rather than
            the online one (default ``False``, whether or not CQL keeps a target actor).
        **kwargs: every :class:`~torchrl.objectives.CQLLoss` argument; the other potential switches are
            :class:`PartialOT`'s.
    """

    def __init__(self, actor_network, qvalue_network, potential_network, *, w: float = 8.0,
                 potential_uses_target_actor: bool = False, potential_bound: float | None = None,
                 potential_gp: float = 0.0, potential_lipschitz: float = 1.0,
                 potential_gp_directions: str = "segment", potential_actor_scale: str = "none",
                 potential_actor_coef: float = 1.0, w_anneal_steps: int = 0, saturation_penalty: float = 0.0,
                 **kwargs) -> None:
        check_w(w)
        super().__init__(CQLLoss(actor_network, qvalue_network, **kwargs), potential_network, w=w,
                         potential_uses_target_actor=bool(potential_uses_target_actor), potential_bound=potential_bound,
                         potential_gp=potential_gp,
                         potential_lipschitz=potential_lipschitz, potential_gp_directions=potential_gp_directions,
                         potential_actor_scale=potential_actor_scale,
                         potential_actor_coef=potential_actor_coef, w_anneal_steps=w_anneal_steps,
                         saturation_penalty=saturation_penalty)


__all__ = ["PartialOTLoss", "PartialOTCQLLoss", "check_w"]
