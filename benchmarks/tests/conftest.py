"""Tests of the benchmark scripts: the same session settings as tests/ (tests/session_env.py), and the repository root on
the path, so that they import the scripts as the scripts import each other (``benchmarks.<module>``)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "tests", ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from session_env import pytest_sessionfinish  # noqa: E402,F401  (sets the session's environment on import)
