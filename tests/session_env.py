"""What every test session sets before any test runs (imported by tests/conftest.py and benchmarks/tests/conftest.py)."""
from __future__ import annotations

import os
import shutil
import tempfile

# TorchRL warns on every loss call until a target updater exists; tests build many bare losses.
os.environ.setdefault("RL_WARNINGS", "False")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MUJOCO_GL", "egl")
# Generated datasets and imported memmaps go to a fresh folder per test session (this module is imported once per
# process, however many conftest files import it), never ~/.cache.
SESSION_DATA = os.environ["PPL_TORCHRL_DATA"] = tempfile.mkdtemp(prefix="ppl_torchrl_test_data_")


def pytest_sessionfinish(session, exitstatus):
    # pytest exits with 5 when it collected no test; a test command that ran nothing must fail.
    if exitstatus == 5:
        session.exitstatus = 1
    shutil.rmtree(SESSION_DATA, ignore_errors=True)  # ~25 MB of generated data per session, left in /tmp otherwise
