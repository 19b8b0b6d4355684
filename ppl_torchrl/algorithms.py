"""Builders for every loss the recipes can train, and their update step.

One place builds networks, the loss, optimizers and the target updater for each ``loss`` config group:
``ppl`` (PPL^R), ``rebrac``, ``ppl_cql`` (PPL^CQL) and TorchRL's own ``td3_bc``, ``iql``, ``cql``, ``bc``,
so that baselines run in the same harness with the same data and evaluation.

The PPL^R / ReBRAC step follows the authors' code (PPL_NOTES §1.4):

* every step: critic;
* every ``policy_freq``-th step (counter ``% policy_freq == 0``): actor, then the targets move
  towards the *pre-update* actor (``SoftUpdate`` runs between the actor's backward and its optimizer
  step) and the freshly updated critic, then the potential on the new target actor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import BCLoss, CQLLoss, IQLLoss, SoftUpdate, TD3BCLoss

from ppl_torchrl import keys
from ppl_torchrl.modules import make_actor, make_potential, make_qvalue_ensemble
from ppl_torchrl.objectives import PartialOTCQLLoss, PartialOTLoss, ReBRACLoss

LOSSES = ("ppl", "rebrac", "ppl_cql", "td3_bc", "iql", "cql", "bc")


@dataclass
class Algorithm:
    """Everything a training loop needs: the loss, its optimizers, target updater and update step."""

    name: str
    loss: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    policy: TensorDictModule  # evaluated deterministically
    update: Callable[[TensorDictBase, int], TensorDictBase] = field(repr=False)
    target_updater: SoftUpdate | None = None

    def state_dict(self) -> dict:
        return {
            "loss": self.loss.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "target_updater": None if self.target_updater is None else self.target_updater.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state["loss"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        if self.target_updater is not None and state.get("target_updater") is not None:
            self.target_updater.load_state_dict(state["target_updater"])


def _adam(params, lr, fused: bool | None = None):
    params = list(params)
    kwargs = {}
    if fused is None:  # fused Adam is the fastest where available (CUDA, recent CPU builds)
        fused = params[0].is_cuda
    if fused:
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    return torch.optim.Adam(params, lr=lr, **kwargs)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """zero_grad, backward, step: one optimizer update on ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _tanh_normal_actor(obs_dim, act_dim, hidden, depth, device):
    net = nn.Sequential(
        MLP(in_features=obs_dim, out_features=2 * act_dim, num_cells=[hidden] * depth, activation_class=nn.ReLU),
        NormalParamExtractor(),
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=[keys.OBSERVATION], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"], out_keys=[keys.ACTION], distribution_class=TanhNormal,
        spec=Bounded(-torch.ones(act_dim), torch.ones(act_dim), (act_dim,)),
        return_log_prob=False,
    ).to(device)


def _single_critic(obs_dim, act_dim, hidden, depth, device, value=False):
    in_keys = [keys.OBSERVATION] if value else [keys.OBSERVATION, keys.ACTION]
    net = MLP(in_features=obs_dim + (0 if value else act_dim), out_features=1,
              num_cells=[hidden] * depth, activation_class=nn.ReLU)
    return ValueOperator(net, in_keys=in_keys).to(device)


COMPILE_AUTO_MIN_STEPS = 100_000  # below this, compiling (~30-60 s on a small CPU) costs more than it saves


def resolve_compile(cfg, device: torch.device | str = "cpu") -> bool:
    """Whether the PPL^R / ReBRAC update is compiled (:mod:`ppl_torchrl.compiled`): ``compile`` true/false,
    or ``auto`` (true for runs of at least :data:`COMPILE_AUTO_MIN_STEPS` steps where inductor can build
    kernels: a C++ compiler on CPU, triton on CUDA)."""
    value = cfg.get("compile", False)
    if isinstance(value, str):
        if value.lower() != "auto":
            raise ValueError(f"compile={value!r}: use true, false or auto.")
        from ppl_torchrl.compiled import compiler_available

        steps = int(cfg.get("optim", {}).get("steps", 0) or 0)
        return steps >= COMPILE_AUTO_MIN_STEPS and compiler_available(device)
    return bool(value)


def make_algorithm(cfg, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> Algorithm:
    """Builds the algorithm named ``cfg.loss.name`` from the recipe config.

    Reads ``cfg.loss`` (loss hyper-parameters), ``cfg.model`` (``hidden_dim``, ``num_hidden``,
    ``num_qvalue_nets``), ``cfg.optim`` (``actor_lr``, ``critic_lr``, ``potential_lr_scale``, ``tau``,
    ``policy_freq``, ``gamma``) and, for ``ppl`` / ``rebrac``, the speed switches ``compile``
    (:func:`resolve_compile`), ``compile_mode`` and ``loss.fused_update``. Other losses are compiled, if
    asked, by the trainer (``torch.compile`` of their update).
    """
    name = cfg.loss.name
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; choose one of {LOSSES} (hydra: loss=<name>).")
    m, o, lc = cfg.model, cfg.optim, cfg.loss
    if name in ("ppl", "rebrac"):
        compiled = resolve_compile(cfg, device)
        # compile=auto: a failed compilation falls back to the eager fused update; compile=true raises.
        fallback = isinstance(cfg.get("compile"), str)
        return _make_rebrac_family(name, lc, m, o, obs_dim, act_dim, device, compiled, cfg.get("compile_mode"),
                                   fallback)
    if name in ("cql", "ppl_cql"):
        return _make_cql_family(name, lc, m, o, obs_dim, act_dim, device)
    if name == "td3_bc":
        return _make_td3_bc(lc, m, o, obs_dim, act_dim, device)
    if name == "iql":
        return _make_iql(lc, m, o, obs_dim, act_dim, device)
    return _make_bc(lc, m, o, obs_dim, act_dim, device)


def _make_rebrac_family(name, lc, m, o, obs_dim, act_dim, device, compiled=False, compile_mode=None,
                        fallback=False) -> Algorithm:
    # model.fast_linear: GEMMs of the networks on the fastest measured CPU backend (ppl_torchrl.fast).
    fast_linear = bool(m.get("fast_linear", False))
    actor = make_actor(obs_dim, act_dim, hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device,
                       fast_linear=fast_linear)
    qvalue = make_qvalue_ensemble(obs_dim, act_dim, num_qvalue_nets=m.num_qvalue_nets,
                                  hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device,
                                  fast_linear=fast_linear)
    common = dict(
        actor_bc_coef=lc.actor_bc_coef, critic_bc_coef=lc.critic_bc_coef, policy_noise=lc.policy_noise,
        noise_clip=lc.noise_clip, normalize_q=lc.normalize_q, critic_next_action=lc.get("critic_next_action", "policy"),
        validate_inputs=lc.get("validate_inputs", True),
    )
    if name == "ppl":
        potential = make_potential(obs_dim, act_dim, hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device,
                                   fast_linear=fast_linear)
        loss = PartialOTLoss(actor, qvalue, potential, w=lc.w,
                             potential_uses_target_actor=lc.potential_uses_target_actor, **common)
    else:
        loss = ReBRACLoss(actor, qvalue, **common)
    loss.make_value_estimator(gamma=o.gamma)
    updater = SoftUpdate(loss, tau=o.tau)
    opts = {
        "actor": _adam(loss.actor_network_params.values(True, True), o.actor_lr),
        "critic": _adam(loss.qvalue_network_params.values(True, True), o.critic_lr),
    }
    use_potential = name == "ppl"
    if use_potential:
        opts["potential"] = _adam(loss.potential_network_params.values(True, True), o.critic_lr * o.potential_lr_scale)

    def update(batch: TensorDictBase, step: int) -> TensorDictBase:
        loss_q, md = loss.qvalue_loss(batch)
        optimizer_step(opts["critic"], loss_q)
        out = {"loss_qvalue": loss_q.detach(), "pred_value": md["pred_value"], "target_value": md["target_value"]}
        if step % o.policy_freq == 0:
            loss_a, md_a = loss.actor_loss(batch)
            opts["actor"].zero_grad(set_to_none=True)
            loss_a.backward()
            # Authors' order: targets move towards the pre-update actor, then the actor steps.
            updater.step()
            opts["actor"].step()
            out.update(loss_actor=loss_a.detach(), **md_a)
            if use_potential:
                loss_f, md_f = loss.potential_loss(batch)
                optimizer_step(opts["potential"], loss_f)
                out.update(loss_potential=loss_f.detach(), **md_f)
        return TensorDict(out)

    algorithm = Algorithm(name, loss, opts, actor, update, updater)
    if compiled:
        # Each step kind as one compiled graph: gradients by torch.func, Adam on the optimizers' state.
        from ppl_torchrl.compiled import apply_compiled

        apply_compiled(algorithm, tau=o.tau, policy_freq=o.policy_freq, mode=compile_mode, fallback=fallback)
    elif lc.get("fused_update", False):
        # Same math, schedule, RNG stream, parameters and optimizers on plain tensors (ppl_torchrl.fast).
        from ppl_torchrl.fast import apply_to

        apply_to(algorithm, tau=o.tau, policy_freq=o.policy_freq)
    return algorithm


def _make_cql_family(name, lc, m, o, obs_dim, act_dim, device) -> Algorithm:
    actor = _tanh_normal_actor(obs_dim, act_dim, m.hidden_dim, m.num_hidden, device)
    qvalue = _single_critic(obs_dim, act_dim, m.hidden_dim, lc.get("q_num_hidden", m.num_hidden), device)
    kwargs = dict(
        action_spec=Bounded(-torch.ones(act_dim), torch.ones(act_dim), (act_dim,)),
        loss_function="l2", num_random=lc.num_random, with_lagrange=lc.with_lagrange,
        lagrange_thresh=lc.lagrange_thresh, max_q_backup=lc.max_q_backup,
        deterministic_backup=lc.deterministic_backup, min_q_weight=lc.min_q_weight,
        temperature=lc.temperature,
    )
    if name == "ppl_cql":
        potential = make_potential(obs_dim, act_dim, hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device)
        loss = PartialOTCQLLoss(actor, qvalue, potential, w=lc.w, **kwargs)
    else:
        loss = CQLLoss(actor, qvalue, **kwargs)
    # CQL keeps CORL's own learning rates and gamma (loss config), not ReBRAC's per-dataset ones.
    actor_lr, critic_lr = lc.get("actor_lr", o.actor_lr), lc.get("critic_lr", o.critic_lr)
    loss.make_value_estimator(gamma=lc.get("gamma", o.gamma))
    updater = SoftUpdate(loss, tau=o.tau)
    opts = {
        "actor": _adam(loss.actor_network_params.values(True, True), actor_lr),
        "critic": _adam(loss.qvalue_network_params.values(True, True), critic_lr),
        "alpha": _adam([loss.log_alpha], actor_lr),
    }
    if lc.with_lagrange:
        opts["alpha_prime"] = _adam([loss.log_alpha_prime], critic_lr)
    if name == "ppl_cql":
        opts["potential"] = _adam(loss.potential_network_params.values(True, True), critic_lr * o.potential_lr_scale)

    def update(batch: TensorDictBase, step: int) -> TensorDictBase:
        out = loss(batch)
        critic_loss = out["loss_qvalue"] + out["loss_cql"]
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        total = critic_loss + out["loss_actor"] + out["loss_alpha"]
        if "loss_alpha_prime" in out.keys():
            total = total + out["loss_alpha_prime"]
        if "loss_potential" in out.keys():
            total = total + out["loss_potential"]
        total.backward()
        for opt in opts.values():
            opt.step()
        updater.step()
        return out.detach()

    return Algorithm(name, loss, opts, actor, update, updater)


def _make_td3_bc(lc, m, o, obs_dim, act_dim, device) -> Algorithm:
    actor = make_actor(obs_dim, act_dim, hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device)
    qvalue = _single_critic(obs_dim, act_dim, m.hidden_dim, m.num_hidden, device)
    loss = TD3BCLoss(actor, qvalue, bounds=(-1.0, 1.0), num_qvalue_nets=m.num_qvalue_nets, alpha=lc.alpha,
                     policy_noise=lc.policy_noise, noise_clip=lc.noise_clip, loss_function="l2")
    loss.make_value_estimator(gamma=o.gamma)
    updater = SoftUpdate(loss, tau=o.tau)
    opts = {
        "actor": _adam(loss.actor_network_params.values(True, True), o.actor_lr),
        "critic": _adam(loss.qvalue_network_params.values(True, True), o.critic_lr),
    }

    def update(batch, step):
        loss_q, md = loss.qvalue_loss(batch)
        optimizer_step(opts["critic"], loss_q)
        out = {"loss_qvalue": loss_q.detach()}
        if step % o.policy_freq == 0:
            loss_a, md_a = loss.actor_loss(batch)
            optimizer_step(opts["actor"], loss_a)
            updater.step()
            out["loss_actor"] = loss_a.detach()
        return TensorDict(out)

    return Algorithm("td3_bc", loss, opts, actor, update, updater)


def _make_iql(lc, m, o, obs_dim, act_dim, device) -> Algorithm:
    actor = _tanh_normal_actor(obs_dim, act_dim, m.hidden_dim, m.num_hidden, device)
    qvalue = _single_critic(obs_dim, act_dim, m.hidden_dim, m.num_hidden, device)
    value = _single_critic(obs_dim, act_dim, m.hidden_dim, m.num_hidden, device, value=True)
    loss = IQLLoss(actor, qvalue, value, num_qvalue_nets=m.num_qvalue_nets, temperature=lc.temperature,
                   expectile=lc.expectile, loss_function="l2")
    loss.make_value_estimator(gamma=o.gamma)
    updater = SoftUpdate(loss, tau=o.tau)
    opts = {
        "actor": _adam(loss.actor_network_params.values(True, True), o.actor_lr),
        "critic": _adam(list(loss.qvalue_network_params.values(True, True))
                        + list(loss.value_network_params.values(True, True)), o.critic_lr),
    }

    def update(batch, step):
        out = loss(batch)
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        (out["loss_actor"] + out["loss_qvalue"] + out["loss_value"]).backward()
        for opt in opts.values():
            opt.step()
        updater.step()
        return out.detach()

    return Algorithm("iql", loss, opts, actor, update, updater)


def _make_bc(lc, m, o, obs_dim, act_dim, device) -> Algorithm:
    actor = make_actor(obs_dim, act_dim, hidden_dim=m.hidden_dim, num_hidden=m.num_hidden, device=device)
    loss = BCLoss(actor, loss_function="l2")
    opts = {"actor": _adam(loss.actor_network_params.values(True, True), o.actor_lr)}

    def update(batch, step):
        out = loss(batch)
        optimizer_step(opts["actor"], out["loss_bc"])
        return out.detach()

    return Algorithm("bc", loss, opts, actor, update, None)
