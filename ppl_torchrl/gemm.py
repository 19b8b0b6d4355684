"""GEMM backend choice for linear layers: torch's default GEMM or oneDNN, as opaque custom operators.

Why this exists. On some CPUs torch's default fp32 GEMM (MKL) takes a slow generic path: on AMD EPYC
(Zen 5) a 1024x256 @ 256x256 product runs at ~215 GFLOP/s through MKL and at 390-460 GFLOP/s through
oneDNN (``torch.ops.mkldnn._linear_pointwise``). ``torch.compile`` (inductor) calls MKL for every
matrix product it does not generate itself, so a compiled update inherits the slow path. This module
routes each of the three GEMMs of a linear layer (forward ``x W^T``, input gradient ``g W``, weight
gradient ``g^T x``) to the backend measured fastest on this machine, through custom operators that
inductor treats as opaque calls.

What it offers:

* :func:`linear` (``F.linear``'s math) and :func:`ensemble_linear` (stacked ensemble layers:
  ``W [E, K, N]``, ``b [E, 1, N]``, the math of ``torch.matmul(x, W) + b`` / ``torch.baddbmm``).
  When the plan of the input's device uses oneDNN for any GEMM they call the custom operator
  ``torch.ops.ppl_torchrl.linear``; otherwise they are plain ``F.linear`` / ``matmul`` (CUDA, and
  CPUs where MKL is fast, pay nothing).
* :class:`GemmPlan`, :func:`gemm_plan` (measured once per process and device, < 1 s),
  :func:`set_gemm_plan`, :func:`describe_plan`; ``PPL_TORCHRL_GEMM=aten|onednn|auto`` forces a
  backend (``auto``: measure).
* :func:`onednn_available`: whether this torch build has the private oneDNN kernel; the test suite
  fails loudly if a torch release renames it or changes its behaviour.

Where it works: eagerly (``.backward()``, ``torch.autograd.grad``, also with ``create_graph=True``),
under ``torch.func.grad`` (also nested), and inside ``torch.compile(fullgraph=True)`` graphs, including
a compiled function that itself calls ``torch.func.grad`` (one level of ``grad``; nested ``grad``
inside a compiled function raises), also with inductor's ``cpp_wrapper``. ``torch.func.vmap`` is not
supported (eagerly it raises; compiled, torch falls back to a per-sample loop): use ``F.linear`` there.

How the gradients are wired (and why not ``register_autograd``). ``torch.library.custom_op``'s
``register_autograd`` builds an ``autograd.Function`` without the ``setup_context`` staticmethod,
which ``torch.func`` requires, so ``torch.func.grad`` over such an op fails in torch 2.13, eagerly and
compiled ("In order to use an autograd.Function with functorch transforms ... it must override the
setup_context staticmethod"; pytorch/pytorch#168393, #170834, #179652). And inside a compiled
function, dynamo inlines an ``autograd.Function``'s ``forward`` under ``torch.func.grad`` and drops its
custom ``backward`` (pytorch/pytorch#193279), so a Python ``autograd.Function`` around the GEMMs is not
enough either. Here each operator is defined with ``torch.library.Library`` and gets its own
``Autograd`` kernel, which applies a ``setup_context``-style ``autograd.Function`` whose backward calls
the other two operators (the three are closed under differentiation, so higher-order gradients work
eagerly). Under a ``torch.func.grad`` transform that kernel runs below functorch's front layer on one
level's tensors, where it applies a single-level copy of the Function, as functorch does for its
own ``custom_function_call`` (the Function itself would be handed back to functorch by torch 2.14's
``apply``). This uses a few private torch APIs (``torch._C._AutoDispatchBelowAutograd``,
``torch.autograd.function._SingleLevelFunction``,
``torch._functorch.utils.enable_single_level_autograd_function``,
``torch._functorch.pyfunctorch.retrieve_all_functorch_interpreters``); ``tests/test_gemm.py`` checks every
path against ``F.linear`` (run with torch 2.13 and 2.14).
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "BACKENDS",
    "GEMM_KINDS",
    "ENV_VAR",
    "MIN_GAIN",
    "GemmPlan",
    "onednn_available",
    "gemm_nt",
    "measure_gemm",
    "gemm_plan",
    "set_gemm_plan",
    "describe_plan",
    "cpu_model",
    "linear",
    "ensemble_linear",
]

BACKENDS = ("aten", "onednn")
GEMM_KINDS = ("forward", "grad_input", "grad_weight")
ENV_VAR = "PPL_TORCHRL_GEMM"
# oneDNN replaces torch's GEMM only when clearly faster: each routed GEMM costs a custom-operator call
# (a few microseconds of Python), and a 5-10 % GEMM gain measured on a noisy machine is not worth it.
MIN_GAIN = 1.2
PLAN_SHAPE = (1024, 256, 256)  # M x K x N of the measurement: batch 1024, hidden width 256


# ---------------------------------------------------------------------------------------------- GEMM
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fp32 linear kernel (CPU builds with MKLDNN)."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_ok(a: Tensor) -> bool:
    return a.device.type == "cpu" and a.dtype == torch.float32 and a.numel() > 0 and onednn_available()


def gemm_nt(a: Tensor, b: Tensor, bias: Tensor | None = None, backend: str = "aten") -> Tensor:
    """``a @ b.T (+ bias)`` (``a [..., M, K]``, ``b [N, K]``) on ``backend``; strided views are accepted.

    ``"onednn"`` is used only for fp32 CPU tensors; anything else goes to ``F.linear``."""
    if backend == "onednn" and _onednn_ok(a):
        return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
    return F.linear(a, b, bias)


def _operands(kind: str, m: int, k: int, n: int, device) -> tuple[Tensor, Tensor]:
    """Operands laid out as a linear layer's GEMM ``kind`` sees them (same strides), for ``gemm_nt``."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(m, k, generator=g).to(device)
    w = torch.randn(n, k, generator=g).to(device)
    gy = torch.randn(m, n, generator=g).to(device)
    if kind == "forward":
        return x, w  # x @ W^T
    if kind == "grad_input":
        return gy, w.t()  # gy @ W, through a transposed view of W
    return gy.t(), x.t()  # gy^T @ x


def _check(backend: str, kind: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown GEMM backend {backend!r}; choose one of {BACKENDS}.")
    if kind not in GEMM_KINDS:
        raise ValueError(f"Unknown GEMM kind {kind!r}; choose one of {GEMM_KINDS}.")


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _seconds_per_call(a: Tensor, b: Tensor, backend: str, iters: int, sync) -> float:
    t0 = time.perf_counter()
    for _ in range(iters):
        gemm_nt(a, b, None, backend)
    sync()
    return (time.perf_counter() - t0) / iters


def measure_gemm(
    backend: str, m: int = 1024, k: int = 256, n: int = 256, *, kind: str = "forward",
    device: torch.device | str = "cpu", min_time: float = 0.05, repeats: int = 5,
) -> float:
    """GFLOP/s of one GEMM of a linear layer (``kind`` in :data:`GEMM_KINDS`) with input ``[m, k]`` and
    weight ``[n, k]`` on ``backend``: median of ``repeats`` timings of at least ``min_time`` seconds
    each, after a warm-up."""
    _check(backend, kind)
    device = torch.device(device)
    a, b = _operands(kind, m, k, n, device)
    sync = _sync(device)
    for _ in range(3):
        gemm_nt(a, b, None, backend)
    sync()
    iters = max(1, int(min_time / max(_seconds_per_call(a, b, backend, 1, sync), 1e-7)))
    times = sorted(_seconds_per_call(a, b, backend, iters, sync) for _ in range(repeats))
    return 2.0 * m * k * n / times[len(times) // 2] / 1e9


def _measure_interleaved(kind: str, m: int, k: int, n: int, device: torch.device, *,
                         rounds: int = 5, min_time: float = 0.008) -> dict[str, float]:
    """GFLOP/s per backend of GEMM ``kind``: medians of ``rounds`` timings taken in turn (aten,
    onednn, aten, ...), so a burst of load from elsewhere hits both backends alike."""
    a, b = _operands(kind, m, k, n, device)
    sync = _sync(device)
    iters = {}
    for backend in BACKENDS:
        for _ in range(2):
            gemm_nt(a, b, None, backend)
        sync()
        iters[backend] = max(1, int(min_time / max(_seconds_per_call(a, b, backend, 1, sync), 1e-7)))
    runs: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    for _ in range(rounds):
        for backend in BACKENDS:
            runs[backend].append(_seconds_per_call(a, b, backend, iters[backend], sync))
    flops = 2.0 * m * k * n
    return {backend: flops / sorted(t)[len(t) // 2] / 1e9 for backend, t in runs.items()}


# ---------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class GemmPlan:
    """Backend of each GEMM of a linear layer, and how it was chosen.

    ``measured`` holds ``((kind, backend, gflops), ...)`` when the plan was measured; ``source`` says
    where it came from (``"measured"``, ``"env"``, ``"set"``, ``"default"``)."""

    forward: str = "aten"
    grad_input: str = "aten"
    grad_weight: str = "aten"
    measured: tuple = ()
    source: str = "set"

    def __post_init__(self):
        for kind in GEMM_KINDS:
            if getattr(self, kind) not in BACKENDS:
                raise ValueError(f"GemmPlan.{kind} must be one of {BACKENDS}, got {getattr(self, kind)!r}.")

    @classmethod
    def all(cls, backend: str, source: str = "set") -> "GemmPlan":
        """The plan with ``backend`` for all three GEMMs."""
        return cls(backend, backend, backend, source=source)

    @property
    def backends(self) -> tuple[str, str, str]:
        """``(forward, grad_input, grad_weight)``."""
        return (self.forward, self.grad_input, self.grad_weight)

    @property
    def uses_onednn(self) -> bool:
        return "onednn" in self.backends


_PLANS: dict[str, GemmPlan] = {}


def _key(device: torch.device | str | None) -> str:
    return torch.device("cpu" if device is None else device).type


def set_gemm_plan(plan: GemmPlan | str | None, device: torch.device | str = "cpu") -> None:
    """Fixes the plan for ``device`` (a :class:`GemmPlan`, or a backend name for all three GEMMs);
    ``None`` forgets it, so that the next :func:`gemm_plan` call measures again (or reads
    ``PPL_TORCHRL_GEMM``).

    Compiled functions read the plan when they are traced and recompile when it changes."""
    key = _key(device)
    if plan is None:
        _PLANS.pop(key, None)
        return
    if isinstance(plan, str):
        if plan not in BACKENDS:
            raise ValueError(f"Unknown GEMM backend {plan!r}; choose one of {BACKENDS}.")
        plan = GemmPlan.all(plan)
    if not isinstance(plan, GemmPlan):
        raise TypeError(f"set_gemm_plan expects a GemmPlan, a backend name or None; got {type(plan).__name__}.")
    _PLANS[key] = plan


def _forced() -> str | None:
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in ("", "auto"):
        return None
    if forced not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={forced!r} is not a GEMM backend; use one of {BACKENDS + ('auto',)} or unset it.")
    return forced


def _measure_plan(key: str, shape: tuple[int, int, int] = PLAN_SHAPE) -> GemmPlan:
    if key != "cpu" or not onednn_available():
        return GemmPlan(source="default")
    forced = _forced()
    if forced is not None:
        return GemmPlan.all(forced, source="env")
    chosen, measured = {}, []
    for kind in GEMM_KINDS:
        speed = _measure_interleaved(kind, *shape, torch.device(key))
        measured += [(kind, backend, round(s, 1)) for backend, s in speed.items()]
        chosen[kind] = "onednn" if speed["onednn"] > MIN_GAIN * speed["aten"] else "aten"
    return GemmPlan(**chosen, measured=tuple(measured), source="measured")


CACHE_ENV_VAR = "PPL_TORCHRL_GEMM_CACHE"


def _cache_file() -> Path | None:
    """Where measured CPU plans are kept (``$PPL_TORCHRL_GEMM_CACHE``, default
    ``~/.cache/ppl_torchrl/gemm_plans.json``); ``None`` if set to ``off``."""
    value = os.environ.get(CACHE_ENV_VAR, "").strip()
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "ppl_torchrl" / "gemm_plans.json"


def _machine_key(shape) -> str:
    return f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {shape}"


def _measured_once_per_machine(key: str, shape) -> GemmPlan:
    """The CPU plan measured once per machine (CPU model, torch version, thread count) and kept on disk, so
    every process of the machine uses the same plan: a plan measured anew by each process could differ under
    load, and with it the rounding (two runs of one seed would then differ). The file is locked while a process
    measures, so concurrent runs (a sweep) wait for one measurement instead of racing."""
    path = _cache_file()
    if path is None:
        return _measure_plan(key, shape)
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "w")
    except (OSError, ImportError):  # read-only home, no fcntl: measure in this process only
        return _measure_plan(key, shape)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            table = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            table = {}
        entry = table.get(_machine_key(shape))
        if isinstance(entry, dict) and tuple(entry.get("backends", ())) and all(
                b in BACKENDS for b in entry["backends"]) and len(entry["backends"]) == 3:
            measured = tuple(tuple(m) for m in entry.get("measured", ()))
            return GemmPlan(*entry["backends"], measured=measured, source="cached")
        plan = _measure_plan(key, shape)
        if plan.source == "measured":
            table[_machine_key(shape)] = {"backends": list(plan.backends), "measured": [list(m) for m in plan.measured]}
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(table, indent=1))
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)
        return plan


def gemm_plan(device: torch.device | str = "cpu", *, shape: tuple[int, int, int] = PLAN_SHAPE) -> GemmPlan:
    """The fastest backend per GEMM kind on ``device``, measured once per machine and cached.

    Non-CPU devices and torch builds without oneDNN always get ``"aten"``. ``PPL_TORCHRL_GEMM=aten`` or
    ``onednn`` forces a backend without measuring (``auto`` or unset: measure). oneDNN must be
    :data:`MIN_GAIN` times as fast as torch's GEMM to be chosen (medians of 5 interleaved timings at
    ``shape`` = M x K x N, about 0.5 s in all), so noise does not flip the choice for nothing. The measured
    plan is kept in memory and on disk (:data:`CACHE_ENV_VAR`; delete the file to measure again)."""
    key = _key(device)
    plan = _PLANS.get(key)
    if plan is None:
        if key == "cpu" and onednn_available() and _forced() is None:
            plan = _measured_once_per_machine(key, shape)
        else:
            plan = _measure_plan(key, shape)
        _PLANS[key] = plan
    return plan


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_plan(device: torch.device | str = "cpu") -> str:
    """One line for logs: the CPU model, the chosen backend per GEMM kind and the measured GFLOP/s."""
    key = _key(device)
    plan = gemm_plan(key)
    where = cpu_model() if key == "cpu" else key
    text = (f"GEMM plan on {where}: forward={plan.forward} grad_input={plan.grad_input} "
            f"grad_weight={plan.grad_weight} ({plan.source}")
    if key == "cpu" and not onednn_available():
        text += "; this torch build has no oneDNN"
    text += ")"
    if plan.measured:
        speeds = {}
        for kind, backend, gflops in plan.measured:
            speeds.setdefault(kind, []).append(f"{backend} {gflops:g}")
        m, k, n = PLAN_SHAPE
        text += f"; GFLOP/s at {m}x{k}x{n}: " + ", ".join(f"{kind} {' / '.join(v)}" for kind, v in speeds.items())
    return text


# ---------------------------------------------------------------------------------------------- operators
# ppl_torchrl::linear(x, W, b)             = x W^T + b        x [..., K], W [N, K], b [N] -> [..., N]
# ppl_torchrl::linear_grad_input(g, W)     = g W              g [..., N], W [N, K]        -> [..., K]
# ppl_torchrl::linear_grad_weight(g, x)    = g^T x            g [..., N], x [..., K]      -> [N, K]
# ``backends`` is (forward, grad_input, grad_weight); each operator runs its own GEMM on its kind's entry
# and passes the list on to the operators of its gradient.
_lib = torch.library.Library("ppl_torchrl", "FRAGMENT")
_lib.define("linear(Tensor x, Tensor weight, Tensor? bias, str[] backends) -> Tensor")
_lib.define("linear_grad_input(Tensor grad, Tensor weight, str[] backends) -> Tensor")
_lib.define("linear_grad_weight(Tensor grad, Tensor x, str[] backends) -> Tensor")
_OPS = torch.ops.ppl_torchrl


def _linear_impl(x: Tensor, weight: Tensor, bias: Tensor | None, backends: Sequence[str]) -> Tensor:
    return gemm_nt(x, weight, bias, backends[0]).contiguous()


def _grad_input_impl(grad: Tensor, weight: Tensor, backends: Sequence[str]) -> Tensor:
    if backends[1] == "onednn" and _onednn_ok(grad):
        return torch.ops.mkldnn._linear_pointwise(grad, weight.t(), None, "none", [], "").contiguous()
    return torch.matmul(grad, weight).contiguous()


def _grad_weight_impl(grad: Tensor, x: Tensor, backends: Sequence[str]) -> Tensor:
    g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
    if backends[2] == "onednn" and _onednn_ok(g2):
        return torch.ops.mkldnn._linear_pointwise(g2.t(), x2.t(), None, "none", [], "").contiguous()
    return torch.mm(g2.t(), x2).contiguous()


_lib.impl("linear", _linear_impl, "CompositeExplicitAutograd")
_lib.impl("linear_grad_input", _grad_input_impl, "CompositeExplicitAutograd")
_lib.impl("linear_grad_weight", _grad_weight_impl, "CompositeExplicitAutograd")


@torch.library.register_fake("ppl_torchrl::linear", lib=_lib)
def _linear_fake(x, weight, bias, backends):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.register_fake("ppl_torchrl::linear_grad_input", lib=_lib)
def _grad_input_fake(grad, weight, backends):
    return grad.new_empty((*grad.shape[:-1], weight.shape[1]))


@torch.library.register_fake("ppl_torchrl::linear_grad_weight", lib=_lib)
def _grad_weight_fake(grad, x, backends):
    return grad.new_empty((grad.shape[-1], x.shape[-1]))


def _call(fn: type, op, *args):
    """Applies operator ``op`` with its gradient ``fn``. Under a ``torch.func`` transform, called from
    Python: ``fn.apply`` (functorch handles it like any ``autograd.Function``, nested transforms
    included). Otherwise (plain autograd, or dynamo tracing): ``op`` itself, whose Autograd kernel
    (below) applies ``fn`` when a gradient is wanted."""
    if not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active():
        return fn.apply(*args)
    return op(*args)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(x, weight, bias, backends):
        return _OPS.linear(x, weight, bias, backends)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, backends = inputs
        ctx.save_for_backward(x, weight)
        ctx.backends = backends
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _call(_GradInput, _OPS.linear_grad_input, grad, weight, ctx.backends)
        if ctx.needs_input_grad[1]:
            gw = _call(_GradWeight, _OPS.linear_grad_weight, grad, x, ctx.backends)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.reshape(-1, grad.shape[-1]).sum(0)
        return gx, gw, gb, None


class _GradInput(torch.autograd.Function):
    """``g W``; its gradients: ``dg = h W^T`` (linear), ``dW = g^T h`` (grad_weight)."""

    @staticmethod
    def forward(grad, weight, backends):
        return _OPS.linear_grad_input(grad, weight, backends)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad, weight, backends = inputs
        ctx.save_for_backward(grad, weight)
        ctx.backends = backends

    @staticmethod
    def backward(ctx, h):
        grad, weight = ctx.saved_tensors
        dg = dw = None
        if ctx.needs_input_grad[0]:
            dg = _call(_Linear, _OPS.linear, h, weight, None, ctx.backends)
        if ctx.needs_input_grad[1]:
            dw = _call(_GradWeight, _OPS.linear_grad_weight, grad, h, ctx.backends)
        return dg, dw, None


class _GradWeight(torch.autograd.Function):
    """``g^T x``; its gradients: ``dg = x h^T`` (linear), ``dx = g h`` (grad_input)."""

    @staticmethod
    def forward(grad, x, backends):
        return _OPS.linear_grad_weight(grad, x, backends)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad, x, backends = inputs
        ctx.save_for_backward(grad, x)
        ctx.backends = backends

    @staticmethod
    def backward(ctx, h):
        grad, x = ctx.saved_tensors
        dg = dx = None
        if ctx.needs_input_grad[0]:
            dg = _call(_Linear, _OPS.linear, x, h, None, ctx.backends)
        if ctx.needs_input_grad[1]:
            dx = _call(_GradInput, _OPS.linear_grad_input, grad, h, ctx.backends)
        return dg, dx, None


def _function_apply(fn: type, *args):
    """``torch.autograd.Function``'s C++ ``apply`` (records ``fn`` on the current autograd level)."""
    return super(torch.autograd.Function, fn).apply(*args)


def _single_level(fn: type) -> type:
    """``fn`` as a ``_SingleLevelFunction``: the class functorch itself applies on one grad level. Since
    torch 2.14 the C++ ``apply`` of a ``torch.autograd.Function`` hands it to functorch's
    ``custom_function_call`` whenever a transform is active, which has no kernel below the transform's
    layer (where this runs); a ``_SingleLevelFunction`` is recorded on the level as it is."""
    return type(f"{fn.__name__}SingleLevel", (torch.autograd.function._SingleLevelFunction,), {
        "forward": staticmethod(fn.forward), "setup_context": staticmethod(fn.setup_context),
        "backward": staticmethod(fn.backward)})


def _autograd_kernel(fn: type, op):
    """The Autograd kernel of ``op``: applies ``fn`` when a gradient is wanted, else runs ``op`` below
    autograd (a plain call: the operator stays opaque to tracing and to inductor)."""
    fn_one_level = _single_level(fn)

    def kernel(*args):
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            if not torch._C._are_functorch_transforms_active():
                # what fn.apply does without transforms, minus its per-call signature binding
                return _function_apply(fn, *args)
            # Reached under a torch.func transform only from compiled code (dynamo calls the operator;
            # from Python, `_call` applies `fn` above functorch's front layer). Here the arguments are
            # one grad level's tensors: record `fn` on that level only.
            from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
            from torch._functorch.utils import enable_single_level_autograd_function

            levels = retrieve_all_functorch_interpreters()
            if len(levels) != 1 or levels[0].key() != torch._C._functorch.TransformType.Grad:
                raise NotImplementedError(
                    f"{op}: inside torch.compile, only one level of torch.func.grad/vjp is supported "
                    f"(found {[str(i.key()) for i in levels]}); use F.linear or set_gemm_plan('aten')."
                )
            with enable_single_level_autograd_function():
                return fn_one_level.apply(*args)
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    return kernel


_lib.impl("linear", _autograd_kernel(_Linear, _OPS.linear.default), "Autograd")
_lib.impl("linear_grad_input", _autograd_kernel(_GradInput, _OPS.linear_grad_input.default), "Autograd")
_lib.impl("linear_grad_weight", _autograd_kernel(_GradWeight, _OPS.linear_grad_weight.default), "Autograd")


# ---------------------------------------------------------------------------------------------- public
@torch.compiler.assume_constant_result
def _plan_ready(key: str) -> bool:
    """Makes sure :func:`gemm_plan` has a plan for ``key``; run eagerly when dynamo traces a call (the
    measurement cannot be traced), so a compiled function needs no plan set beforehand."""
    gemm_plan(key)
    return True


def _routed(x: Tensor, plan: GemmPlan | None) -> list[str] | None:
    """The backends to route ``x``'s GEMMs to, or ``None`` for plain torch (no oneDNN entry in the plan,
    or ``x`` not an fp32 CPU tensor). Read from the plan table, so compiled functions guard on it and
    recompile after :func:`set_gemm_plan`."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    if plan is None:
        if torch.compiler.is_compiling():
            _plan_ready("cpu")
        plan = _PLANS.get("cpu")
        if plan is None:
            plan = gemm_plan("cpu")
    return list(plan.backends) if plan.uses_onednn else None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, plan: GemmPlan | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` (``x [..., K]``, ``weight [N, K]``, ``bias [N]`` or ``None``) with its
    GEMMs on the backends of ``plan`` (default: :func:`gemm_plan` of ``x``'s device).

    Plain ``F.linear`` when the plan has no ``"onednn"`` entry or ``x`` is not an fp32 CPU tensor.
    Differentiable eagerly, under ``torch.func.grad`` and inside ``torch.compile(fullgraph=True)``."""
    backends = _routed(x, plan)
    if backends is None:
        return F.linear(x, weight, bias)
    return _call(_Linear, _OPS.linear, x, weight, bias, backends)


def ensemble_linear(x: Tensor, weight: Tensor, bias: Tensor | None, *, plan: GemmPlan | None = None) -> Tensor:
    """Stacked ensemble layer: ``weight [E, K, N]``, ``bias [E, 1, N]``, ``x [M, K]`` (shared by all
    members) or ``[E, M, K]``; returns ``[E, M, N]``, the math of ``torch.matmul(x, weight) + bias`` /
    ``torch.baddbmm(bias, x, weight)``.

    With a oneDNN plan, one :func:`linear` per member on the transposed view ``weight[e].t()`` (a view:
    no copy of the weights), outputs stacked."""
    backends = _routed(x, plan)
    if backends is None:
        if x.dim() == 2:
            out = torch.matmul(x, weight)
            return out if bias is None else out + bias
        return torch.bmm(x, weight) if bias is None else torch.baddbmm(bias, x, weight)
    members = weight.unbind(0)
    biases = [None] * len(members) if bias is None else [b.reshape(-1) for b in bias.unbind(0)]
    inputs = [x] * len(members) if x.dim() == 2 else x.unbind(0)
    return torch.stack([
        _call(_Linear, _OPS.linear, xi, wi.t(), bi, backends) for xi, wi, bi in zip(inputs, members, biases)
    ])
