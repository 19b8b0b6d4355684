"""Fast path for the PPL^R / ReBRAC update: GEMM backend choice, fast linear layers, a fused step.

Why this exists. On some CPUs torch's default fp32 GEMM (MKL) takes a slow generic path: on AMD Zen 5,
MKL runs a 1024x256 @ 256x256 product at about half the speed oneDNN reaches. And at the AntMaze shape
(batch 256) one update is only ~1.3 GFLOP, so a few milliseconds of Python per step (TensorDict
construction, key lookups, ``params.to_module`` swaps, input checks) cost as much as the arithmetic.

What it offers:

* :func:`gemm_plan` measures, once per process and device, which backend (``"aten"``: torch's default
  GEMM, ``"onednn"``: ``torch.ops.mkldnn._linear_pointwise``) is fastest for each of the three GEMMs of
  a linear layer (forward ``x W^T``, input gradient ``g W``, weight gradient ``g^T x``), and routes them
  there. ``PPL_TORCHRL_GEMM=aten|onednn`` forces one backend (skips the measurement).
* :func:`fast_linear`, :class:`FastLinear` (a drop-in ``nn.Linear``), :func:`fast_ensemble_linear` and
  :class:`FastEnsembleLinear` (drop-in for :class:`ppl_torchrl.modules.EnsembleLinear`): the same math as
  ``F.linear`` / ``baddbmm``, with forward and backward GEMMs on the chosen backends.
* :class:`FusedReBRACUpdate`: the update step of :func:`ppl_torchrl.algorithms.make_algorithm` for
  ``ppl`` / ``rebrac`` (same schedule, same math, same random stream, same optimizers and parameters)
  on plain tensors, read once from the loss module: no TensorDict work in the hot loop.

Off CPU (CUDA) every GEMM stays on ``"aten"`` (cuBLAS); the fused step still removes Python overhead.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ppl_torchrl.algorithms import optimizer_step
from ppl_torchrl.modules import EnsembleLayerNorm, EnsembleLinear

__all__ = [
    "BACKENDS",
    "GemmPlan",
    "onednn_available",
    "gemm_nt",
    "measure_gemm",
    "gemm_plan",
    "set_gemm_plan",
    "fast_linear",
    "fast_ensemble_linear",
    "FastLinear",
    "FastEnsembleLinear",
    "FusedReBRACUpdate",
    "apply_to",
]

BACKENDS = ("aten", "onednn")
GEMM_KINDS = ("forward", "grad_input", "grad_weight")
ENV_VAR = "PPL_TORCHRL_GEMM"
# oneDNN replaces torch's GEMM only when clearly faster: routing through it costs a Python autograd
# Function (and a loop over ensemble members), so a 5-10 % GEMM gain measured on a noisy machine
# turned into a slower update (seen here: fused PPL^R at 0.98x the default update).
MIN_GAIN = 1.2


# ---------------------------------------------------------------------------------------------- GEMM
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fp32 linear kernel (CPU builds with MKLDNN)."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def gemm_nt(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, backend: str = "aten") -> torch.Tensor:
    """``a @ b.T (+ bias)`` (``a [.., M, K]``, ``b [N, K]``) on ``backend``; strided views are accepted."""
    if backend == "onednn" and a.device.type == "cpu" and a.dtype == torch.float32:
        return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
    return F.linear(a, b, bias)


def _operands(kind: str, m: int, k: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Operands laid out as the linear layer's GEMM ``kind`` sees them (same strides)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(m, k, generator=g).to(device)
    w = torch.randn(n, k, generator=g).to(device)
    gy = torch.randn(m, n, generator=g).to(device)
    if kind == "forward":
        return x, w  # x @ W^T
    if kind == "grad_input":
        return gy, w.t()  # gy @ W
    return gy.t(), x.t()  # gy^T @ x


def measure_gemm(
    backend: str, m: int = 1024, k: int = 256, n: int = 256, *, kind: str = "forward",
    device: torch.device | str = "cpu", min_time: float = 0.05, repeats: int = 5,
) -> float:
    """GFLOP/s of one GEMM of a linear layer (``kind`` in :data:`GEMM_KINDS`) on ``backend``: median of
    ``repeats`` timings of at least ``min_time`` seconds each, after a warm-up."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown GEMM backend {backend!r}; choose one of {BACKENDS}.")
    if kind not in GEMM_KINDS:
        raise ValueError(f"Unknown GEMM kind {kind!r}; choose one of {GEMM_KINDS}.")
    device = torch.device(device)
    a, b = _operands(kind, m, k, n, device)
    out_n = b.shape[0]
    flops = 2.0 * a.shape[0] * a.shape[1] * out_n
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        gemm_nt(a, b, None, backend)
    sync()
    t0 = time.perf_counter()
    gemm_nt(a, b, None, backend)
    sync()
    once = max(time.perf_counter() - t0, 1e-6)
    iters = max(1, int(min_time / once))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            gemm_nt(a, b, None, backend)
        sync()
        times.append((time.perf_counter() - t0) / iters)
    times.sort()
    return flops / times[len(times) // 2] / 1e9


@dataclass(frozen=True)
class GemmPlan:
    """Backend of each GEMM of a linear layer, and the throughputs (GFLOP/s) that chose it."""

    forward: str = "aten"
    grad_input: str = "aten"
    grad_weight: str = "aten"
    measured: tuple = ()  # ((kind, backend, gflops), ...)

    def __post_init__(self):
        for kind in GEMM_KINDS:
            if getattr(self, kind) not in BACKENDS:
                raise ValueError(f"GemmPlan.{kind} must be one of {BACKENDS}, got {getattr(self, kind)!r}.")


_PLANS: dict[str, GemmPlan] = {}


def set_gemm_plan(plan: GemmPlan | str | None, device: torch.device | str = "cpu") -> None:
    """Fixes the plan for ``device`` (a :class:`GemmPlan` or a backend name for all three GEMMs);
    ``None`` forgets it so the next :func:`gemm_plan` call measures again."""
    key = torch.device(device).type
    if plan is None:
        _PLANS.pop(key, None)
        return
    if isinstance(plan, str):
        plan = GemmPlan(plan, plan, plan)
    _PLANS[key] = plan


def gemm_plan(device: torch.device | str = "cpu", *, shape: tuple[int, int, int] = (1024, 256, 256)) -> GemmPlan:
    """The fastest backend per GEMM kind on ``device``, measured at the first call (~0.5 s on CPU).

    ``PPL_TORCHRL_GEMM=aten|onednn`` forces a backend without measuring. Non-CPU devices and builds
    without oneDNN always get ``"aten"``. oneDNN must be :data:`MIN_GAIN` times as fast to replace
    ``"aten"`` (medians of 5 interleaved timings), so noise does not flip the choice for nothing.
    """
    key = torch.device(device).type
    if key in _PLANS:
        return _PLANS[key]
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{ENV_VAR}={forced!r} is not a GEMM backend; use one of {BACKENDS} or unset it.")
        plan = GemmPlan(forced, forced, forced)
    elif key != "cpu" or not onednn_available():
        plan = GemmPlan()
    else:
        chosen, measured = {}, []
        for kind in GEMM_KINDS:
            runs = {b: [] for b in BACKENDS}
            for _ in range(5):  # interleaved, so a burst of load from elsewhere hits both backends alike
                for b in BACKENDS:
                    runs[b].append(measure_gemm(b, *shape, kind=kind, device=device, min_time=0.01, repeats=1))
            speed = {b: sorted(v)[len(v) // 2] for b, v in runs.items()}
            measured += [(kind, b, round(s, 1)) for b, s in speed.items()]
            chosen[kind] = "onednn" if speed["onednn"] > MIN_GAIN * speed["aten"] else "aten"
        plan = GemmPlan(**chosen, measured=tuple(measured))
    _PLANS[key] = plan
    return plan


# ---------------------------------------------------------------------------------------------- linear
class _FastLinearFn(torch.autograd.Function):
    """``y = x W^T + b`` whose three GEMMs run on the backends of a :class:`GemmPlan`."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan: GemmPlan):
        ctx.save_for_backward(x, weight)
        ctx.plan = plan
        ctx.has_bias = bias is not None
        return gemm_nt(x, weight, bias, plan.forward)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        plan = ctx.plan
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = gemm_nt(gy, weight.t(), None, plan.grad_input)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            g2 = gy.reshape(-1, gy.shape[-1])
            if ctx.needs_input_grad[1]:
                gw = gemm_nt(g2.t(), x.reshape(-1, x.shape[-1]).t(), None, plan.grad_weight)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                gb = g2.sum(0)
        return gx, gw, gb, None


def fast_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                plan: GemmPlan | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with its GEMMs on the fastest measured backends (fp32 CPU);
    other dtypes and devices go straight to ``F.linear``."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return F.linear(x, weight, bias)
    plan = gemm_plan(x.device) if plan is None else plan
    if plan.forward == plan.grad_input == plan.grad_weight == "aten":
        return F.linear(x, weight, bias)
    return _FastLinearFn.apply(x, weight, bias, plan)


class FastLinear(nn.Linear):
    """``nn.Linear`` (same parameters, init and state dict) computed by :func:`fast_linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_linear(x, self.weight, self.bias)


class _FastEnsembleLinearFn(torch.autograd.Function):
    """``y_i = x_i W_i + b_i`` for ensemble members ``i`` (``W [N, in, out]``), one GEMM per member.

    ``x`` is ``[N, M, in]`` or ``[M, in]`` shared by all members; the output is ``[N, M, out]``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, plan: GemmPlan):
        ctx.save_for_backward(x, weight)
        ctx.plan = plan
        shared = x.dim() == 2
        ctx.shared = shared
        n = weight.shape[0]
        outs = [gemm_nt(x if shared else x[i], weight[i].t(), bias[i, 0], plan.forward) for i in range(n)]
        return torch.stack(outs)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        plan, shared, n = ctx.plan, ctx.shared, weight.shape[0]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            parts = [gemm_nt(gy[i], weight[i], None, plan.grad_input) for i in range(n)]
            gx = torch.stack(parts).sum(0) if shared else torch.stack(parts)
        if ctx.needs_input_grad[1]:
            gw = torch.stack([
                gemm_nt((x if shared else x[i]).t(), gy[i].t(), None, plan.grad_weight) for i in range(n)
            ])
        if ctx.needs_input_grad[2]:
            gb = gy.sum(1, keepdim=True)
        return gx, gw, gb, None


def fast_ensemble_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         plan: GemmPlan | None = None) -> torch.Tensor:
    """``EnsembleLinear``'s math (``matmul``/``baddbmm`` with ``W [N, in, out]``, ``b [N, 1, out]``) on the
    fastest measured backends; falls back to the batched torch product off fp32 CPU."""
    plan = None if (x.device.type != "cpu" or x.dtype != torch.float32) else (gemm_plan(x.device) if plan is None else plan)
    if plan is None or plan.forward == plan.grad_input == plan.grad_weight == "aten":
        if x.dim() == 2:
            return torch.matmul(x, weight) + bias
        return torch.baddbmm(bias, x, weight)
    return _FastEnsembleLinearFn.apply(x, weight, bias, plan)


class FastEnsembleLinear(EnsembleLinear):
    """:class:`ppl_torchrl.modules.EnsembleLinear` (same parameters and state dict) via :func:`fast_ensemble_linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_ensemble_linear(x, self.weight, self.bias)


# ---------------------------------------------------------------------------------------------- fused step
def _layers(params, module: nn.Module) -> list[tuple]:
    """The layer program of one of our networks: ``("linear", W, b)``, ``("elinear", W, b)``, ``("relu",)``,
    ``("ln", w, b, eps)`` (per-member affine) or ``("tln", w, b, eps)`` (torch LayerNorm), with the tensors
    taken from ``params`` (a TensorDictParams mirroring the TensorDictModule) so that optimizers, target
    updaters and checkpoints all keep acting on the same storage."""
    seq = getattr(module, "net", None)
    if not isinstance(seq, nn.Sequential):
        raise TypeError(
            f"The fused update needs the networks of ppl_torchrl.modules (a .net nn.Sequential); got "
            f"{type(module).__name__}. Use the default update (fast=False) for custom networks."
        )
    prog = []
    for idx, layer in enumerate(seq):
        def p(name):
            return params.get(("module", "net", str(idx), name))
        if isinstance(layer, EnsembleLinear):
            prog.append(("elinear", p("weight"), p("bias")))
        elif isinstance(layer, nn.Linear):
            prog.append(("linear", p("weight"), p("bias")))
        elif isinstance(layer, nn.ReLU):
            prog.append(("relu",))
        elif isinstance(layer, EnsembleLayerNorm):
            prog.append(("ln", p("weight"), p("bias"), layer.eps))
        elif isinstance(layer, nn.LayerNorm):
            prog.append(("tln", p("weight"), p("bias"), layer.eps))
        else:
            raise TypeError(f"The fused update does not know layer {idx} ({type(layer).__name__}) of "
                            f"{type(module).__name__}; use the default update (fast=False).")
    return prog


def _run(prog: list[tuple], x: torch.Tensor, plan: GemmPlan | None, detach: bool = False) -> torch.Tensor:
    for op in prog:
        kind = op[0]
        if kind == "relu":
            x = torch.relu(x)
            continue
        w, b = (op[1].detach(), op[2].detach()) if detach else (op[1], op[2])
        if kind == "linear":
            x = F.linear(x, w, b) if plan is None else fast_linear(x, w, b, plan)
        elif kind == "elinear":
            x = fast_ensemble_linear(x, w, b, plan) if plan is not None else (
                torch.matmul(x, w) + b if x.dim() == 2 else torch.baddbmm(b, x, w))
        elif kind == "ln":
            x = torch.addcmul(b, F.layer_norm(x, x.shape[-1:], eps=op[3]), w)
        else:  # "tln"
            x = F.layer_norm(x, x.shape[-1:], w, b, eps=op[3])
    return x


def _q_values(prog: list[tuple], obs: torch.Tensor, action: torch.Tensor, plan: GemmPlan | None,
              detach: bool = False) -> torch.Tensor:
    """Critic ensemble values ``[*batch, N]`` of a layer program on ``(obs, action)``."""
    x = torch.cat([obs, action], -1)
    batch_shape = x.shape[:-1]
    out = _run(prog, x.reshape(-1, x.shape[-1]), plan, detach)  # [N, M, 1]
    return out.squeeze(-1).transpose(0, 1).reshape(*batch_shape, out.shape[0])


class FusedReBRACUpdate:
    """The PPL^R / ReBRAC update of :func:`ppl_torchrl.algorithms.make_algorithm` on plain tensors.

    Same schedule (critic every step; on ``step % policy_freq == 0`` actor backward, soft target update
    towards the pre-update actor, actor step, then the potential step), the same formulas as
    :class:`~ppl_torchrl.objectives.ReBRACLoss` / :class:`~ppl_torchrl.objectives.PartialOTLoss`, the same
    draw from the global RNG (target smoothing noise), the same parameter tensors and optimizers. It only
    skips the TensorDict plumbing, input validation and diagnostics a hot loop does not need.

    Args:
        loss: a ``ReBRACLoss`` or ``PartialOTLoss`` built on :mod:`ppl_torchrl.modules` networks, with
            ``make_value_estimator(gamma=...)`` already called (TD(0)).
        optimizers: ``{"critic": ..., "actor": ...[, "potential": ...]}`` over the loss's parameters.
        tau: soft-update rate (``SoftUpdate(loss, tau=tau)``'s).
        policy_freq: actor / target / potential period.
        use_potential: run the f-step (PPL^R); requires a ``PartialOTLoss``.
        plan: GEMM plan; default :func:`gemm_plan` of the parameters' device. ``GemmPlan()`` = torch's own.
        metrics: also return the diagnostics the default update returns (a few extra reductions).

    Call ``update(batch, step)`` with a TensorDict batch (keys of :mod:`ppl_torchrl.keys`) or
    ``update.step_tensors(obs, action, next_obs, next_action, reward, terminated, step)``.
    """

    def __init__(self, loss, optimizers: dict, *, tau: float, policy_freq: int = 2, use_potential: bool | None = None,
                 plan: GemmPlan | None = None, metrics: bool = True):
        if policy_freq < 1:
            raise ValueError(f"policy_freq must be >= 1, got {policy_freq}.")
        if not 0 < tau <= 1:
            raise ValueError(f"tau must lie in (0, 1], got {tau}.")
        if getattr(loss, "critic_next_action", "policy") != "policy":
            raise ValueError("The fused update implements critic_next_action='policy' only; use the default update.")
        if loss.reduction != "mean" or getattr(loss, "use_prioritized_weights", False) is True:
            raise ValueError("The fused update implements reduction='mean' without priority weights; use the default update.")
        has_potential = hasattr(loss, "potential_network")
        self.use_potential = has_potential if use_potential is None else use_potential
        if self.use_potential and not has_potential:
            raise ValueError("use_potential=True needs a PartialOTLoss (with a potential network).")
        self.loss, self.opts, self.tau, self.policy_freq = loss, optimizers, float(tau), int(policy_freq)
        actor_mod = loss.actor_network.module
        q_mod = loss.qvalue_network.module
        self.actor = _layers(loss.actor_network_params, actor_mod)
        self.actor_target = _layers(loss.target_actor_network_params, actor_mod)
        self.critic = _layers(loss.qvalue_network_params, q_mod)
        self.critic_target = _layers(loss.target_qvalue_network_params, q_mod)
        if self.use_potential:
            self.potential = _layers(loss.potential_network_params, loss.potential_network.module)
        self._sources = [t for prog in (self.actor, self.critic) for op in prog for t in op[1:3]]
        self._targets = [t for prog in (self.actor_target, self.critic_target) for op in prog for t in op[1:3]]
        if len(self._sources) != len(self._targets):
            raise RuntimeError("Actor/critic and their targets have different layouts.")
        device = self._sources[0].device
        self.plan = (gemm_plan(device) if device.type == "cpu" else GemmPlan()) if plan is None else plan
        self._plan = None if self.plan == GemmPlan() or not any(
            getattr(self.plan, k) != "aten" for k in GEMM_KINDS) else self.plan
        self.gamma = loss.value_estimator.gamma.to(device)
        self.min_action, self.max_action = loss.min_action, loss.max_action
        self.metrics = metrics
        from ppl_torchrl import keys

        self._keys = (keys.OBSERVATION, keys.ACTION, keys.NEXT_OBSERVATION, keys.NEXT_ACTION, keys.REWARD,
                      keys.TERMINATED)

    # -- networks
    def _pi(self, prog, obs, detach=False):
        return torch.tanh(_run(prog, obs, self._plan, detach))

    def _q(self, prog, obs, action, detach=False):
        return _q_values(prog, obs, action, self._plan, detach)

    def _f(self, obs, action, detach=False):
        return -_run(self.potential, torch.cat([obs, action], -1), self._plan, detach).abs().squeeze(-1)

    # -- the step
    def __call__(self, batch, step: int):
        from tensordict import TensorDict

        tensors = [batch.get(k) for k in self._keys]
        out = self.step_tensors(*tensors, step=step)
        return TensorDict(out) if self.metrics else out

    def step_tensors(self, obs, action, next_obs, next_action, reward, terminated, step: int) -> dict:
        """One update from tensors (``reward``/``terminated`` ``[B, 1]``); returns detached scalars."""
        loss = self.loss
        opts = self.opts
        out = {}
        # ---- critic (ReBRACLoss.qvalue_loss)
        noise = (torch.randn_like(next_action) * loss.policy_noise).clamp(-loss.noise_clip, loss.noise_clip)
        with torch.no_grad():
            policy_next = self._pi(self.actor_target, next_obs)
            na = torch.maximum(torch.minimum(policy_next + noise, self.max_action), self.min_action)
            penalty = (na - next_action).pow(2).sum(-1, keepdim=True)
            next_q = self._q(self.critic_target, next_obs, na)
            next_value = next_q.min(-1, keepdim=True).values - loss.critic_bc_coef * penalty
            target = reward + self.gamma * (~terminated).int() * next_value
        pred = self._q(self.critic, obs, action)
        loss_q = (pred - target).pow(2).sum(-1).mean()
        optimizer_step(opts["critic"], loss_q)
        out["loss_qvalue"] = loss_q.detach()
        if self.metrics:
            out["pred_value"] = pred.detach().mean()
            out["target_value"] = target.mean()
        if step % self.policy_freq != 0:
            return out
        # ---- actor (ReBRACLoss._actor_objective [+ PartialOTLoss's f term])
        pa = self._pi(self.actor, obs)
        q = self._q(self.critic, obs, pa, detach=True).min(-1).values
        bc = (pa - action).pow(2).sum(-1)
        lmbda = 1.0 / q.abs().mean().detach() if loss.normalize_q else torch.ones((), device=q.device)
        objective = loss.actor_bc_coef * bc - lmbda * q
        if self.use_potential:
            f_actor = self._f(obs, pa, detach=True)
            objective = objective - f_actor
        loss_a = objective.mean()
        opt = opts["actor"]
        opt.zero_grad(set_to_none=True)
        loss_a.backward()
        with torch.no_grad():  # SoftUpdate(tau): target <- lerp(target, source, tau), before the actor step
            torch._foreach_lerp_(self._targets, self._sources, self.tau)
        opt.step()
        out["loss_actor"] = loss_a.detach()
        if self.metrics:
            out.update(bc_distance=bc.detach().mean(), lmbda=lmbda.detach(), state_action_value_actor=q.detach().mean())
            if self.use_potential:
                out["potential_actor"] = f_actor.detach().mean()
        if not self.use_potential:
            return out
        # ---- potential (PartialOTLoss.potential_loss)
        with torch.no_grad():
            src = self.actor_target if loss.potential_uses_target_actor else self.actor
            pt = self._pi(src, obs, detach=True)
        f_pol = self._f(obs, pt)
        f_data = self._f(obs, action)
        loss_f = (f_pol - loss.w * f_data).mean()
        optimizer_step(opts["potential"], loss_f)
        out["loss_potential"] = loss_f.detach()
        if self.metrics:
            out.update(potential_policy=f_pol.detach().mean(), potential_data=f_data.detach().mean())
        return out

    def run(self, batches: Sequence, start_step: int) -> dict:
        """Several updates in one call (``batches[i]`` at step ``start_step + i``); returns the last metrics."""
        out = {}
        for i, batch in enumerate(batches):
            out = self(batch, start_step + i)
        return out


def apply_to(algorithm, *, tau: float, policy_freq: int, plan: GemmPlan | None = None,
             metrics: bool = True) -> Callable:
    """Replaces ``algorithm.update`` (a ``ppl`` or ``rebrac`` :class:`~ppl_torchrl.algorithms.Algorithm`)
    by a :class:`FusedReBRACUpdate` on the same loss and optimizers; returns the new update."""
    if algorithm.name not in ("ppl", "rebrac"):
        raise ValueError(f"The fused update covers 'ppl' and 'rebrac', not {algorithm.name!r}.")
    fused = FusedReBRACUpdate(algorithm.loss, algorithm.optimizers, tau=tau, policy_freq=policy_freq,
                              use_potential="potential" in algorithm.optimizers, plan=plan, metrics=metrics)
    algorithm.update = fused
    return fused
