"""Shared test settings (tests/session_env.py) and the fixtures several test modules use.

Test modules never import each other: what two of them share is a fixture here (or, for the D4RL file writers, the
helper module tests/d4rl_files.py that the ``d4rl_layout`` fixture hands out).
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch

from session_env import pytest_sessionfinish  # noqa: F401  (sets the session's environment on import)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "recipes" / "config"
TINY_DATASET = "pointmaze-umaze-gen-v0"


def _tiny(run_dir, steps: int = 20, **extra) -> list[str]:
    """Command-line overrides of a recipe run that takes seconds: generated PointMaze data, one hidden layer of 16,
    no evaluation episode (``**{"eval.episodes": 1}`` where a test needs a score), files-only logs, a checkpoint
    every 10 steps (none by time), one thread."""
    overrides = {
        "dataset": TINY_DATASET, "optim.steps": steps, "optim.batch_size": 32, "model.hidden_dim": 16,
        "model.num_hidden": 1, "eval.episodes": 0, "eval.num_envs": 1, "eval.every": steps, "logger.backend": "",
        "logger.progress": "false", "logger.log_every": 10, "checkpoint.every": 10,
        "checkpoint.every_minutes": "null", "threads": 1, "run_dir": str(run_dir),
    }
    overrides.update(extra)
    return [f"{k}={v}" for k, v in overrides.items()]


def _make_cfg(overrides, config_name: str = "ppl_antmaze"):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def _assert_same_state(a: Path, b: Path) -> tuple[dict, dict]:
    """The two runs' checkpoints hold the same step, networks and optimizer states; returns both checkpoints."""
    sa = torch.load(a / "checkpoint.pt", weights_only=False)
    sb = torch.load(b / "checkpoint.pt", weights_only=False)
    assert sa["step"] == sb["step"]
    for k, v in sa["algorithm"]["loss"].items():
        assert torch.equal(v, sb["algorithm"]["loss"][k]), k
    for name, opt in sa["algorithm"]["optimizers"].items():
        for pid, st in opt["state"].items():
            for key, v in st.items():
                assert torch.equal(v, sb["algorithm"]["optimizers"][name]["state"][pid][key]), (name, key)
    return sa, sb


def _kill_at_step(proc, checkpoint: Path, step: int, timeout: float = 300) -> None:
    """SIGKILL the recipe process ``proc`` once its ``checkpoint`` holds at least ``step`` (or it ends, or time runs
    out): a real kill mid-run, at a point where a checkpoint exists."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if checkpoint.exists():
            try:
                at = torch.load(checkpoint, weights_only=False)["step"]
            except Exception:  # being replaced right now; atomic writes mean the next read works
                at = 0
            if at >= step:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same final state (networks, optimizers), logs (but the machine-speed column) and
    final evaluation."""
    _assert_same_state(a, b)

    def rows(path):
        out = []
        for line in (path / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            r.pop("train/steps_per_second", None)
            out.append(r)
        return out

    assert rows(a) == rows(b)
    ra, rb = (json.loads((p / "results.json").read_text())["final_eval"] for p in (a, b))
    assert ra == rb or ra["returns"] == rb["returns"]  # None for a phase without evaluation


@pytest.fixture
def tiny():
    """``tiny(run_dir, steps=20, **overrides) -> list[str]``: the overrides of a seconds-long recipe run."""
    return _tiny


@pytest.fixture
def make_cfg():
    """``make_cfg(overrides, config_name="ppl_antmaze")``: the recipe config hydra composes from them."""
    return _make_cfg


@pytest.fixture
def assert_same_run():
    """``assert_same_run(run_dir_a, run_dir_b)``: the two runs ended identically (bit for bit)."""
    return _assert_same_run


@pytest.fixture
def assert_same_state():
    """``assert_same_state(run_dir_a, run_dir_b) -> (checkpoint_a, checkpoint_b)``: same step, networks, optimizers."""
    return _assert_same_state


@pytest.fixture
def kill_at_step():
    """``kill_at_step(proc, checkpoint_path, step)``: SIGKILL a recipe subprocess once its checkpoint reaches ``step``."""
    return _kill_at_step


@pytest.fixture
def d4rl_layout():
    """``d4rl_layout(name, folder) -> (layout, path)``: a file laid out as a real D4RL file (tests/d4rl_files.py)."""
    from d4rl_files import write_layout

    return write_layout


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Runs in this process set torch's thread count (threads=1 in the tiny configs): restore it for the next test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
