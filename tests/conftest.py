"""Shared test settings (tests/session_env.py) and fixtures."""
from __future__ import annotations

from session_env import pytest_sessionfinish  # noqa: F401  (sets the session's environment on import)
