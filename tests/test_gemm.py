"""ppl_torchrl.gemm: the oneDNN guard, the plan, and `linear` / `ensemble_linear` against torch for every
backend, eagerly, under torch.func.grad and compiled with inductor (fullgraph)."""
from __future__ import annotations

import inspect
import time

import pytest
import torch
from torch.nn import functional as F

from ppl_torchrl import gemm

PLANS = {
    "aten": gemm.GemmPlan.all("aten"),
    "onednn": gemm.GemmPlan.all("onednn"),
    "onednn-fwd-wgrad": gemm.GemmPlan("onednn", "aten", "onednn"),
    "onednn-igrad": gemm.GemmPlan("aten", "onednn", "aten"),
}
REL = 1e-5


@pytest.fixture(autouse=True)
def _fresh_plans(monkeypatch, tmp_path):
    """Each test starts without a plan, without PPL_TORCHRL_GEMM and with an empty on-disk plan cache; the
    plans before it come back after."""
    saved = dict(gemm._PLANS)
    gemm._PLANS.clear()
    monkeypatch.delenv(gemm.ENV_VAR, raising=False)
    monkeypatch.setenv(gemm.CACHE_ENV_VAR, str(tmp_path / "gemm_plans.json"))
    yield
    gemm._PLANS.clear()
    gemm._PLANS.update(saved)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_close_tree(got, want, what: str):
    got, want = torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        err = rel_err(a, b)
        assert err < REL, f"{what}: leaf {i} differs from torch by {err:.2e} (relative)"


# ---------------------------------------------------------------------------------------------- oneDNN guard
def test_onednn_kernel_is_there_and_unchanged():
    """Fails (never skips) when this torch build has oneDNN but its private fp32 linear kernel is gone,
    renamed, takes other arguments or computes something else: gemm's "onednn" backend rests on it."""
    if not torch.backends.mkldnn.is_available():
        assert not gemm.onednn_available()
        assert gemm.gemm_plan("cpu").backends == ("aten",) * 3
        return
    assert hasattr(torch.ops.mkldnn, "_linear_pointwise"), (
        "torch.ops.mkldnn._linear_pointwise is missing from this torch build although oneDNN is available: "
        "ppl_torchrl.gemm's 'onednn' backend needs a replacement."
    )
    assert gemm.onednn_available()
    schema = str(torch.ops.mkldnn._linear_pointwise.default._schema)
    for arg in ("Tensor X", "Tensor W", "Tensor? B", "str attr", "Scalar?[] scalars", "str? algorithm"):
        assert arg in schema, f"mkldnn::_linear_pointwise changed its signature: {schema}"
    lp = torch.ops.mkldnn._linear_pointwise
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(67, 33, generator=g), torch.randn(29, 33, generator=g), torch.randn(29, generator=g)
    gy = torch.randn(67, 29, generator=g)
    # forward x W^T + b, input gradient g W through a transposed view, weight gradient g^T x (both views)
    assert rel_err(lp(x, w, b, "none", [], ""), x @ w.T + b) < REL
    assert rel_err(lp(x, w, None, "none", [], ""), x @ w.T) < REL
    assert rel_err(lp(gy, w.t(), None, "none", [], ""), gy @ w) < REL
    assert rel_err(lp(gy.t(), x.t(), None, "none", [], ""), gy.T @ x) < REL
    x3 = torch.randn(3, 5, 33, generator=g)
    assert rel_err(lp(x3, w, b, "none", [], ""), x3 @ w.T + b) < REL


def test_gemm_nt_backends_agree():
    a, bmat = torch.randn(40, 24), torch.randn(16, 24)
    for backend in gemm.BACKENDS:
        assert rel_err(gemm.gemm_nt(a, bmat, None, backend), a @ bmat.T) < REL
    # non-fp32 or empty inputs fall back to torch
    a64 = a.double()
    assert torch.equal(gemm.gemm_nt(a64, bmat.double(), None, "onednn"), F.linear(a64, bmat.double()))
    assert gemm.gemm_nt(torch.randn(0, 24), bmat, None, "onednn").shape == (0, 16)


# ---------------------------------------------------------------------------------------------- plan
def test_plan_is_measured_once_and_cached():
    t0 = time.perf_counter()
    plan = gemm.gemm_plan("cpu")
    took = time.perf_counter() - t0
    assert gemm.gemm_plan("cpu") is plan
    if gemm.onednn_available():
        assert plan.source == "measured"
        assert {(kind, backend) for kind, backend, _ in plan.measured} == {
            (k, b) for k in gemm.GEMM_KINDS for b in gemm.BACKENDS}
        assert all(gflops > 0 for *_, gflops in plan.measured)
        # ~0.5 s on an idle machine; generous for a shared, loaded one
        assert took < 3.0, f"measuring the GEMM plan took {took:.2f} s"
    line = gemm.describe_plan("cpu")
    assert "\n" not in line and gemm.cpu_model() in line
    assert f"forward={plan.forward}" in line and f"grad_weight={plan.grad_weight}" in line


def test_measured_plan_is_kept_on_disk_for_every_process_of_the_machine(monkeypatch, tmp_path):
    if not gemm.onednn_available():
        pytest.skip("this torch build has no oneDNN: nothing is measured")
    monkeypatch.setattr(gemm, "_measure_interleaved", lambda *a, **k: {"aten": 100.0, "onednn": 150.0})
    first = gemm.gemm_plan("cpu")
    assert first.backends == ("onednn",) * 3 and first.source == "measured"
    assert (tmp_path / "gemm_plans.json").exists()
    # another process (here: the in-memory plan forgotten) reads the same plan instead of measuring again
    gemm.set_gemm_plan(None)
    monkeypatch.setattr(gemm, "_measure_interleaved", lambda *a, **k: pytest.fail("should read the cache"))
    again = gemm.gemm_plan("cpu")
    assert again.backends == first.backends and again.source == "cached" and again.measured == first.measured
    assert "cached" in gemm.describe_plan("cpu")
    # a corrupt cache is measured over; PPL_TORCHRL_GEMM_CACHE=off never touches the disk
    (tmp_path / "gemm_plans.json").write_text("{not json")
    gemm.set_gemm_plan(None)
    monkeypatch.setattr(gemm, "_measure_interleaved", lambda *a, **k: {"aten": 100.0, "onednn": 100.0})
    assert gemm.gemm_plan("cpu").backends == ("aten",) * 3
    monkeypatch.setenv(gemm.CACHE_ENV_VAR, "off")
    (tmp_path / "gemm_plans.json").unlink()
    gemm.set_gemm_plan(None)
    assert gemm.gemm_plan("cpu").source == "measured" and not (tmp_path / "gemm_plans.json").exists()


def test_plan_needs_a_clear_gain(monkeypatch):
    if not gemm.onednn_available():
        pytest.skip("this torch build has no oneDNN: the plan is always aten (checked elsewhere)")
    speeds = {"forward": (100.0, 130.0), "grad_input": (100.0, 110.0), "grad_weight": (100.0, 90.0)}

    def fake(kind, m, k, n, device, **kw):
        aten, onednn = speeds[kind]
        return {"aten": aten, "onednn": onednn}

    monkeypatch.setattr(gemm, "_measure_interleaved", fake)
    plan = gemm.gemm_plan("cpu")
    assert plan.backends == ("onednn", "aten", "aten")
    assert ("forward", "onednn", 130.0) in plan.measured
    assert "forward aten 100 / onednn 130" in gemm.describe_plan()


def test_plan_env_var_and_set(monkeypatch):
    monkeypatch.setattr(gemm, "_measure_interleaved", lambda *a, **k: pytest.fail("should not measure"))
    monkeypatch.setenv(gemm.ENV_VAR, "onednn")
    if gemm.onednn_available():
        assert gemm.gemm_plan("cpu") == gemm.GemmPlan.all("onednn", source="env")
    gemm.set_gemm_plan(None)
    monkeypatch.setenv(gemm.ENV_VAR, " ATEN ")
    assert gemm.gemm_plan("cpu").backends == ("aten",) * 3
    gemm.set_gemm_plan(None)
    monkeypatch.setenv(gemm.ENV_VAR, "mkl")
    with pytest.raises(ValueError, match="PPL_TORCHRL_GEMM"):
        gemm.gemm_plan("cpu")
    # other devices never measure nor read the variable
    assert gemm.gemm_plan("meta") == gemm.GemmPlan(source="default")
    assert gemm.gemm_plan(torch.device("cuda", 1)).backends == ("aten",) * 3
    gemm.set_gemm_plan("onednn", "cpu")
    assert gemm.gemm_plan("cpu") == gemm.GemmPlan.all("onednn")
    mixed = gemm.GemmPlan("aten", "onednn", "aten")
    gemm.set_gemm_plan(mixed)
    assert gemm.gemm_plan() is mixed and mixed.uses_onednn and not gemm.GemmPlan().uses_onednn
    with pytest.raises(ValueError):
        gemm.set_gemm_plan("mkl")
    with pytest.raises(ValueError):
        gemm.GemmPlan(forward="mkl")
    monkeypatch.setenv(gemm.ENV_VAR, "auto")
    gemm.set_gemm_plan(None)
    monkeypatch.setattr(gemm, "_measure_interleaved", lambda *a, **k: {"aten": 1.0, "onednn": 2.0})
    expected = ("onednn",) * 3 if gemm.onednn_available() else ("aten",) * 3
    assert gemm.gemm_plan("cpu").backends == expected


def test_plain_torch_when_no_onednn_entry():
    """With an all-aten plan (and for non-fp32 inputs) `linear` is F.linear itself: no custom op."""
    gemm.set_gemm_plan("aten")
    x, w, b = torch.randn(8, 5, requires_grad=True), torch.randn(4, 5), torch.randn(4)
    assert gemm.linear(x, w, b).grad_fn.name() == F.linear(x, w, b).grad_fn.name()
    gemm.set_gemm_plan("onednn")
    assert "_Linear" in type(gemm.linear(x, w, b).grad_fn).__name__
    xd = x.double()
    assert torch.equal(gemm.linear(xd, w.double(), b.double()), F.linear(xd, w.double(), b.double()))
    xm = torch.empty(8, 5, device="meta")
    assert gemm.linear(xm, w.to("meta")).shape == (8, 4)


# ---------------------------------------------------------------------------------------------- linear, eager
def _data(shape_x, k=17, n=32, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape_x, k, generator=g)
    w = torch.randn(n, k, generator=g) / k ** 0.5
    b = torch.randn(n, generator=g) if bias else None
    return x, w, b


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("shape_x", [(64,), (3, 20)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_eager_backward(plan, shape_x, bias):
    gemm.set_gemm_plan(PLANS[plan])
    x, w, b = _data(shape_x, bias=bias)
    gy = torch.randn(*shape_x, w.shape[0])
    leaves = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    ref = [t.detach().clone().requires_grad_() for t in leaves]
    out = gemm.linear(*leaves) if bias else gemm.linear(*leaves, None)
    want = F.linear(*ref) if bias else F.linear(*ref, None)
    assert out.shape == want.shape and rel_err(out, want) < REL
    out.backward(gy)
    want.backward(gy)
    assert_close_tree([t.grad for t in leaves], [t.grad for t in ref], f"eager backward, plan {plan}")
    if PLANS[plan].uses_onednn:
        assert "_Linear" in type(out.grad_fn).__name__


@pytest.mark.parametrize("plan", PLANS)
def test_linear_under_func_grad(plan):
    gemm.set_gemm_plan(PLANS[plan])
    x, w, b = _data((3, 20))

    def loss(fn, w, b, x):
        return fn(x, w, b).sin().sum()

    got = torch.func.grad(lambda *a: loss(gemm.linear, *a), argnums=(0, 1, 2))(w, b, x)
    want = torch.func.grad(lambda *a: loss(F.linear, *a), argnums=(0, 1, 2))(w, b, x)
    assert_close_tree(got, want, f"func.grad, plan {plan}")


def test_second_order_eagerly():
    """The three operators are closed under differentiation: create_graph and nested func.grad work."""
    gemm.set_gemm_plan("onednn")
    x, w, b = _data((24,), k=7, n=5)

    def inner(fn, w, b, x):
        return fn(x, w, b).tanh().square().sum()

    def outer(fn):
        def f(w, b, x):
            gw, gx = torch.func.grad(lambda *a: inner(fn, *a), argnums=(0, 2))(w, b, x)
            return gw.pow(2).sum() + gx.sin().sum()
        return torch.func.grad(f, argnums=(0, 1, 2))(w, b, x)

    assert_close_tree(outer(gemm.linear), outer(F.linear), "nested func.grad")
    wa, wb = w.clone().requires_grad_(), w.clone().requires_grad_()
    ga, = torch.autograd.grad(inner(gemm.linear, wa, b, x), wa, create_graph=True)
    gb, = torch.autograd.grad(inner(F.linear, wb, b, x), wb, create_graph=True)
    assert_close_tree(torch.autograd.grad(ga.sin().sum(), wa), torch.autograd.grad(gb.sin().sum(), wb),
                      "create_graph=True")


# ---------------------------------------------------------------------------------------------- ensemble
def _ens_data(shared: bool, e=2, m=24, k=11, n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g) if shared else torch.randn(e, m, k, generator=g)
    w = torch.randn(e, k, n, generator=g) / k ** 0.5
    b = torch.randn(e, 1, n, generator=g)
    return x, w, b


def _ens_ref(x, w, b):
    return torch.matmul(x, w) + b if x.dim() == 2 else torch.baddbmm(b, x, w)


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("shared", [True, False])
def test_ensemble_linear_eager_and_func_grad(plan, shared):
    gemm.set_gemm_plan(PLANS[plan])
    x, w, b = _ens_data(shared)
    out = gemm.ensemble_linear(x, w, b)
    assert out.shape == (2, 24, 16) and rel_err(out, _ens_ref(x, w, b)) < REL
    assert rel_err(gemm.ensemble_linear(x, w, None), _ens_ref(x, w, torch.zeros_like(b))) < REL

    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    gy = torch.randn(2, 24, 16)
    gemm.ensemble_linear(*leaves).backward(gy)
    _ens_ref(*ref).backward(gy)
    assert_close_tree([t.grad for t in leaves], [t.grad for t in ref], f"ensemble backward, plan {plan}")

    def loss(fn, x, w, b):
        return fn(x, w, b).relu().square().mean()

    got = torch.func.grad(lambda *a: loss(gemm.ensemble_linear, *a), argnums=(0, 1, 2))(x, w, b)
    want = torch.func.grad(lambda *a: loss(_ens_ref, *a), argnums=(0, 1, 2))(x, w, b)
    assert_close_tree(got, want, f"ensemble func.grad, plan {plan}")


def test_ensemble_member_weights_are_views():
    """oneDNN reads each member's weight through `weight[e].t()`: the operator gets views of the stacked
    weight (same storage, transposed strides), no copies."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.weights = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.ppl_torchrl.linear.default:
                self.weights.append(args[1])
            return func(*args, **(kwargs or {}))

    gemm.set_gemm_plan("onednn")
    x, w, b = _ens_data(True)
    with Seen() as seen:
        gemm.ensemble_linear(x, w, b)
    assert len(seen.weights) == w.shape[0]
    for e, view in enumerate(seen.weights):
        assert view.untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
        assert view.data_ptr() == w[e].data_ptr() and view.stride() == (1, w.shape[2])


# ---------------------------------------------------------------------------------------------- compiled
def _mlp_params(seed=2, e=2):
    g = torch.Generator().manual_seed(seed)

    def layer(*shape_w, o):
        return torch.randn(*shape_w, generator=g) / shape_w[-1 if len(shape_w) == 2 else 1] ** 0.5, \
            0.1 * torch.randn(*shape_w[:-2], *((1,) if len(shape_w) == 3 else ()), o, generator=g)

    return {"actor": [layer(16, 6, o=16), layer(4, 16, o=4)],
            "critic": [layer(e, 4, 16, o=16), layer(e, 16, 1, o=1)]}


def _update_loss(lin, elin):
    """A small actor MLP and a 2-member critic (shared input, then one input per member): the layer kinds
    of the PPL^R update."""

    def loss(params, obs):
        (w1, b1), (w2, b2) = params["actor"]
        act = lin(torch.relu(lin(obs, w1, b1)), w2, b2)  # [M, 4]
        (c1, d1), (c2, d2) = params["critic"]
        q = elin(torch.relu(elin(act, c1, d1)), c2, d2)  # [M, 4] -> [E, M, 16] -> [E, M, 1]
        return q.square().mean() + 0.1 * act.square().mean()

    return loss


def _ops_run(fn, *args):
    """The GEMM operators that one call of ``fn`` runs (profiler names)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn(*args)
    names = {e.name for e in prof.events()}
    return {n for n in names if n.startswith("ppl_torchrl::") or n == "mkldnn::_linear_pointwise"}


@pytest.mark.slow
def test_compiled_func_grad_every_plan():
    """`torch.compile(lambda params, x: torch.func.grad(loss)(params, x), fullgraph=True)` with inductor,
    the way the update uses it, for each plan in turn: the compiled function follows set_gemm_plan
    (it recompiles) and routes the GEMMs accordingly."""
    params, obs = _mlp_params(), torch.randn(8, 6)
    loss = _update_loss(gemm.linear, gemm.ensemble_linear)
    step = torch.compile(lambda p, x: torch.func.grad(loss)(p, x), fullgraph=True, backend="inductor")
    want = torch.func.grad(_update_loss(F.linear, _ens_ref))(params, obs)
    for plan in ("aten", "onednn", "onednn-igrad"):
        gemm.set_gemm_plan(PLANS[plan])
        assert_close_tree(step(params, obs), want, f"compiled func.grad, plan {plan}")
        ops = _ops_run(step, params, obs)
        if plan == "aten":
            assert not ops
        else:
            assert {"ppl_torchrl::linear", "ppl_torchrl::linear_grad_input", "ppl_torchrl::linear_grad_weight",
                    "mkldnn::_linear_pointwise"} <= ops, (plan, ops)


def test_compiled_backward():
    """A compiled loss differentiated by `.backward()` (forward and backward graphs)."""
    gemm.set_gemm_plan("onednn")
    params, obs = _mlp_params(seed=3), torch.randn(8, 6)
    leaves = torch.utils._pytree.tree_map(lambda t: t.clone().requires_grad_(), params)
    fwd = torch.compile(_update_loss(gemm.linear, gemm.ensemble_linear), fullgraph=True, backend="inductor")
    fwd(leaves, obs).backward()
    want = torch.func.grad(_update_loss(F.linear, _ens_ref))(params, obs)
    assert_close_tree(torch.utils._pytree.tree_map(lambda t: t.grad, leaves), want, "compiled .backward()")
    assert "ppl_torchrl::linear_grad_weight" in _ops_run(lambda: fwd(leaves, obs).backward())


def test_compiled_nested_grad_is_refused():
    """Nested torch.func.grad inside a compiled function is not supported: it must fail, not mislead."""
    gemm.set_gemm_plan("onednn")
    x, w, b = _data((6,), k=3, n=4)

    def inner(w):
        return gemm.linear(x, w, b).square().sum()

    f = torch.compile(lambda w: torch.func.grad(lambda w: torch.func.grad(inner)(w).sum())(w),
                      fullgraph=True, backend="inductor")
    with pytest.raises(Exception, match="NotImplementedError|only one level"):
        f(w)


def test_public_api_signatures():
    assert list(inspect.signature(gemm.linear).parameters) == ["x", "weight", "bias", "plan"]
    assert list(inspect.signature(gemm.ensemble_linear).parameters) == ["x", "weight", "bias", "plan"]
    assert set(gemm.__all__) <= set(dir(gemm))
