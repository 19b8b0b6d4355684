"""The speed benchmark (benchmarks/speed.py): its FLOP count, and a smoke run of its eager columns."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ppl_torchrl import gemm


def _speed():
    spec = importlib.util.spec_from_file_location("speed", Path(__file__).parents[1] / "benchmarks" / "speed.py")
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
