"""The PPL^R / ReBRAC update as two pure tensor programs compiled whole by ``torch.compile``.

Why. The eager fused step (:class:`ppl_torchrl.fast.FusedReBRACUpdate`) still runs a few hundred
small kernels per update: each LayerNorm, ReLU and their backward passes, and Adam's passes over every
parameter, read and write the activations or parameters again. The authors' JAX code does not pay that:
XLA sees one program (loss, gradients and Adam) and fuses the elementwise work around the GEMMs.
``torch.compile`` of the eager step cannot do the same, because ``backward()`` and ``optimizer.step()``
split it into separate graphs. Here the gradients come from ``torch.func.grad`` and Adam is written out
on the optimizers' own state tensors, so each program is a single graph that inductor fuses.

Two programs, as the schedule has two kinds of steps:

* the critic step (every step): TD target with the target actor and target critics, critic gradient,
  Adam on the critics;
* the delayed step (every ``policy_freq``-th step, after the critic step): actor gradient, soft target
  update towards the pre-update actor, Adam on the actor, then (PPL^R) the potential's gradient and Adam.

What stays the same as the default update: the schedule, the formulas of
:class:`~ppl_torchrl.objectives.ReBRACLoss` / :class:`~ppl_torchrl.objectives.PartialOTLoss`, the draw from
the global RNG (the target-smoothing noise is drawn eagerly and passed in), the parameter tensors, and
the optimizers: the Adam moments and step counts live in ``optimizer.state`` as ``torch.optim.Adam``
keeps them, so checkpoints, ``load_state_dict`` and a switch back to the eager update all keep working.
Only fp32 rounding differs (inductor fuses and reorders; Adam's bias corrections are computed in fp32
tensors, as ``capturable=True`` Adam does). ``tests/test_compiled.py`` bounds the difference.

Constants of the loss (coefficients, ``w``, ``gamma``, noise scales) are read once, when the programs are
traced; build a new update after changing them. Learning rates are read from the optimizers at each call.
"""
from __future__ import annotations

import importlib.util
import shutil
import types
import warnings
from typing import Sequence

import torch

from ppl_torchrl.fast import FusedReBRACUpdate, GemmPlan, _q_values, _run

__all__ = ["CompiledReBRACUpdate", "apply_compiled", "compiler_available"]


def compiler_available(device: torch.device | str = "cpu") -> bool:
    """Whether inductor can build kernels for ``device``: a C++ compiler for CPU, triton for CUDA."""
    kind = torch.device(device).type
    if kind == "cpu":
        from torch._inductor import config

        cxx = config.cpp.cxx[-1] if isinstance(config.cpp.cxx, tuple) else config.cpp.cxx
        return any(shutil.which(c) for c in (cxx, "g++", "c++", "clang++") if c)
    if kind == "cuda":
        return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
    return False


def _tensors(prog) -> list[torch.Tensor]:
    return [t for op in prog for t in op[1:3]]


def _spec(prog) -> tuple:
    """The layer program without its tensors: what the compiled programs specialise on (so updates of
    the same architecture share one compiled graph)."""
    return tuple(op if op[0] == "relu" else (op[0], None, None, *op[3:]) for op in prog)


def _rebind(spec, tensors):
    """A layer program from ``spec`` with ``tensors`` as its parameters, in order."""
    it = iter(tensors)
    return [op if op[0] == "relu" else (op[0], next(it), next(it), *op[3:]) for op in spec]


def _pi(spec, params, obs):
    return torch.tanh(_run(_rebind(spec, params), obs, None))


def _f(spec, params, obs, action):
    return -_run(_rebind(spec, params), torch.cat([obs, action], -1), None).abs().squeeze(-1)


def _adam_(params, grads, exp_avg, exp_avg_sq, steps, lr, beta1: float, beta2: float, eps: float) -> None:
    """``torch.optim.Adam`` (no weight decay, no amsgrad) in place, in the order its kernels use."""
    torch._foreach_add_(steps, 1.0)
    step = steps[0]
    bias_correction1 = 1 - torch.pow(beta1, step)
    bias_correction2_sqrt = torch.sqrt(1 - torch.pow(beta2, step))
    torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sq, beta2)
    torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sq)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, eps)
    step_size = lr / bias_correction1
    updates = torch._foreach_div(exp_avg, denom)
    torch._foreach_mul_(updates, step_size)
    torch._foreach_sub_(params, updates)


class _AdamState:
    """The state tensors of one ``torch.optim.Adam`` over exactly ``params``, created the way Adam creates
    them when missing, and gathered again whenever the optimizer's state was replaced (``load_state_dict``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], name: str):
        if not isinstance(optimizer, torch.optim.Adam):
            raise TypeError(f"The compiled update writes Adam out; the {name} optimizer is {type(optimizer).__name__}.")
        if len(optimizer.param_groups) != 1:
            raise ValueError(f"The compiled update expects one parameter group in the {name} optimizer.")
        group = optimizer.param_groups[0]
        unsupported = {k: group.get(k) for k in ("weight_decay", "amsgrad", "maximize", "differentiable")
                       if group.get(k)}
        if unsupported:
            raise ValueError(f"The compiled update implements plain Adam; the {name} optimizer sets {unsupported}. "
                             f"Use the eager update (compile=false).")
        if {id(p) for p in group["params"]} != {id(p) for p in params} or len(group["params"]) != len(params):
            raise ValueError(f"The {name} optimizer does not hold exactly the {name} network's parameters.")
        self.optimizer, self.params, self.name = optimizer, params, name
        self._state_obj = None
        self._cache: tuple = ()

    def tensors(self) -> tuple[list, list, list]:
        opt = self.optimizer
        if opt.state is not self._state_obj or not self._cache:
            for p in self.params:
                st = opt.state[p]
                if not st:  # what Adam._init_group creates on its first step
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if st["step"].device != p.device:
                    # Eager non-fused Adam keeps the count on the CPU; inside a device program it would be a
                    # host scalar. Adam reads a device count just as well, so it moves for good.
                    st["step"] = st["step"].to(p.device)
            self._cache = tuple([opt.state[p][k] for p in self.params] for k in ("exp_avg", "exp_avg_sq", "step"))
            self._state_obj = opt.state
        return self._cache

    def hyper(self) -> tuple[float, float, float, float]:
        group = self.optimizer.param_groups[0]
        lr = group["lr"]
        return float(lr), float(group["betas"][0]), float(group["betas"][1]), float(group["eps"])


# ------------------------------------------------------------------------------------------ programs
# Pure functions of their arguments (in place on parameters and Adam state). ``specs`` = (actor, critic,
# potential) layer specs and ``c`` = the loss constants are Python constants: updates with the same
# architecture and constants reuse one compiled graph instead of recompiling per instance.
#
# The gradient parts (``_*_grads``) are per seed; the in-place parts (soft update, Adam) are elementwise,
# so with ``seeds=True`` the same programs train several seeds at once: parameters, Adam moments and
# batches carry a leading seed dimension, and only the gradient parts run under ``torch.func.vmap``.
def _critic_grads(specs, c, critic, actor_t, critic_t, obs, action, next_obs, next_action, reward, terminated,
                  normal, gamma, min_action, max_action):
    actor_spec, critic_spec, _ = specs
    policy_noise, noise_clip, critic_bc_coef = c[:3]
    noise = (normal * policy_noise).clamp(-noise_clip, noise_clip)
    na = torch.maximum(torch.minimum(_pi(actor_spec, actor_t, next_obs) + noise, max_action), min_action)
    penalty = (na - next_action).pow(2).sum(-1, keepdim=True)
    next_q = _q_values(_rebind(critic_spec, critic_t), next_obs, na, None)
    next_value = next_q.min(-1, keepdim=True).values - critic_bc_coef * penalty
    target = reward + gamma * (~terminated).to(reward.dtype) * next_value

    def critic_loss(params):
        pred = _q_values(_rebind(critic_spec, params), obs, action, None)
        loss = (pred - target).pow(2).sum(-1).mean()
        return loss, (loss, pred.mean(), target.mean())

    return torch.func.grad(critic_loss, has_aux=True)(critic)


def _actor_grads(specs, c, actor, critic, pot, obs, action):
    actor_spec, critic_spec, pot_spec = specs
    actor_bc_coef, normalize_q = c[3:5]
    critic_prog = _rebind(critic_spec, critic)

    def actor_loss(params):
        pa = _pi(actor_spec, params, obs)
        q = _q_values(critic_prog, obs, pa, None).min(-1).values
        bc = (pa - action).pow(2).sum(-1)
        lmbda = 1.0 / q.abs().mean().detach() if normalize_q else torch.ones((), device=q.device)
        objective = actor_bc_coef * bc - lmbda * q
        extra = ()
        if pot is not None:
            f_actor = _f(pot_spec, pot, obs, pa)
            objective = objective - f_actor
            extra = (f_actor.mean(),)
        loss = objective.mean()
        # loss_actor, bc_distance, lmbda, state_action_value_actor[, potential_actor]
        return loss, (loss, bc.mean(), lmbda, q.mean(), *extra)

    return torch.func.grad(actor_loss, has_aux=True)(actor)


def _potential_grads(specs, c, pot, policy, obs, action):
    actor_spec, _, pot_spec = specs
    w = c[5]
    pt = _pi(actor_spec, policy, obs)

    def potential_loss(params):
        f_pol, f_data = _f(pot_spec, params, obs, pt), _f(pot_spec, params, obs, action)
        loss = (f_pol - w * f_data).mean()
        return loss, (loss, f_pol.mean(), f_data.mean())

    return torch.func.grad(potential_loss, has_aux=True)(pot)


def _per_seed(fn, seeds: bool, n_shared_head: int, n_shared_tail: int = 0):
    """``fn`` itself, or ``fn`` vmapped over the leading seed dimension of its tensor arguments (the first
    ``n_shared_head`` and last ``n_shared_tail`` arguments are shared by all seeds)."""
    if not seeds:
        return fn

    def batched(*args):
        n = len(args) - n_shared_head - n_shared_tail
        dims = (None,) * n_shared_head + (0,) * n + (None,) * n_shared_tail
        dims = tuple(None if a is None else d for a, d in zip(args, dims))  # ReBRAC: no potential
        return torch.func.vmap(fn, in_dims=dims)(*args)
    return batched


def _critic_program(specs, c, seeds, critic, m, v, steps, lr, hyper, actor_t, critic_t, obs, action, next_obs,
                    next_action, reward, terminated, normal, gamma, min_action, max_action):
    grads, aux = _per_seed(_critic_grads, seeds, 2, 3)(
        specs, c, critic, actor_t, critic_t, obs, action, next_obs, next_action, reward, terminated, normal,
        gamma, min_action, max_action)
    _adam_(critic, grads, m, v, steps, lr, *hyper)
    return aux  # loss_qvalue, pred_value, target_value


def _delayed_program(specs, c, seeds, tau, actor, am, av, asteps, alr, ahyper, critic, actor_t, critic_t,
                     pot, fm, fv, fsteps, flr, fhyper, obs, action):
    grads, aux = _per_seed(_actor_grads, seeds, 2)(specs, c, actor, critic, pot, obs, action)
    # SoftUpdate before the actor's step: targets move towards the pre-update actor (authors' order).
    torch._foreach_lerp_(actor_t + critic_t, actor + critic, tau)
    _adam_(actor, grads, am, av, asteps, alr, *ahyper)
    out = list(aux)
    if pot is None:
        return out
    policy = actor_t if c[6] else actor
    fgrads, faux = _per_seed(_potential_grads, seeds, 2)(specs, c, pot, policy, obs, action)
    _adam_(pot, fgrads, fm, fv, fsteps, flr, *fhyper)
    return out + list(faux)  # loss_potential, potential_policy, potential_data


def _steps_program(specs, c, tau, phase, policy_freq, critic, m, v, steps, lr, hyper, actor, am, av, asteps, alr,
                   ahyper, actor_t, critic_t, pot, fm, fv, fsteps, flr, fhyper, batches, normals, gamma, min_action,
                   max_action):
    """``len(batches)`` consecutive updates (the first at a step ``= phase`` modulo ``policy_freq``) in one
    program, as the authors' ``lax.fori_loop`` does; returns the last critic step's diagnostics and the
    last delayed step's (none if the batches held no delayed step)."""
    last_critic, last_delayed = [], []
    for i, (obs, action, next_obs, next_action, reward, terminated) in enumerate(batches):
        last_critic = list(_critic_program(specs, c, False, critic, m, v, steps, lr, hyper, actor_t, critic_t, obs,
                                           action, next_obs, next_action, reward, terminated, normals[i], gamma,
                                           min_action, max_action))
        if (phase + i) % policy_freq == 0:
            last_delayed = _delayed_program(specs, c, False, tau, actor, am, av, asteps, alr, ahyper, critic, actor_t,
                                            critic_t, pot, fm, fv, fsteps, flr, fhyper, obs, action)
    return last_critic + last_delayed


# Names of what the programs return, in order (those of the default update's diagnostics).
CRITIC_DIAGNOSTICS = ("loss_qvalue", "pred_value", "target_value")
ACTOR_DIAGNOSTICS = ("loss_actor", "bc_distance", "lmbda", "state_action_value_actor")
POTENTIAL_DIAGNOSTICS = ("potential_actor", "loss_potential", "potential_policy", "potential_data")

_COMPILED: dict = {}


def _own_copy(fn):
    """``fn`` with a code object of its own. Dynamo keeps compiled graphs, and counts recompilations
    against its limit (8), per code object: one copy per configuration keeps a process that trains
    several architectures, shapes or seed counts from exhausting that limit."""
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__, copy.__doc__ = fn.__qualname__, fn.__doc__
    return copy


def _compiled_programs(mode: str | None, backend: str, device_type: str = "cpu", config: tuple = ()):
    """The two programs compiled for ``config`` (layer specs, loss constants, seeds; any hashable)."""
    key = (mode, backend, device_type, config)
    if key not in _COMPILED:
        opts = dict(fullgraph=True, dynamic=False, backend=backend)
        if mode is not None:
            opts["mode"] = mode
        elif backend == "inductor" and device_type == "cpu":
            # The graph's kernels called from generated C++ instead of Python: ~5% per step at batch 256.
            opts["options"] = {"cpp_wrapper": True}
        _COMPILED[key] = (torch.compile(_own_copy(_critic_program), **opts),
                          torch.compile(_own_copy(_delayed_program), **opts),
                          torch.compile(_own_copy(_steps_program), **opts))
    return _COMPILED[key]


class CompiledReBRACUpdate(FusedReBRACUpdate):
    """:class:`~ppl_torchrl.fast.FusedReBRACUpdate` with each step kind compiled into one graph.

    Args: those of ``FusedReBRACUpdate`` (``plan`` is ignored: inside a compiled graph every GEMM is
    torch's own), plus

    * ``mode``: ``torch.compile`` mode. ``None`` (default) on CPU; on CUDA ``"reduce-overhead"`` (CUDA
      graphs) is the usual choice, passed through as given.
    * ``backend``: ``torch.compile`` backend (``"inductor"``; ``"eager"`` or ``"aot_eager"`` to debug).

    * ``fallback``: if compiling fails (no working C++ compiler, an inductor error), warn and run the
      eager fused update instead of raising. The programs are then compiled at the first call on
      copies of the state, so a failure leaves the real parameters and the RNG untouched.

    The first call of each step kind traces and compiles (tens of seconds on a small CPU).
    """

    def __init__(self, loss, optimizers: dict, *, tau: float, policy_freq: int = 2, use_potential: bool | None = None,
                 metrics: bool = True, mode: str | None = None, backend: str = "inductor", plan=None,
                 fallback: bool = False):
        # GemmPlan(): torch's own GEMMs, as inside the graphs; also skips measuring a plan nothing here uses.
        super().__init__(loss, optimizers, tau=tau, policy_freq=policy_freq, use_potential=use_potential,
                         plan=GemmPlan(), metrics=metrics)
        self.fallback, self.eager = bool(fallback), False
        self._probed = not fallback
        # CUDA graphs (mode="reduce-overhead") replay fixed addresses: the parameters and optimizer state
        # are updated in place, so they are marked static once, at the first call. Not run on a GPU here.
        self._mark_static = mode == "reduce-overhead"
        self.actor_params = _tensors(self.actor)
        self.critic_params = _tensors(self.critic)
        self.actor_target_params = _tensors(self.actor_target)
        self.critic_target_params = _tensors(self.critic_target)
        self.adam = {"critic": _AdamState(optimizers["critic"], self.critic_params, "critic"),
                     "actor": _AdamState(optimizers["actor"], self.actor_params, "actor")}
        if self.use_potential:
            self.potential_params = _tensors(self.potential)
            self.adam["potential"] = _AdamState(optimizers["potential"], self.potential_params, "potential")
        # Loss constants, read once (they become constants of the traced programs).
        self._specs = (_spec(self.actor), _spec(self.critic), _spec(self.potential) if self.use_potential else None)
        self._c = (float(loss.policy_noise), float(loss.noise_clip), float(loss.critic_bc_coef),
                   float(loss.actor_bc_coef), bool(loss.normalize_q), float(getattr(loss, "w", 1.0)),
                   bool(getattr(loss, "potential_uses_target_actor", True)))
        self._lr_cache: dict = {}
        self._critic_step, self._delayed_step, self._steps = _compiled_programs(
            mode, backend, self.gamma.device.type, (self._specs, self._c, self.shapes()))

    # -- the step
    def _adam_args(self, name: str, copy: bool = False) -> tuple:
        """``(exp_avg, exp_avg_sq, steps, lr, (beta1, beta2, eps))`` of optimizer ``name`` as the programs
        take them (``lr`` a device tensor, so a changed lr does not recompile); all ``None`` for an absent
        potential. ``copy``: clones of the state tensors."""
        if name not in self.adam:
            return (None,) * 5
        lr, b1, b2, eps = self.adam[name].hyper()
        t = self._lr_cache.get((name, lr))
        if t is None:
            t = torch.tensor(lr, dtype=torch.float32, device=self.gamma.device)
            self._lr_cache = {k: val for k, val in self._lr_cache.items() if k[0] != name}
            self._lr_cache[(name, lr)] = t
        state = self.adam[name].tensors()
        if copy:
            state = tuple([x.detach().clone() for x in ts] for ts in state)
        return (*state, t, (b1, b2, eps))

    def _diagnostics(self, critic: Sequence, delayed: Sequence = ()) -> dict:
        names = CRITIC_DIAGNOSTICS + (ACTOR_DIAGNOSTICS + (POTENTIAL_DIAGNOSTICS if self.use_potential else ())
                                      if len(delayed) else ())
        out = dict(zip(names, [*critic, *delayed]))
        return out if self.metrics else {k: v for k, v in out.items() if k.startswith("loss_")}

    _normal_like = staticmethod(torch.randn_like)

    def shapes(self) -> tuple:
        """Shapes of the actor's, critics' and potential's parameters (the architecture, with ``_specs``)."""
        params = self.actor_params + self.critic_params + getattr(self, "potential_params", [])
        return tuple(tuple(t.shape) for t in params)

    def _probe(self, obs, action, next_obs, next_action, reward, terminated) -> None:
        """Compiles both programs by running them once on copies of the state (zero noise)."""
        def copies(ts):
            return None if ts is None else [t.detach().clone() for t in ts]
        actor_t, critic_t, critic = (copies(self.actor_target_params), copies(self.critic_target_params),
                                     copies(self.critic_params))
        with torch.no_grad():
            self._critic_step(self._specs, self._c, False, critic, *self._adam_args("critic", copy=True), actor_t,
                              critic_t, obs, action, next_obs, next_action, reward, terminated,
                              torch.zeros_like(next_action), self.gamma, self.min_action, self.max_action)
            self._delayed_step(self._specs, self._c, False, self.tau, copies(self.actor_params),
                               *self._adam_args("actor", copy=True), critic, actor_t, critic_t,
                               copies(getattr(self, "potential_params", None)),
                               *self._adam_args("potential", copy=True), obs, action)

    def step_tensors(self, obs, action, next_obs, next_action, reward, terminated, step: int) -> dict:
        if not self._probed:
            self._probed = True
            try:
                self._probe(obs, action, next_obs, next_action, reward, terminated)
            except Exception as err:  # noqa: BLE001 - any compiler failure: fall back rather than stop a run
                warnings.warn(f"Compiling the PPL^R/ReBRAC update failed ({type(err).__name__}: {str(err)[:300]}); "
                              f"training on with the eager fused update. compile=false skips the attempt.",
                              RuntimeWarning, stacklevel=2)
                self.eager = True
        if self.eager:
            return FusedReBRACUpdate.step_tensors(self, obs, action, next_obs, next_action, reward, terminated, step)
        if self._mark_static:
            self._mark_static = False
            state = [t for name in self.adam for ts in self.adam[name].tensors() for t in ts]
            for t in self._sources + self._targets + getattr(self, "potential_params", []) + state:
                torch._dynamo.mark_static_address(t)
        normal = self._normal_like(next_action)  # the eager update's draw, same global stream
        with torch.no_grad():
            critic = self._critic_step(
                self._specs, self._c, False, self.critic_params, *self._adam_args("critic"), self.actor_target_params,
                self.critic_target_params, obs, action, next_obs, next_action, reward, terminated, normal,
                self.gamma, self.min_action, self.max_action)
            if step % self.policy_freq != 0:
                return self._diagnostics(critic)
            delayed = self._delayed_step(
                self._specs, self._c, False, self.tau, self.actor_params, *self._adam_args("actor"),
                self.critic_params, self.actor_target_params, self.critic_target_params,
                getattr(self, "potential_params", None), *self._adam_args("potential"), obs, action)
        return self._diagnostics(critic, delayed)

    def run(self, batches: Sequence, start_step: int) -> dict:
        """``len(batches)`` updates in one compiled call (``batches[i]``, a TensorDict, at step
        ``start_step + i``), like the authors' ``fori_loop``: one Python entry and one set of guards for
        several updates. Same results as calling the update on each batch in turn. Each length and each
        phase ``start_step % policy_freq`` compiles its own program (unrolled: keep it small, e.g. 2-8).
        Returns a plain dict of tensors: the last critic step's diagnostics and the last actor/potential
        step's, as a loop keeping the latest value of each would."""
        if self.eager or not self._probed:
            return super().run(batches, start_step)
        tensors = [tuple(b.get(k) for k in self._keys) for b in batches]
        normals = [self._normal_like(t[3]) for t in tensors]  # the same draws, in the same order
        m, v, steps, lr, hyper = self._adam_args("critic")
        with torch.no_grad():
            res = self._steps(self._specs, self._c, self.tau, start_step % self.policy_freq, self.policy_freq,
                              self.critic_params, m, v, steps, lr, hyper, self.actor_params, *self._adam_args("actor"),
                              self.actor_target_params, self.critic_target_params,
                              getattr(self, "potential_params", None), *self._adam_args("potential"), tensors, normals,
                              self.gamma, self.min_action, self.max_action)
        return self._diagnostics(res[:3], res[3:])


def apply_compiled(algorithm, *, tau: float, policy_freq: int, metrics: bool = True, mode: str | None = None,
                   backend: str = "inductor", fallback: bool = False) -> CompiledReBRACUpdate:
    """Replaces ``algorithm.update`` (``ppl`` or ``rebrac``) by a :class:`CompiledReBRACUpdate` on the same
    loss and optimizers; returns the new update."""
    if algorithm.name not in ("ppl", "rebrac"):
        raise ValueError(f"The compiled update covers 'ppl' and 'rebrac', not {algorithm.name!r}; "
                         f"compile=true on other algorithms compiles their eager update instead.")
    upd = CompiledReBRACUpdate(algorithm.loss, algorithm.optimizers, tau=tau, policy_freq=policy_freq,
                               use_potential="potential" in algorithm.optimizers, metrics=metrics, mode=mode,
                               backend=backend, fallback=fallback)
    algorithm.update = upd
    return upd
