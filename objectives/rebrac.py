"""ReBRAC (Tarasov et al., 2023) as a TorchRL loss: the base algorithm of PPL^R."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule, dispatch
from tensordict.utils import NestedKey
from torchrl.data.tensor_specs import Bounded, Composite, TensorSpec
from torchrl.objectives.common import LossModule
from torchrl.objectives.utils import ValueEstimators, dispatch_value_estimator
from torchrl.objectives.value import ValueEstimatorBase

from ._checks import check_actor_width, check_batch, check_separate_networks
from ._networks import network_output

CRITIC_NEXT_ACTIONS = ("policy", "dataset")


def bc_distance(policy_action: torch.Tensor, data_action: torch.Tensor) -> torch.Tensor:
    """ReBRAC's behaviour-cloning distance per sample, ``||pi(s) - a||^2`` summed over action dimensions (TorchRL's
    ``TD3BCLoss`` averages them instead): the one home of the BC term, for the actor, the critic's next-action penalty
    and the one-step setting's behaviour cloning."""
    return (policy_action - data_action).pow(2).sum(-1)


class ReBRACLoss(LossModule):
    r"""ReBRAC: TD3+BC with an ensemble min, summed BC penalties on both actor and critic.

    Exactly the update of CORL's ``rebrac.py`` (and of the PPL authors' code), per batch
    ``(s, a, r, s', a'_data, terminated)``:

    * critic (``qvalue_loss``)::

        a~' = clip(pi_target(s') + clip(N(0, policy_noise^2), -noise_clip, noise_clip), low, high)
        y   = r + gamma * (1 - terminated) * (min_i Qtarget_i(s', a~') - critic_bc_coef * ||a~' - a'_data||^2)
        L_Q = sum_i mean_batch (Q_i(s, a) - y)^2

      With ``critic_next_action="dataset"`` the next action is the dataset's ``a'_data`` (a SARSA-style
      :math:`Q^\beta`, as in PPL's one-step setting) and the penalty vanishes.

    * actor (``actor_loss``)::

        L_pi = mean_batch( actor_bc_coef * ||pi(s) - a||^2 - lambda * min_i Q_i(s, pi(s)) ),
        lambda = stop_grad(1 / mean_batch |min_i Q_i(s, pi(s))|)   (1 if normalize_q=False)

    Squared distances are summed over action dimensions (TorchRL's ``TD3BCLoss`` averages them, uses
    Q1 only and has no critic penalty). Only ``("next", "terminated")`` stops bootstrapping; a time-limit
    truncation does not. ``gamma`` is set with ``make_value_estimator(gamma=...)`` (TD(0) only).

    The delayed-actor schedule (actor and target updates every ``policy_freq`` critic steps) belongs to
    the training loop, as in TorchRL's ``td3_bc`` recipe; target networks are updated with
    ``torchrl.objectives.SoftUpdate(loss, tau=...)``.

    Args:
        actor_network: deterministic actor reading the observation keys and writing ``action``.
        qvalue_network: critic reading observation and ``action`` keys and writing ``state_action_value``
            with one value per ensemble member in the last dimension (``[*B, N]``;
            see :func:`ppl_torchrl.modules.make_qvalue_ensemble`). A single critic ``[*B, 1]`` also works.

    Keyword Args:
        action_spec / bounds: action bounds for clipping the smoothed target action; exactly one, or
            neither for ``(-1, 1)`` (the tanh actor's range, as in the authors' code).
        actor_bc_coef (float): :math:`\beta_1`, weight of the actor BC penalty.
        critic_bc_coef (float): :math:`\beta_2`, weight of the critic next-action penalty.
        policy_noise, noise_clip (float): target policy smoothing.
        normalize_q (bool): use :math:`\lambda = 1/\text{mean}|Q|` (True, ReBRAC) or 1.
        critic_next_action (str): ``"policy"`` (smoothed target actor) or ``"dataset"``.
        delay_actor, delay_qvalue (bool): create target parameters for the actor / critic.
        reduction (str): ``"mean"`` (default), ``"sum"`` or ``"none"``.
        validate_inputs (bool): check keys, shapes and finiteness of every batch (one host sync).
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys (``loss.set_keys(name=key)``).

        Attributes:
            action: dataset action ``a`` (also the key the actor writes). Default ``"action"``.
            next_action: dataset next action ``a'`` for the critic penalty. Default ``("next", "action")``.
            state_action_value: key the critic writes. Default ``"state_action_value"``.
            priority: where the per-sample TD error is written. Default ``"td_error"``.
            reward, done, terminated: read under ``"next"``. Defaults ``"reward"``, ``"done"``, ``"terminated"``.
            priority_weight: importance weights from a prioritized sampler. Default ``"priority_weight"``.
        """

        action: NestedKey = "action"
        next_action: NestedKey = ("next", "action")
        state_action_value: NestedKey = "state_action_value"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority_weight: NestedKey = "priority_weight"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TD0
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.TD0,)
    out_keys = [
        "loss_actor",
        "loss_qvalue",
        "bc_distance",
        "lmbda",
        "state_action_value_actor",
        "pred_value",
        "target_value",
        "next_state_value",
    ]

    actor_network: TensorDictModule
    qvalue_network: TensorDictModule
    actor_network_params: TensorDictParams
    qvalue_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams

    def __init__(
        self,
        actor_network: TensorDictModule,
        qvalue_network: TensorDictModule,
        *,
        action_spec: TensorSpec | None = None,
        bounds: tuple[float, float] | None = None,
        actor_bc_coef: float = 1e-3,
        critic_bc_coef: float = 5e-4,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        normalize_q: bool = True,
        critic_next_action: str = "policy",
        delay_actor: bool = True,
        delay_qvalue: bool = True,
        reduction: str | None = None,
        validate_inputs: bool = True,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        for name, value in (("actor_bc_coef", actor_bc_coef), ("critic_bc_coef", critic_bc_coef),
                            ("policy_noise", policy_noise), ("noise_clip", noise_clip)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        if critic_next_action not in CRITIC_NEXT_ACTIONS:
            raise ValueError(f"critic_next_action must be one of {CRITIC_NEXT_ACTIONS}, got {critic_next_action!r}.")
        check_separate_networks(type(self).__name__, actor_network=actor_network, qvalue_network=qvalue_network)
        super().__init__()
        self.reduction = "mean" if reduction is None else reduction
        self.use_prioritized_weights = use_prioritized_weights
        self._in_keys = None
        self.delay_actor = delay_actor
        self.delay_qvalue = delay_qvalue
        self.convert_to_functional(actor_network, "actor_network", create_target_params=delay_actor)
        self.convert_to_functional(qvalue_network, "qvalue_network", create_target_params=delay_qvalue)
        self.actor_bc_coef = actor_bc_coef
        self.critic_bc_coef = critic_bc_coef
        self.policy_noise = policy_noise
        self.noise_clip = noise_clip
        self.normalize_q = normalize_q
        self.critic_next_action = critic_next_action
        self.validate_inputs = validate_inputs
        self._actor_width: int | None = None  # how many action features the actor writes (first checked batch)
        low, high = self._action_bounds(action_spec, bounds)
        device = next(iter(self.actor_network_params.values(True, True))).device
        self.register_buffer("min_action", low.to(device))
        self.register_buffer("max_action", high.to(device))

    # ------------------------------------------------------------------ set-up helpers
    def _action_bounds(self, action_spec, bounds):
        if action_spec is not None and bounds is not None:
            raise ValueError("Pass either action_spec or bounds, not both.")
        if action_spec is not None:
            if isinstance(action_spec, Composite):
                action_spec = action_spec[self.tensor_keys.action]
            if not isinstance(action_spec, Bounded):
                raise ValueError(f"action_spec must be a Bounded spec, got {type(action_spec).__name__}.")
            low, high = action_spec.space.low, action_spec.space.high
        else:
            low, high = (-1.0, 1.0) if bounds is None else bounds
        low = torch.as_tensor(low, dtype=torch.float32)
        high = torch.as_tensor(high, dtype=torch.float32)
        if (low > high).any():
            raise ValueError(f"Action bounds have low > high: {low} > {high}.")
        return low, high

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        if self._value_estimator is not None:
            self._value_estimator.set_keys(
                value=self.tensor_keys.state_action_value,
                reward=self.tensor_keys.reward,
                done=self.tensor_keys.done,
                terminated=self.tensor_keys.terminated,
            )
        self._set_in_keys()

    def _set_in_keys(self):
        keys = [
            self.tensor_keys.action,
            self.tensor_keys.next_action,
            ("next", self.tensor_keys.reward),
            ("next", self.tensor_keys.done),
            ("next", self.tensor_keys.terminated),
            *self.actor_network.in_keys,
            *[("next", key) for key in self.actor_network.in_keys],
            *self.qvalue_network.in_keys,
        ]
        self._in_keys = list(dict.fromkeys(keys))

    @property
    def in_keys(self):
        if self._in_keys is None:
            self._set_in_keys()
        return self._in_keys

    @in_keys.setter
    def in_keys(self, values):
        self._in_keys = values

    def make_value_estimator(self, value_type: ValueEstimators = None, **hyperparams):
        if value_type is None:
            value_type = self.default_value_estimator
        if isinstance(value_type, ValueEstimatorBase) or (
            isinstance(value_type, type) and issubclass(value_type, ValueEstimatorBase)
        ):
            return LossModule.make_value_estimator(self, value_type, **hyperparams)
        # The next-state value is written into the batch by qvalue_loss: no value network needed.
        dispatch_value_estimator(
            self,
            value_type,
            supported=self.SUPPORTED_VALUE_ESTIMATORS,
            tensor_keys={
                "value": self.tensor_keys.state_action_value,
                "reward": self.tensor_keys.reward,
                "done": self.tensor_keys.done,
                "terminated": self.tensor_keys.terminated,
            },
            value_network=None,
            **hyperparams,
        )
        return self

    def _make_vmap(self) -> None:
        # TorchRL's hook that set_vmap_randomness calls to rebuild a loss's vmapped network calls. ReBRAC vmaps
        # none (the critic ensemble is batched inside its network), so the mode is only recorded.
        pass

    # ------------------------------------------------------------------ network calls
    def _check(self, tensordict: TensorDictBase, name: str, required) -> None:
        if self.validate_inputs:
            loss_name = f"{type(self).__name__}.{name}"
            check_batch(loss_name, tensordict, required)
            action_keys = [k for k in (self.tensor_keys.action, self.tensor_keys.next_action) if k in required]
            # the actor's width is learnt once (getattr: a loss unpickled from before this check has none)
            self._actor_width = check_actor_width(loss_name, self, tensordict, action_keys,
                                                  getattr(self, "_actor_width", None))

    def _actor(self, tensordict: TensorDictBase, params) -> torch.Tensor:
        return network_output(self.actor_network, params, tensordict, self.tensor_keys.action)

    def qvalues(self, tensordict: TensorDictBase, action: torch.Tensor, params) -> torch.Tensor:
        """All ensemble members' ``Q_i(s, action)``, shape ``[*B, N]``."""
        return network_output(self.qvalue_network, params, tensordict, self.tensor_keys.state_action_value,
                              replace={self.tensor_keys.action: action})

    def _next_td(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = list(dict.fromkeys([*self.actor_network.in_keys, *self.qvalue_network.in_keys]))
        keys = [k for k in keys if k != self.tensor_keys.action]
        return tensordict.get("next").select(*keys, strict=False)

    # ------------------------------------------------------------------ the math, on explicit parameters
    # The one home of the ReBRAC formulas. The loss's own ``qvalue_loss`` / ``actor_loss`` call these with the
    # module's parameters; the update of :mod:`ppl_torchrl.update` calls them with the tensors it
    # differentiates (``torch.func.grad``), eagerly or under ``torch.compile``. No input checks, no random
    # draws and no host syncs happen here, so the same code traces into one graph.
    def critic_objective(
        self, tensordict: TensorDictBase, critic_params, target_actor_params, target_critic_params,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, dict]:
        """Critic loss ``sum_i mean (Q_i(s, a) - y)^2`` with the target-smoothing ``noise`` given (already
        scaled and clipped, shaped like the action); returns the loss and detached diagnostics."""
        weights = self._maybe_get_priority_weight(tensordict)
        data_next_action = tensordict.get(self.tensor_keys.next_action)
        with torch.no_grad():
            next_td = self._next_td(tensordict)
            if self.critic_next_action == "policy":
                policy_next = self._actor(next_td, target_actor_params)
                next_action = torch.maximum(torch.minimum(policy_next + noise, self.max_action), self.min_action)
                next_penalty = bc_distance(next_action, data_next_action).unsqueeze(-1)
            else:  # SARSA-style Q^beta on the dataset's next action: the penalty vanishes
                next_action = data_next_action
                next_penalty = torch.zeros_like(next_action[..., :1])
            next_q = self.qvalues(next_td, next_action, target_critic_params)
            next_value = next_q.min(-1, keepdim=True).values - self.critic_bc_coef * next_penalty
            target_td = tensordict.empty(recurse=True)
            for key in ("reward", "done", "terminated"):
                k = ("next", getattr(self.tensor_keys, key))
                target_td.set(k, tensordict.get(k))
            target_td.set(("next", self.tensor_keys.state_action_value), next_value)
            # TD(0): r + gamma * (1 - terminated) * next_value; a truncation does not stop bootstrapping.
            target_value = self.value_estimator.value_estimate(target_td)  # [*B, 1]
        pred = self.qvalues(tensordict, tensordict.get(self.tensor_keys.action), critic_params)  # [*B, N]
        td_error = (pred - target_value).pow(2)
        loss = self._reduce_loss(td_error.sum(-1), tensordict=tensordict, weights=weights)
        metadata = {
            "td_error": td_error.detach().max(-1).values,
            "pred_value": pred.detach().mean(),
            "target_value": target_value.detach().mean(),
            "next_state_value": next_value.detach().mean(),
        }
        return loss, metadata

    def actor_terms(self, tensordict: TensorDictBase, actor_params, critic_params) -> tuple[dict, torch.Tensor, dict]:
        """The per-sample signed terms of the actor objective (their sum, in order, is the objective),
        the policy action ``pi(s)`` and detached diagnostics (no reduction):

        * ``"bc"``: ``actor_bc_coef * ||pi(s) - a||^2``;
        * ``"q"``: ``-lambda * min_i Q_i(s, pi(s))``.

        Pass detached ``critic_params`` so the gradient reaches the actor only. A composed loss
        (:class:`~ppl_torchrl.objectives.PartialOT`) adds its own terms before the reduction.
        """
        policy_action = self._actor(tensordict, actor_params)
        q = self.qvalues(tensordict, policy_action, critic_params).min(-1).values
        bc = bc_distance(policy_action, tensordict.get(self.tensor_keys.action))
        lmbda = 1.0 / q.abs().mean().detach() if self.normalize_q else torch.ones((), device=q.device)
        terms = {"bc": self.actor_bc_coef * bc, "q": -(lmbda * q)}
        metadata = {
            "bc_distance": bc.detach().mean(),
            "lmbda": lmbda.detach(),
            "state_action_value_actor": q.detach().mean(),
        }
        return terms, policy_action, metadata

    def actor_objective(self, tensordict: TensorDictBase, actor_params, critic_params) -> tuple[torch.Tensor, dict]:
        """``mean(actor_bc_coef ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s)))``; pass detached
        ``critic_params`` so the gradient reaches the actor only."""
        terms, _, metadata = self.actor_terms(tensordict, actor_params, critic_params)
        weights = self._maybe_get_priority_weight(tensordict)
        return self._reduce_loss(terms["bc"] + terms["q"], tensordict=tensordict, weights=weights), metadata

    def target_noise(self, next_action: torch.Tensor) -> torch.Tensor:
        """The target-policy smoothing noise ``clip(N(0, policy_noise^2), +-noise_clip)`` (one global-RNG draw)."""
        return (torch.randn_like(next_action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)

    # ------------------------------------------------------------------ losses
    def qvalue_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """Critic loss ``sum_i mean (Q_i(s, a) - y)^2`` and detached diagnostics (``td_error`` per sample)."""
        self._check(tensordict, "qvalue_loss", self._critic_required_keys())
        # Drawn before any network call, as TorchRL's TD3BCLoss does, so the random stream does not depend
        # on the critic mode.
        noise = self.target_noise(tensordict.get(self.tensor_keys.next_action))
        return self.critic_objective(tensordict, self.qvalue_network_params, self.target_actor_network_params,
                                     self.target_qvalue_network_params, noise)

    def _critic_required_keys(self):
        keys = [self.tensor_keys.action, self.tensor_keys.next_action]
        keys += [("next", getattr(self.tensor_keys, k)) for k in ("reward", "done", "terminated")]
        keys += [k for k in self.qvalue_network.in_keys if k != self.tensor_keys.action]
        keys += [("next", k) for k in self.actor_network.in_keys]
        return keys

    def _actor_required_keys(self):
        return [self.tensor_keys.action, *self.actor_network.in_keys,
                *[k for k in self.qvalue_network.in_keys if k != self.tensor_keys.action]]

    def check_inputs(self, tensordict: TensorDictBase) -> None:
        """Raises a clear error if ``tensordict`` lacks a key a loss term reads, has wrong shapes or
        non-finite values (what every ``*_loss`` method checks when ``validate_inputs``)."""
        self._check(tensordict, "qvalue_loss", self._critic_required_keys())
        self._check(tensordict, "actor_loss", self._actor_required_keys())

    def check_actor_inputs(self, tensordict: TensorDictBase) -> None:
        """What ``actor_loss`` checks (when ``validate_inputs``): the keys, shapes and finiteness it reads."""
        self._check(tensordict, "actor_loss", self._actor_required_keys())

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, dict]:
        """``mean(actor_bc_coef ||pi(s) - a||^2 - lambda min_i Q_i(s, pi(s)))``; critics are detached."""
        self.check_actor_inputs(tensordict)
        return self.actor_objective(tensordict, self.actor_network_params, self.qvalue_network_params.detach())

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """All loss terms of one batch: ``loss_qvalue``, ``loss_actor`` and detached diagnostics.

        Writes the per-sample TD error to ``tensor_keys.priority`` of the input, as TorchRL losses do,
        for prioritized replay buffers.
        """
        return self.forward_with(tensordict, self.actor_loss)

    def forward_with(self, tensordict: TensorDictBase, actor_loss) -> TensorDictBase:
        """:meth:`forward` with the actor term ``actor_loss(tensordict) -> (loss, metadata)`` in place of
        :meth:`actor_loss`: how a composed loss (:class:`~ppl_torchrl.objectives.PartialOT`) adds to the actor's
        term without this loss computing its own as well."""
        loss_qvalue, metadata = self.qvalue_loss(tensordict)
        loss_actor, metadata_actor = actor_loss(tensordict)
        tensordict.set(self.tensor_keys.priority, metadata.pop("td_error"))
        return TensorDict({"loss_actor": loss_actor, "loss_qvalue": loss_qvalue, **metadata, **metadata_actor})
