"""The PPL^R / ReBRAC update: the schedule written once, compiled or not by one flag.

The schedule of the authors' code (and of CORL's ReBRAC), per update on one batch:

* every step: the critic;
* every ``policy_freq``-th step (``step % policy_freq == 0``): the actor; the soft target update
  (``target.lerp_(online, tau)``) runs *before* the actor's optimizer step, so the targets move towards the
  pre-update actor, as in the authors' code; then (PPL^R) the potential, on the freshly updated target actor.

Each term's formula lives in the loss module (:meth:`~ppl_torchrl.objectives.ReBRACLoss.critic_objective`,
:meth:`~ppl_torchrl.objectives.ReBRACLoss.actor_objective`,
:meth:`~ppl_torchrl.objectives.PartialOT.actor_objective` and
:meth:`~ppl_torchrl.objectives.PartialOT.potential_objective` for PPL^R, the potential composed with ReBRAC): this module only differentiates them
(``torch.func.grad``), steps torch's own functional Adam on the optimizers' state (``torch.optim.adam.adam``),
and orders the steps. ``compile=True`` hands the very same Python function to ``torch.compile``
(``fullgraph``: each call of :meth:`ReBRACUpdate.run` is one graph, gradients and Adam included, which
inductor fuses); nothing is written twice. The target-smoothing noise is drawn eagerly from the global RNG, in
the order ``loss.qvalue_loss`` draws it, so eager, compiled and the loss's own ``qvalue_loss`` follow one random
stream.

The optimizers stay ``torch.optim.Adam`` objects whose ``state`` holds the moments and step counts: checkpoints
(``optimizer.state_dict()``), ``load_state_dict`` and a plain ``optimizer.step()`` loop keep working.
"""
from __future__ import annotations

import importlib.util
import shutil
import types
import warnings
from typing import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torch.optim.adam import adam as functional_adam

from ppl_torchrl.objectives import declare_target_updater

__all__ = ["ReBRACUpdate", "compiler_available"]


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


# ----------------------------------------------------------------------------------------- optimizer state
def _adam_state(optimizer: torch.optim.Optimizer) -> tuple:
    """``(exp_avgs, exp_avg_sqs, steps, hyper)`` of a one-group ``torch.optim.Adam``, its state created the way
    Adam creates it when missing; read at every call, so ``load_state_dict`` (which replaces the state) is seen."""
    if not isinstance(optimizer, torch.optim.Adam):
        raise TypeError(f"ReBRACUpdate steps Adam functionally; got a {type(optimizer).__name__} optimizer.")
    if len(optimizer.param_groups) != 1:
        raise ValueError("ReBRACUpdate expects one parameter group per optimizer.")
    group = optimizer.param_groups[0]
    if group["amsgrad"] or group["maximize"] or group.get("differentiable") or group.get("fused"):
        raise ValueError("ReBRACUpdate supports plain Adam (no amsgrad, maximize, differentiable or fused).")
    exp_avgs, exp_avg_sqs, steps = [], [], []
    for p in group["params"]:
        state = optimizer.state[p]
        if len(state) == 0:
            # torch.optim.Adam's own initial state (a float32 step; on the parameter's device when capturable)
            step_device = p.device if group["capturable"] else None
            state["step"] = torch.zeros((), dtype=torch.float32, device=step_device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        exp_avgs.append(state["exp_avg"])
        exp_avg_sqs.append(state["exp_avg_sq"])
        steps.append(state["step"])
    beta1, beta2 = group["betas"]
    hyper = (float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]),
             bool(group["capturable"]), bool(group.get("decoupled_weight_decay", False)))
    return exp_avgs, exp_avg_sqs, steps, hyper


def _adam_step(params: TensorDictBase, grads: list, state: tuple, leaves: list | None = None) -> None:
    """One ``torch.optim.Adam`` step of ``params`` (in place) with ``grads`` (in ``params``' leaf order), on the
    optimizer's own state; ``leaves``: ``params``' leaves, when the caller already holds them."""
    exp_avgs, exp_avg_sqs, steps, (lr, beta1, beta2, eps, weight_decay, capturable, decoupled) = state
    # Under torch.compile, Adam's capturable branch (step counts and bias corrections as tensors) is the one
    # that traces; eagerly on CPU only the default branch exists. Same formula, fp32 rounding apart.
    capturable = capturable or torch.compiler.is_compiling()
    functional_adam(
        list(params.values(True, True)) if leaves is None else leaves, list(grads), exp_avgs, exp_avg_sqs, [], steps,
        foreach=True, capturable=capturable, decoupled_weight_decay=decoupled, amsgrad=False, beta1=beta1,
        beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=False,
    )


# ----------------------------------------------------------------------------------------- the schedule
#: eagerly, differentiate with autograd (what a plain TorchRL loop's ``backward()`` does) instead of torch.func: the
#: same objective, the same gradients, without functorch's per-operation wrapping (the eager update's main cost)
EAGER_AUTOGRAD = True


class _EagerView:
    """The eager update's fixed handles on one parameter set, built once: its leaves (what Adam and the soft target
    update step in place) and a requires-grad alias of them (what autograd differentiates). Walking a TensorDict's
    leaves and building that alias cost ~0.05-0.3 ms each, ~1 ms per update (3 % of an eager AntMaze-shape step),
    which a plain loop does not pay. The alias shares storage (and version counter) with the parameters, so every
    in-place step, and an in-place ``load_state_dict``, is seen; it holds no graph between updates."""

    def __init__(self, params: TensorDictBase, differentiated: bool = True):
        self.leaves = list(params.values(True, True))
        self.grad_params = params.detach().requires_grad_() if differentiated else None
        self.grad_leaves = None if self.grad_params is None else list(self.grad_params.values(True, True))


def _grad_and_value(objective, args: tuple, view: _EagerView | None) -> tuple:
    """``(d objective / d args[1], (value, metadata))``, the gradients a list in ``args[1]``'s leaf order.
    ``args[1]`` is a TensorDict of plain tensors (the parameters being trained). Without a ``view`` (under
    torch.compile: what dynamo traces) it is ``torch.func.grad_and_value``; with one, autograd on the view's
    requires-grad alias of the same tensors."""
    if view is None:
        grads, out = torch.func.grad_and_value(objective, argnums=1, has_aux=True)(*args)
        return list(grads.values(True, True)), out
    value, metadata = objective(args[0], view.grad_params, *args[2:])
    grads = torch.autograd.grad(value, view.grad_leaves)
    return grads, (value.detach(), metadata)


def _leaves(views: dict | None, name: str) -> list | None:
    return None if views is None else views[name].leaves


def _critic_step(loss, params, targets, adam, batch, noise, views=None) -> dict:
    args = (batch, params["critic"], targets["actor"], targets["critic"], noise)
    grads, (value, metadata) = _grad_and_value(loss.critic_objective, args, views and views["critic"])
    _adam_step(params["critic"], grads, adam["critic"], _leaves(views, "critic"))
    return {"loss_qvalue": value.detach(), "pred_value": metadata["pred_value"],
            "target_value": metadata["target_value"]}


def _soft_update(targets: dict, params: dict, tau: float, views: dict | None) -> None:
    """``target.lerp_(online, tau)`` for the actor and the critic (one ``_foreach_lerp_`` each, either way)."""
    for name in ("actor", "critic"):
        if views is None:
            targets[name].lerp_(params[name], tau)
        else:
            torch._foreach_lerp_(views["target_" + name].leaves, views[name].leaves, tau)


def _delayed_step(loss, tau, params, targets, adam, batch, potential_steps: int = 1, views=None) -> dict:
    potential = params.get("potential")
    actor_args = (batch, params["actor"], params["critic"]) + (() if potential is None else (potential,))
    grads, (value, metadata) = _grad_and_value(loss.actor_objective, actor_args, views and views["actor"])
    # Targets move towards the pre-update actor (and the just-updated critic), then the actor steps.
    _soft_update(targets, params, tau, views)
    _adam_step(params["actor"], grads, adam["actor"], _leaves(views, "actor"))
    out = {"loss_actor": value.detach(), **metadata}
    if potential is not None:
        for _ in range(potential_steps):  # several f-steps per actor step, on the same batch
            args = (batch, potential, params["actor"], targets["actor"])
            grads, (value, metadata) = _grad_and_value(loss.potential_objective, args, views and views["potential"])
            _adam_step(potential, grads, adam["potential"], _leaves(views, "potential"))
        out.update(loss_potential=value.detach(), **metadata)
    return out


def _schedule(loss, tau: float, params: dict, targets: dict, adam: dict, batches: Sequence, noises: Sequence,
              delayed: tuple, potential_steps: int = 1, views: dict | None = None) -> dict:
    """Consecutive updates, one per batch: the critic, then on delayed steps actor, targets and potential.
    Returns the latest value of each diagnostic (actor terms only exist after a delayed step). ``views``: the
    eager update's :class:`_EagerView` of each parameter set (``None`` under torch.compile, and for torch.func
    gradients eagerly)."""
    out: dict = {}
    for batch, noise, is_delayed in zip(batches, noises, delayed):
        out.update(_critic_step(loss, params, targets, adam, batch, noise, views))
        if is_delayed:
            out.update(_delayed_step(loss, tau, params, targets, adam, batch, potential_steps, views))
    return out


def _own_copy(fn):
    """``fn`` with a code object of its own: dynamo caches compiled graphs, and counts recompilations against
    its limit (8), per code object, so each update compiles its own copy (a process may build many)."""
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__, copy.__doc__ = fn.__qualname__, fn.__doc__
    return copy


class ReBRACUpdate:
    """The PPL^R / ReBRAC update step of a :class:`~ppl_torchrl.objectives.ReBRACLoss` (or ``PartialOTLoss``).

    ``update(batch, step)`` runs one update (critic; on ``step % policy_freq == 0`` also actor, targets and
    potential) and returns a TensorDict of detached diagnostics; ``update.run(batches, start_step)`` runs
    ``len(batches)`` consecutive updates in one call (one graph when compiled, like the authors' ``fori_loop``).

    Args:
        loss: the loss module; its parameters and target parameters are updated in place.
        optimizers: ``{"critic", "actor"[, "potential"]}`` ``torch.optim.Adam`` over the loss's parameters
            (``loss.qvalue_network_params`` etc.); a ``"potential"`` entry makes it PPL^R.
        tau: soft target update rate (``target <- (1 - tau) target + tau online``).
        policy_freq: actor / target / potential update period.
        compile: ``torch.compile`` the update (``fullgraph``). The first call compiles (tens of seconds on a
            small CPU); every later call with the same shapes reuses the graph.
        mode, backend: ``torch.compile``'s mode and backend (``"aot_eager"`` checks tracing without inductor).
        cudagraphs: on CUDA, capture each compiled call in a CUDA graph (``mode="reduce-overhead"``); the
            parameters and optimizer state are marked as static addresses. Not run on a GPU by us yet.
        fallback: if compiling fails, warn once and run eagerly (the state is untouched: a failed compilation
            fails before the graph runs). Without it the error is raised.
        potential_steps: f-steps per actor step (PPL^R), each on the same batch (BRAC's several dual steps).
    """

    def __init__(self, loss, optimizers: dict, *, tau: float, policy_freq: int = 2, compile: bool = False,
                 mode: str | None = None, backend: str = "inductor", cudagraphs: bool = False,
                 fallback: bool = False, potential_steps: int = 1):
        if not 0 < tau <= 1:
            raise ValueError(f"tau must lie in (0, 1], got {tau}.")
        if int(policy_freq) < 1:
            raise ValueError(f"policy_freq must be a positive integer, got {policy_freq}.")
        if int(potential_steps) < 1:
            raise ValueError(f"potential_steps (f-steps per actor step) must be a positive integer, got {potential_steps}.")
        self.potential_steps = int(potential_steps)
        if getattr(loss, "reduction", "mean") not in ("mean", "sum"):
            raise ValueError(f"ReBRACUpdate steps on scalar losses: build the loss with reduction='mean' (or 'sum'), "
                             f"not {loss.reduction!r}.")
        if ("potential" in optimizers) != hasattr(loss, "potential_objective"):
            raise ValueError("Pass a 'potential' optimizer exactly when the loss has a potential (PartialOTLoss).")
        self.loss, self.optimizers = loss, optimizers
        self.tau, self.policy_freq = float(tau), int(policy_freq)
        # This update moves the targets itself, as TorchRL's SoftUpdate would: say so to the loss, or reading its
        # target parameters warns that nothing updates them.
        declare_target_updater(loss)
        # Plain tensors sharing storage with the loss's parameters: what torch.func differentiates.
        self.params = {"critic": loss.qvalue_network_params.data, "actor": loss.actor_network_params.data}
        if "potential" in optimizers:
            self.params["potential"] = loss.potential_network_params.data
        self.targets = {"critic": loss.target_qvalue_network_params.data,
                        "actor": loss.target_actor_network_params.data}
        self._checked = not getattr(loss, "validate_inputs", True)
        self._views = None
        self.compiled = bool(compile)
        self.fallback = bool(fallback)
        self._program = _schedule
        if self.compiled:
            device = next(iter(self.params["actor"].values(True, True))).device
            if cudagraphs:
                if device.type != "cuda":
                    raise ValueError("cudagraphs=true needs the networks on a CUDA device (device=cuda).")
                mode = "reduce-overhead"
            opts: dict = dict(fullgraph=True, dynamic=False, backend=backend)
            if mode is not None:
                opts["mode"] = mode
            elif backend == "inductor" and device.type == "cpu":
                opts["options"] = {"cpp_wrapper": True}  # kernels called from generated C++: ~5 % at batch 256
            self._program = torch.compile(_own_copy(_schedule), **opts)
            self._mark_static = self._cudagraphs = mode == "reduce-overhead"

    def _eager_views(self) -> dict | None:
        """The :class:`_EagerView` of each parameter set and target, built at the first eager call; ``None`` when
        ``EAGER_AUTOGRAD`` is off (torch.func gradients eagerly too)."""
        if not EAGER_AUTOGRAD:
            return None
        if self._views is None:
            self._views = {name: _EagerView(td) for name, td in self.params.items()}
            self._views.update({"target_" + name: _EagerView(td, differentiated=False)
                                for name, td in self.targets.items()})
        return self._views

    def _adam(self) -> dict:
        return {name: _adam_state(opt) for name, opt in self.optimizers.items()}

    def __call__(self, batch: TensorDictBase, step: int) -> TensorDictBase:
        return self.run([batch], step)

    def run(self, batches: Sequence[TensorDictBase], start_step: int) -> TensorDictBase:
        """``len(batches)`` consecutive updates, ``batches[i]`` at step ``start_step + i``; the diagnostics of the
        last critic step and of the last delayed step."""
        if not self._checked:
            # Keys, shapes and finiteness once (one host sync): batches of one buffer share their layout.
            self.loss.check_inputs(batches[0])
            self._checked = True
        next_action = self.loss.tensor_keys.next_action
        noises = [self.loss.target_noise(b.get(next_action)) for b in batches]
        delayed = tuple((start_step + i) % self.policy_freq == 0 for i in range(len(batches)))
        if hasattr(self.loss, "set_training_step"):  # the annealed w, fixed over one call's updates
            self.loss.set_training_step(start_step)
        args = (self.loss, self.tau, self.params, self.targets, self._adam(), list(batches), noises, delayed,
                self.potential_steps)
        if self.compiled and getattr(self, "_mark_static", False):
            self._mark_static = False
            for ts in (*self.params.values(), *self.targets.values()):
                for t in ts.values(True, True):
                    torch._dynamo.mark_static_address(t)
            for state in args[4].values():
                for t in (*state[0], *state[1], *state[2]):
                    torch._dynamo.mark_static_address(t)
        if self.compiled:
            try:
                if getattr(self, "_cudagraphs", False):
                    # A CUDA graph's outputs live in memory its next replay overwrites: a new step each call,
                    # and the diagnostics copied out (they are read at log steps, calls later).
                    torch.compiler.cudagraph_mark_step_begin()
                    out = {k: v.clone() for k, v in self._program(*args).items()}
                else:
                    out = self._program(*args)
            except Exception as err:  # noqa: BLE001 - any compiler failure: fall back rather than stop a run
                if not self.fallback:
                    raise
                warnings.warn(f"Compiling the PPL^R/ReBRAC update failed ({type(err).__name__}: {str(err)[:200]}); "
                              "training on with the eager update (compile.enabled=false skips the attempt).",
                              RuntimeWarning, stacklevel=2)
                self.compiled, self._program = False, _schedule
                out = _schedule(*args, self._eager_views())
        else:
            out = _schedule(*args, self._eager_views())
        return TensorDict(out)
