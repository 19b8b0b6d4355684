"""Builders for every loss the recipes can train, and their update step.

One place builds networks, the loss, optimizers and the target updater for each ``loss`` config group:
``ppl`` (PPL^R), ``rebrac``, ``ppl_cql`` (PPL^CQL) and TorchRL's own ``td3_bc``, ``iql``, ``cql``, ``bc``,
so that baselines run in the same harness with the same data and evaluation. ``ppl_<base>`` is the base loss
with the partial-OT potential composed onto it (:class:`~ppl_torchrl.objectives.PartialOT`): the same builder,
the same update, plus the potential's optimizer and f-step.

:func:`make_algorithm` takes typed settings (:mod:`ppl_torchrl.training.config`: :class:`LossConfig`,
:class:`NetworkConfig`, :class:`OptimConfig`, :class:`CompileConfig`); :func:`algorithm_from_config` reads them from a
recipe's Hydra config.

The PPL^R / ReBRAC update (its schedule and the ``compile`` switches) is :class:`ppl_torchrl.update.ReBRACUpdate`;
the other losses' steps are the plain TorchRL ``loss -> backward -> optimizer.step`` loops below, one per
schedule: the delayed-actor loop (TD3+BC) and the joint step (CQL, IQL), each with the f-step where the loss
has a potential.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ValueOperator
from torchrl.objectives import BCLoss, CQLLoss, IQLLoss, SoftUpdate, TD3BCLoss

from ppl_torchrl import keys
from ppl_torchrl.errors import ConfigError
from ppl_torchrl.modules import make_tanh_normal_actor
from ppl_torchrl.objectives import PartialOT, PartialOTCQLLoss, PartialOTLoss, ReBRACLoss
from ppl_torchrl.training.config import CompileConfig, LossConfig, NetworkConfig, OptimConfig
from ppl_torchrl.update import ReBRACUpdate

LOSSES = ("ppl", "ppl_stable", "rebrac", "ppl_cql", "td3_bc", "ppl_td3_bc", "iql", "ppl_iql", "cql", "bc")
#: PPL^R's losses: loss=ppl (the authors' code) and its preset loss=ppl_stable (a potential that stays alive)
PPL_R = ("ppl", "ppl_stable")
#: the losses ReBRACUpdate trains: PPL^R's and ReBRAC
REBRAC_FAMILY = (*PPL_R, "rebrac")


@dataclass
class Algorithm:
    """Everything a training loop needs: the loss, its optimizers, target updater and update step."""

    name: str
    loss: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    policy: TensorDictModule  # evaluated deterministically
    update: Callable[[TensorDictBase, int], TensorDictBase] = field(repr=False)  # one update: (batch, step)
    target_updater: SoftUpdate | None = None
    compiled: bool = False  # the update is torch.compile'd: its first call compiles (tens of seconds)
    #: several consecutive updates in one call, (batches, first step) -> metrics of the last, where the update
    #: has one (:meth:`ppl_torchrl.update.ReBRACUpdate.run`: one compiled graph); None: one call per batch
    update_many: Callable[[list, int], TensorDictBase] | None = field(default=None, repr=False)

    def run_updates(self, batches: list, start_step: int) -> TensorDictBase:
        """``len(batches)`` consecutive updates from step ``start_step``: one :attr:`update_many` call where
        there is one, else one :attr:`update` call per batch."""
        if self.update_many is not None:
            return self.update_many(batches, start_step)
        out = None
        for i, batch in enumerate(batches):
            out = self.update(batch, start_step + i)
        return out

    def state_dict(self) -> dict:
        return {
            "loss": self.loss.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "target_updater": None if self.target_updater is None else self.target_updater.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state["loss"])
        for k, opt in self.optimizers.items():
            # How this process steps (capturable / fused on CUDA, foreach on CPU) is its own, not the saved run's:
            # a CUDA checkpoint resumed on CPU (or the reverse) keeps this device's flags, with Adam's step
            # counters where those flags need them.
            flags = [{f: g[f] for f in ("capturable", "fused", "foreach") if f in g} for g in opt.param_groups]
            opt.load_state_dict(state["optimizers"][k])
            for group, kept in zip(opt.param_groups, flags):
                group.update(kept)
                on_device = bool(group.get("capturable") or group.get("fused"))
                for p in group["params"]:
                    step = opt.state.get(p, {}).get("step")
                    if torch.is_tensor(step):
                        opt.state[p]["step"] = step.to(p.device if on_device else "cpu")
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


def _update_adam(params, lr):
    """Adam for :class:`~ppl_torchrl.update.ReBRACUpdate` (stepped functionally, so never ``fused``); on CUDA
    ``capturable``, so its step counts live on the device, as compiled and CUDA-graph steps need."""
    params = list(params)
    return torch.optim.Adam(params, lr=lr, foreach=True, capturable=params[0].is_cuda)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """zero_grad, backward, step: one optimizer update on ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _joint_update(loss, optimizers: dict, updater: SoftUpdate, terms: tuple, potential_steps: int = 1,
                  lagrange: bool = False) -> Callable:
    """TorchRL's CQL and IQL recipe step: the loss's forward, one step of every optimizer on the sum of its
    ``terms`` (each network's gradient comes from its own terms) plus ``loss_potential`` where the loss composes
    the potential (and ``potential_steps - 1`` more f-steps after it), then the soft target update.

    ``lagrange`` (CQL with ``with_lagrange``): CORL's dual step. alpha' steps on ``loss_alpha_prime`` alone and the
    critic's ``loss_cql`` is weighted by alpha' (a constant to the critic). TorchRL's own recipe sums
    ``loss_alpha_prime`` into the total instead; its gradient then reaches the critic as -alpha'/2 times the CQL
    term's, so the critic's conservative push changes sign once alpha' passes 2 and Q diverges."""
    def update(batch: TensorDictBase, step: int) -> TensorDictBase:
        if "potential" in optimizers:
            loss.set_training_step(step)
        out = loss(batch)
        present = set(out.keys())
        total = None
        for key in (*terms, "loss_potential"):
            if key in present:
                total = out[key] if total is None else total + out[key]
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        if lagrange:
            multiplier = loss.log_alpha_prime
            (multiplier.grad,) = torch.autograd.grad(out["loss_alpha_prime"], [multiplier], retain_graph=True)
            total = total + multiplier.detach().exp().clamp_max(1e6) * out["loss_cql"]  # CQLLoss's clamp
        total.backward()
        for opt in optimizers.values():
            opt.step()
        if "potential" in optimizers and potential_steps > 1:
            out.update(_f_steps(loss, optimizers, batch, step, potential_steps - 1))
        updater.step()
        return out.detach()

    return update


def _f_steps(loss, optimizers: dict, batch, step: int, n: int) -> dict:
    """``n`` f-steps on ``batch`` (the potential's optimizer on ``loss.potential_loss``); their last diagnostics."""
    out = {}
    for _ in range(n):
        loss_f, metadata = loss.potential_loss(batch)
        optimizer_step(optimizers["potential"], loss_f)
        out = dict(loss_potential=loss_f.detach(), **metadata)
    return out


def _delayed_actor_update(loss, optimizers: dict, updater: SoftUpdate, policy_freq: int,
                          potential_steps: int = 1) -> Callable:
    """TorchRL's TD3+BC recipe step: the critic every step; every ``policy_freq``-th step the actor, the soft
    target update and (where the loss composes the potential) ``potential_steps`` f-steps on the updated target
    actor."""
    def update(batch: TensorDictBase, step: int) -> TensorDictBase:
        if "potential" in optimizers:
            loss.set_training_step(step)
        loss_q, _ = loss.qvalue_loss(batch)
        optimizer_step(optimizers["critic"], loss_q)
        out = {"loss_qvalue": loss_q.detach()}
        if step % policy_freq == 0:
            loss_a, _ = loss.actor_loss(batch)
            optimizer_step(optimizers["actor"], loss_a)
            updater.step()
            out["loss_actor"] = loss_a.detach()
            if "potential" in optimizers:
                out.update(_f_steps(loss, optimizers, batch, step, potential_steps))
        return TensorDict(out)

    return update


def _compose_potential(loss, lc: LossConfig, net: NetworkConfig, obs_dim: int, act_dim: int, device) -> PartialOT:
    """``loss`` with the partial-OT potential added (the ``ppl_<base>`` losses): ``lc.w``, ``lc.potential_*``."""
    potential = net.potential(obs_dim, act_dim, device)
    return PartialOT(loss, potential, w=lc.w, potential_uses_target_actor=lc.potential_uses_target_actor,
                     **lc.potential_settings())


def _single_critic(obs_dim, act_dim, hidden, depth, device, value=False):
    in_keys = [keys.OBSERVATION] if value else [keys.OBSERVATION, keys.ACTION]
    net = MLP(in_features=obs_dim + (0 if value else act_dim), out_features=1,
              num_cells=[hidden] * depth, activation_class=nn.ReLU)
    return ValueOperator(net, in_keys=in_keys).to(device)


COMPILE_AUTO_MIN_STEPS = 100_000  # below this, compiling (~30-60 s on a small CPU) costs more than it saves


def resolve_compile(enabled: bool | str, loss_name: str, steps: int, device: torch.device | str = "cpu") -> bool:
    """Whether the update is compiled: ``compile.enabled`` true/false, or ``auto`` (true for PPL^R / ReBRAC runs
    of at least :data:`COMPILE_AUTO_MIN_STEPS` steps where inductor can build kernels: a C++ compiler on CPU,
    triton on CUDA)."""
    if isinstance(enabled, str):
        if enabled.lower() != "auto":
            raise ValueError(f"compile.enabled={enabled!r}: use true, false or auto.")
        from ppl_torchrl.update import compiler_available

        return loss_name in REBRAC_FAMILY and int(steps) >= COMPILE_AUTO_MIN_STEPS and compiler_available(device)
    return bool(enabled)


def compile_config(section, loss_name: str, steps: int, device: torch.device | str = "cpu") -> CompileConfig:
    """The ``compile`` section resolved for a run of ``steps`` updates of ``loss_name`` on ``device``
    (:func:`resolve_compile`); with ``enabled=auto`` a failed compilation falls back to the eager update with a
    warning, with ``true`` it raises."""
    return CompileConfig(enabled=resolve_compile(section.enabled, loss_name, steps, device), mode=section.mode,
                         backend=section.backend, cudagraphs=bool(section.cudagraphs),
                         fallback=isinstance(section.enabled, str))


def algorithm_from_config(cfg, obs_dim: int, act_dim: int, device: torch.device | str = "cpu") -> Algorithm:
    """The recipes' adapter: :func:`make_algorithm` from the Hydra config's ``loss``, ``model``, ``optim`` and
    ``compile`` sections (``optim.steps`` only decides ``compile.enabled=auto``)."""
    loss = LossConfig.from_config(cfg.loss)
    return make_algorithm(loss, NetworkConfig.from_config(cfg.model), OptimConfig.from_config(cfg.optim), obs_dim,
                          act_dim, device, compile=compile_config(cfg.compile, loss.name, cfg.optim.steps, device))


def make_algorithm(loss: LossConfig, network: NetworkConfig, optim: OptimConfig, obs_dim: int, act_dim: int,
                   device: torch.device | str = "cpu", compile: CompileConfig = CompileConfig()) -> Algorithm:
    """Builds the algorithm ``loss.name``: its networks (``network``), loss (``loss``'s settings), optimizers, target
    updater and update step (``optim``: every learning rate, ``tau``, ``policy_freq``, ``gamma``), run as
    ``compile`` says (eager by default)."""
    name = loss.name
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; choose one of {LOSSES} (hydra: loss=<name>).")
    compiled = bool(compile.enabled)
    common = dict(net=network, optim=optim, obs_dim=obs_dim, act_dim=act_dim, device=device)
    if compile.cudagraphs and not (compiled and name in REBRAC_FAMILY):
        enabled = "auto" if compile.fallback else str(compiled).lower()
        raise ConfigError(f"compile.cudagraphs=true replays the compiled PPL^R/ReBRAC update; this run (loss={name}, "
                          f"compile.enabled={enabled} -> {'compiled' if compiled else 'eager'}) has none. "
                          "Set compile.enabled=true with loss=ppl or rebrac, or compile.cudagraphs=false.")
    if name in REBRAC_FAMILY:
        return _make_rebrac_family(name, loss, compile=compiled, compile_mode=compile.mode,
                                   compile_backend=compile.backend, cudagraphs=compile.cudagraphs,
                                   fallback=compile.fallback, **common)
    builder = {"cql": _make_cql_family, "ppl_cql": _make_cql_family, "td3_bc": _make_td3_bc,
               "ppl_td3_bc": _make_td3_bc, "iql": _make_iql, "ppl_iql": _make_iql, "bc": _make_bc}[name]
    algorithm = builder(name, loss, **common)
    if compiled:  # TorchRL's own losses: torch.compile of their eager step, as TorchRL's recipes do
        algorithm.update = torch.compile(algorithm.update, mode=compile.mode, backend=compile.backend)
        algorithm.compiled = True
    return algorithm


# Each builder: (loss name, the loss's settings, *, networks, optimizer settings, dimensions, device).


def _make_rebrac_family(name: str, lc: LossConfig, *, net: NetworkConfig, optim: OptimConfig, obs_dim: int, act_dim: int,
                        device, compile: bool = False, compile_mode=None, compile_backend: str = "inductor",
                        cudagraphs: bool = False, fallback: bool = False) -> Algorithm:
    actor, qvalue = net.actor(obs_dim, act_dim, device), net.critics(obs_dim, act_dim, device)
    common = dict(
        actor_bc_coef=lc.actor_bc_coef, critic_bc_coef=lc.critic_bc_coef, policy_noise=lc.policy_noise,
        noise_clip=lc.noise_clip, normalize_q=lc.normalize_q, critic_next_action=lc.critic_next_action,
        validate_inputs=lc.validate_inputs,
    )
    if name in PPL_R:
        potential = net.potential(obs_dim, act_dim, device)
        loss = PartialOTLoss(actor, qvalue, potential, w=lc.w,
                             potential_uses_target_actor=lc.potential_uses_target_actor, **lc.potential_settings(),
                             **common)
    else:
        loss = ReBRACLoss(actor, qvalue, **common)
    loss.make_value_estimator(gamma=optim.gamma)
    opts = {
        "actor": _update_adam(loss.actor_network_params.values(True, True), optim.actor_lr),
        "critic": _update_adam(loss.qvalue_network_params.values(True, True), optim.critic_lr),
    }
    if name in PPL_R:
        opts["potential"] = _update_adam(loss.potential_network_params.values(True, True), optim.potential_lr)
    update = ReBRACUpdate(loss, opts, tau=optim.tau, policy_freq=optim.policy_freq, compile=compile,
                          mode=compile_mode, backend=compile_backend, cudagraphs=cudagraphs, fallback=fallback,
                          potential_steps=int(lc.potential_steps))
    return Algorithm(name, loss, opts, actor, update, None, compiled=compile, update_many=update.run)


def _make_cql_family(name: str, lc: LossConfig, *, net: NetworkConfig, optim: OptimConfig, obs_dim: int, act_dim: int,
                     device) -> Algorithm:
    actor = make_tanh_normal_actor(obs_dim, act_dim, hidden_dim=net.hidden_dim, num_hidden=net.num_hidden,
                                   device=device)
    qvalue = _single_critic(obs_dim, act_dim, net.hidden_dim, lc.q_num_hidden, device)
    # CORL's cql_target_action_gap bounds logsumexp Q - Q(data); TorchRL's lagrange_thresh bounds that gap times
    # min_q_weight, so the config's (CORL's) value is converted here, its one place.
    kwargs = dict(
        action_spec=Bounded(-torch.ones(act_dim), torch.ones(act_dim), (act_dim,)),
        loss_function="l2", num_random=lc.num_random, with_lagrange=lc.with_lagrange,
        lagrange_thresh=lc.min_q_weight * lc.lagrange_thresh, max_q_backup=lc.max_q_backup,
        deterministic_backup=lc.deterministic_backup, min_q_weight=lc.min_q_weight,
        temperature=lc.temperature,
    )
    if name == "ppl_cql":
        potential = net.potential(obs_dim, act_dim, device)
        loss = PartialOTCQLLoss(actor, qvalue, potential, w=lc.w, **lc.potential_settings(), **kwargs)
    else:
        loss = CQLLoss(actor, qvalue, **kwargs)
    # CORL's CQL learning rates and discount: recipes/config/loss/cql.yaml sets them in optim, like any other loss
    loss.make_value_estimator(gamma=optim.gamma)
    updater = SoftUpdate(loss, tau=optim.tau)
    opts = {
        "actor": _adam(loss.actor_network_params.values(True, True), optim.actor_lr),
        "critic": _adam(loss.qvalue_network_params.values(True, True), optim.critic_lr),
        "alpha": _adam([loss.log_alpha], optim.actor_lr),
    }
    if lc.with_lagrange:
        with torch.no_grad():
            loss.log_alpha_prime.fill_(1.0)  # CORL's start, alpha' = e (TorchRL's is alpha' = 1)
        opts["alpha_prime"] = _adam([loss.log_alpha_prime], optim.critic_lr)
    if name == "ppl_cql":
        opts["potential"] = _adam(loss.potential_network_params.values(True, True), optim.potential_lr)

    terms = ("loss_qvalue", "loss_actor", "loss_alpha") + (() if lc.with_lagrange else ("loss_cql",))
    update = _joint_update(loss, opts, updater, terms, int(lc.potential_steps), lagrange=lc.with_lagrange)
    return Algorithm(name, loss, opts, actor, update, updater)


def _make_td3_bc(name: str, lc: LossConfig, *, net: NetworkConfig, optim: OptimConfig, obs_dim: int, act_dim: int,
                 device) -> Algorithm:
    actor = net.actor(obs_dim, act_dim, device)
    qvalue = _single_critic(obs_dim, act_dim, net.hidden_dim, net.num_hidden, device)
    loss = TD3BCLoss(actor, qvalue, bounds=(-1.0, 1.0), num_qvalue_nets=net.num_qvalue_nets, alpha=lc.alpha,
                     policy_noise=lc.policy_noise, noise_clip=lc.noise_clip, loss_function="l2")
    if name == "ppl_td3_bc":
        loss = _compose_potential(loss, lc, net, obs_dim, act_dim, device)
    loss.make_value_estimator(gamma=optim.gamma)
    updater = SoftUpdate(loss, tau=optim.tau)
    opts = {
        "actor": _adam(loss.actor_network_params.values(True, True), optim.actor_lr),
        "critic": _adam(loss.qvalue_network_params.values(True, True), optim.critic_lr),
    }

    if name == "ppl_td3_bc":
        opts["potential"] = _adam(loss.potential_network_params.values(True, True), optim.potential_lr)
    update = _delayed_actor_update(loss, opts, updater, optim.policy_freq, int(lc.potential_steps))
    return Algorithm(name, loss, opts, actor, update, updater)


def _make_iql(name: str, lc: LossConfig, *, net: NetworkConfig, optim: OptimConfig, obs_dim: int, act_dim: int,
              device) -> Algorithm:
    actor = make_tanh_normal_actor(obs_dim, act_dim, hidden_dim=net.hidden_dim, num_hidden=net.num_hidden,
                                   device=device)
    qvalue = _single_critic(obs_dim, act_dim, net.hidden_dim, net.num_hidden, device)
    value = _single_critic(obs_dim, act_dim, net.hidden_dim, net.num_hidden, device, value=True)
    loss = IQLLoss(actor, qvalue, value, num_qvalue_nets=net.num_qvalue_nets, temperature=lc.temperature,
                   expectile=lc.expectile, loss_function="l2")
    if name == "ppl_iql":
        loss = _compose_potential(loss, lc, net, obs_dim, act_dim, device)
    loss.make_value_estimator(gamma=optim.gamma)
    updater = SoftUpdate(loss, tau=optim.tau)
    opts = {
        "actor": _adam(loss.actor_network_params.values(True, True), optim.actor_lr),
        "critic": _adam(list(loss.qvalue_network_params.values(True, True))
                        + list(loss.value_network_params.values(True, True)), optim.critic_lr),
    }

    if name == "ppl_iql":
        opts["potential"] = _adam(loss.potential_network_params.values(True, True), optim.potential_lr)
    update = _joint_update(loss, opts, updater, ("loss_actor", "loss_qvalue", "loss_value"),
                           int(lc.potential_steps))
    return Algorithm(name, loss, opts, actor, update, updater)


def _make_bc(name: str, lc: LossConfig, *, net: NetworkConfig, optim: OptimConfig, obs_dim: int, act_dim: int,
             device) -> Algorithm:
    actor = net.actor(obs_dim, act_dim, device)
    loss = BCLoss(actor, loss_function="l2")
    opts = {"actor": _adam(loss.actor_network_params.values(True, True), optim.actor_lr)}

    def update(batch, step):
        out = loss(batch)
        optimizer_step(opts["actor"], out["loss_bc"])
        return out.detach()

    return Algorithm(name, loss, opts, actor, update, None)
