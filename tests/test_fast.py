"""The fast path (ppl_torchrl.fast) computes exactly what the plain path computes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torch import nn
from torch.nn import functional as F

from ppl_torchrl import fast, keys
from ppl_torchrl.algorithms import make_algorithm
from ppl_torchrl.modules import make_actor, make_potential, make_qvalue_ensemble

ONEDNN = fast.GemmPlan("onednn", "onednn", "onednn")
PLANS = [fast.GemmPlan()] + ([ONEDNN] if fast.onednn_available() else [])
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def _fresh_plan():
    fast.set_gemm_plan(None)
    yield
    fast.set_gemm_plan(None)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.forward)
@pytest.mark.parametrize("shape", [(7, 5), (2, 7, 5)])
def test_fast_linear_matches_f_linear_values_and_grads(plan, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(4, 5, generator=g, requires_grad=True)
    b = torch.randn(4, generator=g, requires_grad=True)
    gy = torch.randn(*shape[:-1], 4, generator=g)
    y = fast.fast_linear(x, w, b, plan)
    ref = F.linear(x, w, b)
    torch.testing.assert_close(y, ref, **TOL)
    grads = torch.autograd.grad(y, (x, w, b), gy)
    ref_grads = torch.autograd.grad(ref, (x, w, b), gy)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, **TOL)
    # hand-checked: d/dW sum(gy * (x W^T)) = gy^T x
    torch.testing.assert_close(grads[1], gy.reshape(-1, 4).t() @ x.detach().reshape(-1, 5), **TOL)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.forward)
def test_fast_linear_frozen_weight_gets_no_grad_and_no_bias_works(plan):
    x = torch.randn(6, 3, requires_grad=True)
    w = torch.randn(2, 3)
    y = fast.fast_linear(x, w, None, plan)
    torch.testing.assert_close(y, x @ w.t(), **TOL)
    y.sum().backward()
    torch.testing.assert_close(x.grad, w.sum(0).expand(6, 3), **TOL)
    assert w.grad is None


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.forward)
@pytest.mark.parametrize("shared", [True, False])
def test_fast_ensemble_linear_matches_batched_product(plan, shared):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*(() if shared else (3,)), 8, 5, generator=g, requires_grad=True)
    w = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    b = torch.randn(3, 1, 4, generator=g, requires_grad=True)
    y = fast.fast_ensemble_linear(x, w, b, plan)
    ref = torch.matmul(x, w) + b if shared else torch.baddbmm(b, x, w)
    assert y.shape == (3, 8, 4)
    torch.testing.assert_close(y, ref, **TOL)
    gy = torch.randn(3, 8, 4, generator=g)
    for got, want in zip(torch.autograd.grad(y, (x, w, b), gy), torch.autograd.grad(ref, (x, w, b), gy)):
        torch.testing.assert_close(got, want, **TOL)


def test_fast_modules_keep_state_dict_and_outputs():
    torch.manual_seed(0)
    slow = [make_actor(5, 3), make_qvalue_ensemble(5, 3, hidden_dim=16), make_potential(5, 3, hidden_dim=16)]
    torch.manual_seed(0)
    quick = [make_actor(5, 3, fast_linear=True), make_qvalue_ensemble(5, 3, hidden_dim=16, fast_linear=True),
             make_potential(5, 3, hidden_dim=16, fast_linear=True)]
    assert isinstance(quick[0].module.net[0], fast.FastLinear)
    assert isinstance(quick[1].module.net[0], fast.FastEnsembleLinear)
    td = TensorDict({keys.OBSERVATION: torch.randn(9, 5), keys.ACTION: torch.rand(9, 3) * 2 - 1}, [9])
    for a, b in zip(slow, quick):
        assert a.state_dict().keys() == b.state_dict().keys()
        b.load_state_dict(a.state_dict())
        key = a.out_keys[0]
        torch.testing.assert_close(b(td.clone())[key], a(td.clone())[key], **TOL)


def test_gemm_plan_env_override_and_errors(monkeypatch):
    monkeypatch.setenv(fast.ENV_VAR, "aten")
    assert fast.gemm_plan("cpu") == fast.GemmPlan("aten", "aten", "aten")
    fast.set_gemm_plan(None)
    monkeypatch.setenv(fast.ENV_VAR, "mkl")
    with pytest.raises(ValueError, match="not a GEMM backend"):
        fast.gemm_plan("cpu")
    with pytest.raises(ValueError, match="Unknown GEMM backend"):
        fast.measure_gemm("blas")
    with pytest.raises(ValueError, match="must be one of"):
        fast.GemmPlan("onednn", "cublas", "aten")
    fast.set_gemm_plan("onednn")
    assert fast.gemm_plan("cpu").grad_weight == "onednn"


def test_measure_gemm_reports_positive_throughput():
    assert fast.measure_gemm("aten", 64, 32, 32, min_time=0.001, repeats=1) > 0


# ------------------------------------------------------------------------------ fused update
def _cfg(name, **loss):
    lc = dict(name=name, actor_bc_coef=1e-3, critic_bc_coef=5e-4, policy_noise=0.2, noise_clip=0.5,
              normalize_q=True, critic_next_action="policy", validate_inputs=True)
    if name == "ppl":
        lc.update(w=8.0, potential_uses_target_actor=True, use_potential=True)
    lc.update(loss)
    return OmegaConf.create(dict(
        loss=lc, model=dict(hidden_dim=32, num_hidden=2, num_qvalue_nets=2),
        optim=dict(actor_lr=1e-3, critic_lr=1e-3, potential_lr_scale=0.1, tau=0.05, policy_freq=2, gamma=0.99)))


def _batch(g, b=16, o=5, a=3):
    return TensorDict({
        keys.OBSERVATION: torch.randn(b, o, generator=g), keys.ACTION: torch.rand(b, a, generator=g) * 2 - 1,
        keys.NEXT_OBSERVATION: torch.randn(b, o, generator=g), keys.NEXT_ACTION: torch.rand(b, a, generator=g) * 2 - 1,
        keys.REWARD: torch.randn(b, 1, generator=g), keys.DONE: torch.zeros(b, 1, dtype=torch.bool),
        keys.TERMINATED: torch.rand(b, 1, generator=g) < 0.2, keys.TRUNCATED: torch.zeros(b, 1, dtype=torch.bool),
    }, [b])


def _train(cfg, plan=None, fused=False, steps=5):
    torch.manual_seed(0)
    alg = make_algorithm(cfg, 5, 3)
    if fused:
        fast.apply_to(alg, tau=cfg.optim.tau, policy_freq=cfg.optim.policy_freq, plan=plan)
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(7)  # the smoothing noise comes from the global RNG in both paths
    outs = [alg.update(_batch(g), s) for s in range(steps)]
    return alg, outs


@pytest.mark.parametrize("name", ["ppl", "rebrac"])
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.forward)
def test_fused_update_matches_default_update(name, plan):
    ref, ref_out = _train(_cfg(name))
    got, got_out = _train(_cfg(name), plan=plan, fused=True)
    sd_ref, sd_got = ref.loss.state_dict(), got.loss.state_dict()
    assert sd_ref.keys() == sd_got.keys()
    for k in sd_ref:
        torch.testing.assert_close(sd_got[k], sd_ref[k], atol=1e-5, rtol=1e-4, msg=k)
    # the step really trained something (targets and online nets moved from init)
    torch.manual_seed(0)
    init = make_algorithm(_cfg(name), 5, 3).loss.state_dict()
    moved = sum(not torch.equal(init[k], sd_got[k]) for k in init)
    assert moved > len(init) // 2
    for step in (3, 4):  # an odd (critic-only) and an even (full) step
        for k in got_out[step].keys():
            torch.testing.assert_close(got_out[step][k], ref_out[step][k], atol=1e-5, rtol=1e-4, msg=k)
    assert set(got_out[4].keys()) <= set(ref_out[4].keys())
    assert ("loss_potential" in got_out[4].keys()) == (name == "ppl")


def test_fused_update_via_config_switch_and_aten_plan_is_bitwise():
    ref, _ = _train(_cfg("ppl"))
    got, _ = _train(_cfg("ppl", fused_update=True), plan=None)
    assert isinstance(got.update, fast.FusedReBRACUpdate)
    fast.set_gemm_plan("aten")
    exact, _ = _train(_cfg("ppl"), plan=fast.GemmPlan(), fused=True)
    for k, v in ref.loss.state_dict().items():
        assert torch.equal(exact.loss.state_dict()[k], v), k
        torch.testing.assert_close(got.loss.state_dict()[k], v, atol=1e-5, rtol=1e-4)


def test_fused_update_rejects_what_it_does_not_implement():
    alg = make_algorithm(_cfg("ppl", critic_next_action="dataset"), 5, 3)
    with pytest.raises(ValueError, match="critic_next_action"):
        fast.apply_to(alg, tau=0.005, policy_freq=2)
    alg = make_algorithm(_cfg("rebrac"), 5, 3)
    with pytest.raises(ValueError, match="PartialOTLoss"):
        fast.FusedReBRACUpdate(alg.loss, alg.optimizers, tau=0.005, use_potential=True)
    with pytest.raises(ValueError, match="tau"):
        fast.FusedReBRACUpdate(alg.loss, alg.optimizers, tau=0.0)
    alg.loss.actor_network.module.net = nn.Sequential(nn.Linear(5, 3), nn.Tanh())
    with pytest.raises(TypeError, match="fused update does not know layer"):
        fast.FusedReBRACUpdate(alg.loss, alg.optimizers, tau=0.005)


# ------------------------------------------------------------------------------ benchmark FLOPs formula
def test_update_flops_hand_computed():
    spec = importlib.util.spec_from_file_location("speed", Path(__file__).parents[1] / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    # obs=act=1, hidden 2, one hidden layer, one critic, batch 1: actor [1,2,1] A=4, A1=2;
    # critic/potential [2,2,1] C=P=6, C1=P1=4. critic 4+(18-4)=18, actor 12-2+12+12=34, potential 4+36-8=32.
    assert speed.update_flops(1, 1, 1, hidden=2, depth=1, num_q=1) == 2 * (18 + (34 + 32) / 2)
    # without the potential: actor 12-2+12=22
    assert speed.update_flops(1, 1, 1, hidden=2, depth=1, num_q=1, potential=False) == 2 * (18 + 22 / 2)
    assert speed.update_flops(1, 1, 4, hidden=2, depth=1, num_q=1) == 4 * speed.update_flops(1, 1, 1, hidden=2, depth=1, num_q=1)


def test_speed_benchmark_runs_and_reports_same_run_ratios(tmp_path):
    spec = importlib.util.spec_from_file_location("speed", Path(__file__).parents[1] / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    out = tmp_path / "speed.json"
    report = speed.main(["--shape", "antmaze", "--steps", "4", "--repeats", "1", "--no-jax", "--no-compile",
                         "--seeds", "--dataset-size", "2000", "--no-progress", "--json", str(out)])
    res = report["shapes"]["antmaze"]["results"]
    assert {"ppl", "ppl_fast", "rebrac", "rebrac_fast", "plain", "sample"} <= set(res)
    assert all(r["steps_per_s"] > 0 for r in res.values())
    assert report["shapes"]["antmaze"]["limit_gflops"] > 0
    assert "/plain" in report["table"] and "ppl_fast" in report["table"]
    import json

    assert json.loads(out.read_text())["table"] == report["table"]
