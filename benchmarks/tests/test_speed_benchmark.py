"""The speed benchmark (benchmarks/speed.py): its FLOP count, and a smoke run of its eager columns."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


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


def test_benchmark_settings_build_the_requested_update():
    speed = _speed()
    built = speed.settings("ppl", compiled=True, cudagraphs=True)
    assert built["compile"].enabled is True and built["compile"].cudagraphs is True and built["loss"].name == "ppl"
    assert speed.settings("rebrac")["compile"].enabled is False


def test_speed_benchmark_runs_and_reports_same_run_ratios(tmp_path):
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
    assert machine["cpu_model"] == speed.cpu_model() and machine["torch"]
    table = report["table"]
    assert speed.cpu_model() in table.splitlines()[0]  # the title line names the CPU
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
        speed.main(["--gemm", "aten"])  # the GEMM routing is gone: its option with it


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
    alg = make_algorithm(obs_dim=obs, act_dim=act, device="cpu", **speed.settings("ppl"))
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


def test_every_timed_block_waits_for_the_device(monkeypatch):
    """A GPU column must time the work, not its launch: each warm-up and timed block, and each GEMM-limit
    measurement, ends with the device's synchronisation before the clock stops (here a counting stand-in)."""
    speed = _speed()
    calls = []
    order = []

    def runner(name):
        def run(k):
            order.append(name)
        return run
    runners = {"a": runner("a"), "b": runner("b")}
    speed.time_interleaved(runners, steps=3, repeats=2, warmup=3, progress=False,
                           sync=lambda: calls.append(order[-1]))
    assert calls == order  # one sync after every block, warm-up blocks included, and none elsewhere
    assert len(order) >= 2 * 3 + 2 * 2  # warm-up (at least 3 blocks each) and 2 timed rounds

    seen = []
    monkeypatch.setattr(speed, "device_synchronizer", lambda device: (lambda: seen.append(str(device))))
    assert speed.measure_gemm("aten", 8, 8, 8, device="cpu", min_time=1e-4, repeats=2) > 0
    assert seen and set(seen) == {"cpu"}
    # and on CUDA the synchronizer is torch.cuda.synchronize's
    waited = []
    monkeypatch.undo()
    import torch
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    speed.device_synchronizer("cuda:0")()
    assert waited == [torch.device("cuda:0")]


@pytest.mark.slow  # two traced updates at the AntMaze shape: minutes on a small CPU
def test_cuda_graph_columns_are_skipped_with_a_note_on_cpu(tmp_path, monkeypatch):
    """The CUDA-graph columns exist only on CUDA; on CPU the report says why they are missing. The compiled
    columns run here on aot_eager (the same trace, no kernel build) so the test stays quick; the
    device-resident column is among them."""
    speed = _speed()
    real_settings = speed.settings
    monkeypatch.setattr(speed, "settings", lambda *a, **k: _aot_eager(real_settings(*a, **k)))
    report = speed.main(["--shape", "antmaze", "--steps", "2", "--repeats", "1", "--no-jax", "--per-call", "1",
                         "--dataset-size", "1000", "--no-progress", "--device", "cpu"])
    sr = report["shapes"]["antmaze"]
    assert {"ppl_compiled", "ppl_compiled_resident"} <= set(sr["results"])
    assert not any(name.startswith("ppl_cudagraphs") for name in sr["results"])
    assert any("CUDA graphs" in note for note in sr["notes"])
    assert "CUDA graphs need a CUDA device" in report["table"]


def _aot_eager(settings):
    import dataclasses

    return {**settings, "compile": dataclasses.replace(settings["compile"], backend="aot_eager")}


def test_resident_batches_hold_the_buffers_transitions(tmp_path):
    """The device-resident column indexes the same transitions the replay buffer samples from, with its keys."""
    import torch

    speed = _speed()
    path = speed.make_dataset(tmp_path, 5, 3, 500)
    buffer = speed.make_buffer(path, 16, tmp_path / "cache", "cpu")
    sample = speed.resident_sampler(buffer, 16, "cpu")
    batch, ref = sample(), buffer.sample()
    assert batch.shape == ref.shape
    assert set(batch.keys(True, True)) == set(ref.keys(True, True)) - {"index"}  # the sampler's row index aside
    rows = buffer.storage[:]
    obs = rows["observation"]
    for i, row in enumerate(batch["observation"]):  # every row is a whole stored transition
        j = int((obs == row).all(-1).nonzero()[0, 0])
        assert torch.equal(batch["next", "observation"][i], rows["next", "observation"][j])
        assert torch.equal(batch["action"][i], rows["action"][j])
