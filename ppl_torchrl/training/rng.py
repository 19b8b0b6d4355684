"""The random state a checkpoint holds: Python's, numpy's, torch's (CPU, and CUDA where there is one) and the replay
buffer's own generator. Reading it draws nothing; setting it makes a resumed run draw what the uninterrupted run
would have drawn."""
from __future__ import annotations

import random

import numpy as np
import torch


def rng_state(buffer) -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "buffer": buffer._rng.get_state() if getattr(buffer, "_rng", None) is not None else None,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, buffer) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("buffer") is not None:
        buffer._rng.set_state(state["buffer"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
