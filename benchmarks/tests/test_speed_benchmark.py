"""The speed benchmark (benchmarks/speed.py): its FLOP count, and a smoke run of its eager columns."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ppl_torchrl import gemm


def _speed():
    spec = importlib.util.spec_from_file_location("speed", Path(__file__).parents[1] / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    return speed


def test_update_flops_hand_computed():
    speed = _speed()
    # obs=act=1, hidden 2, one hidden layer, one critic, batch 1: actor [1,2,1] A=4, A1=2;
    # critic/potential [2,2,1] C=P=6, C1=P1=4. critic 4+(18-4)=18, actor 12-2+12+12=34, potential 4+36-8=32.
    assert speed.update_flops(1, 1, 1, hidden=2, depth=1, num_q=1) == 2 * (18 + (34 + 32) / 2)
    # without the potential: actor 12-2+12=22
    assert speed.update_flops(1, 1, 1, hidden=2, depth=1, num_q=1, potential=False) == 2 * (18 + 22 / 2)
    assert speed.update_flops(1, 1, 4, hidden=2, depth=1, num_q=1) == 4 * speed.update_flops(1, 1, 1, hidden=2, depth=1, num_q=1)


def test_benchmark_config_builds_the_requested_update():
    speed = _speed()
    cfg = speed.config("ppl", compiled=True, per_call=2, gemm_backend="aten")
    assert cfg.compile.enabled is True and cfg.compile.updates_per_call == 2 and cfg.compile.gemm == "aten"
    assert cfg.optim.steps > 0 and cfg.loss.name == "ppl"
    assert speed.config("rebrac").compile.enabled is False


@pytest.fixture
def fresh_gemm_plan():
    """The benchmark fixes the process's GEMM plan (--gemm auto measures it); forget it afterwards."""
    yield
    gemm.set_gemm_plan(None, "cpu")


def test_speed_benchmark_runs_and_reports_same_run_ratios(tmp_path, fresh_gemm_plan):
    speed = _speed()
    out = tmp_path / "speed.json"
    report = speed.main(["--shape", "antmaze", "--steps", "4", "--repeats", "1", "--no-jax", "--no-compile",
                         "--dataset-size", "2000", "--no-progress", "--json", str(out), "--device", "cpu"])
    sr = report["shapes"]["antmaze"]
    res = sr["results"]
    assert {"ppl", "rebrac", "plain", "sample"} <= set(res)
    assert not any("compiled" in name for name in res)  # --no-compile
    assert "jax" not in res  # --no-jax
    assert all(r["steps_per_s"] > 0 for r in res.values())
    assert sr["limit_gflops"] > 0 and "aten" in sr["gemm_gflops"]
    assert set(sr["share_of_limit"]) == set(res) - {"sample"} and all(v > 0 for v in sr["share_of_limit"].values())

    machine = report["machine"]
    assert machine["cpu_model"] == gemm.cpu_model() and machine["torch"]
    assert machine["gemm_plan"] == gemm.describe_plan("cpu")
    assert machine["gemm_plan_backends"]["forward"] in gemm.BACKENDS
    table = report["table"]
    assert gemm.cpu_model() in table.splitlines()[0]  # the title line names the CPU
    assert machine["gemm_plan"] in table
    assert "/plain" in table and "/limit" in table
    for name in ("ppl", "rebrac", "plain", "buffer.sample"):
        assert any(line.split()[1:2] == [name] for line in table.splitlines()), name

    saved = json.loads(out.read_text())
    assert saved["table"] == report["table"]
    assert saved["machine"]["cpu_model"] == machine["cpu_model"]


def test_speed_benchmark_rejects_bad_arguments():
    speed = _speed()
    with pytest.raises(SystemExit):
        speed.main(["--steps", "5", "--per-call", "2"])
    with pytest.raises(SystemExit):
        speed.main(["--gemm", "mkl"])


def _parity(speed, column: str, steps: int = 4, obs: int = 5, act: int = 3, batch: int = 32, tamper=None):
    """Runs the library's PPL^R update and the benchmark's ``column`` from the same parameters on the same batches
    and smoothing noise; returns the largest relative loss difference and, per network, the largest parameter
    difference after ``steps`` updates (delayed and critic-only ones) in units of float32 rounding (1e-6 relative)
    plus 5 % of the network's largest change: > 1 means the benchmark moved a parameter differently. ``tamper()``
    runs after the library's algorithm is built, before the benchmark's."""
    import torch
    from tensordict import TensorDict

    from ppl_torchrl.training.algorithms import make_algorithm

    torch.manual_seed(0)
    alg = make_algorithm(speed.config("ppl", gemm_backend="aten"), obs, act, device="cpu")
    start = speed.library_params(alg)
    if tamper is not None:
        tamper()
    if column == "plain":
        bench = speed.PlainPPL(obs, act, "cpu", start)
    else:
        import jax
        import jax.numpy as jnp

        state, critic_step, delayed_step = speed.jax_ppl(obs, act, start)
        critic_step, delayed_step = jax.jit(critic_step), jax.jit(delayed_step)
    loss_diff = 0.0
    for i in range(steps):
        b = {"obs": torch.randn(batch, obs), "act": torch.rand(batch, act) * 2 - 1, "rew": torch.randn(batch),
             "next_obs": torch.randn(batch, obs), "next_act": torch.rand(batch, act) * 2 - 1,
             "term": (torch.rand(batch) < 0.2).float()}
        td = TensorDict({"observation": b["obs"], "action": b["act"],
                         ("next", "observation"): b["next_obs"], ("next", "action"): b["next_act"],
                         ("next", "reward"): b["rew"][:, None], ("next", "done"): b["term"][:, None].bool(),
                         ("next", "terminated"): b["term"][:, None].bool()}, [batch])
        torch.manual_seed(100 + i)
        noise = alg.loss.target_noise(b["next_act"])  # the draw the library's update makes next
        torch.manual_seed(100 + i)
        ours = alg.update(td, i)
        if column == "plain":
            theirs = bench.step(b, i, noise)
        else:
            jb = {k: jnp.asarray(v.numpy()) for k, v in b.items()}
            state, loss_q = critic_step(state, jb, jnp.asarray(noise.numpy()))
            theirs = {"loss_qvalue": loss_q}
            if i % speed.HP["policy_freq"] == 0:
                state, loss_a, loss_f = delayed_step(state, jb)
                theirs.update(loss_actor=loss_a, loss_potential=loss_f)
        assert set(theirs) == {k for k in ours.keys() if k.startswith("loss_")}, i
        for k, v in theirs.items():
            loss_diff = max(loss_diff, abs(float(v) - float(ours[k])) / max(abs(float(ours[k])), 1e-6))
    got = bench.params() if column == "plain" else speed.from_jax_state(state)
    want = speed.library_params(alg)
    param_diff = {}  # worst |benchmark - library| over (float32 rounding + 5 % of how far the network moved)
    for name in speed.NETWORKS:
        assert [t.shape for t in got[name]] == [t.shape for t in want[name]], name
        moved = max(float((w - s).abs().max()) for w, s in zip(want[name], start[name]))
        assert moved > 0, f"{name} did not train: the comparison would be empty"
        param_diff[name] = max(float(((g - w).abs() / (1e-6 * w.abs() + 5e-2 * moved)).max())
                               for g, w in zip(got[name], want[name]))
    return loss_diff, param_diff


@pytest.mark.parametrize("column", ["plain", "jax"])
def test_the_plain_and_jax_columns_compute_the_library_s_update(column):
    """The benchmark's plain-PyTorch and JAX columns time PPL^R exactly as ``ReBRACUpdate`` computes it: from the
    library's parameters, the same losses and updated networks (targets included) after delayed and critic-only
    steps, up to float32 rounding (JAX's GEMMs sum in another order, and Adam's first steps amplify that on
    near-zero gradients: 1-2 % of a step seen here)."""
    if column == "jax":
        pytest.importorskip("jax")
    loss_diff, param_diff = _parity(_speed(), column)
    assert loss_diff < 1e-4, loss_diff
    assert all(d <= 1.0 for d in param_diff.values()), param_diff


def test_the_parity_check_sees_a_different_algorithm():
    """The same check on a benchmark whose w differs from the library's fails on the potential: it can fail."""
    speed = _speed()
    loss_diff, param_diff = _parity(speed, "plain", tamper=lambda: speed.HP.update(w=3.0))
    assert loss_diff > 1e-2 and param_diff["potential"] > 1.0, (loss_diff, param_diff)
