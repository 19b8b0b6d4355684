"""The small seeded actor, critic ensemble and potential that the probe's tests (tests/test_probe.py) and the
potential-units benchmark's tests (benchmarks/tests/test_potential_units.py) both train and read."""
from __future__ import annotations

import torch

from ppl_torchrl.modules import make_actor, make_potential, make_qvalue_ensemble


def tiny_networks(obs_dim: int, action_dim: int, seed: int = 0):
    """(actor, critic ensemble, potential), one hidden layer of 8 each, initialised from ``seed``."""
    torch.manual_seed(seed)
    size = dict(hidden_dim=8, num_hidden=1)
    return (make_actor(obs_dim, action_dim, **size), make_qvalue_ensemble(obs_dim, action_dim, **size),
            make_potential(obs_dim, action_dim, **size))
