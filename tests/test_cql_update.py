"""The CQL step's dual update (``with_lagrange``): CORL's, not TorchRL's summed ``loss_alpha_prime``.

Summed into one backward, TorchRL's ``loss_alpha_prime = -alpha' * (gap - thresh)`` also pushes the critic, by
-alpha'/2 times the CQL term's own gradient: once alpha' passes 2 the critic raises the gap it should lower, alpha'
grows further, and Q diverges (seen on the generated maze within 3000 steps). These tests pin the fixed routing.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from tensordict import TensorDict

from ppl_torchrl import keys
from ppl_torchrl.training.algorithms import make_algorithm
from ppl_torchrl.training.config import LossConfig, NetworkConfig, OptimConfig

OBS, ACT, BATCH = 4, 2, 32
NETWORK = NetworkConfig(hidden_dim=16, num_hidden=2, num_qvalue_nets=2, activation="relu", init="corl")


def _algorithm(name="cql", **loss):
    torch.manual_seed(0)
    settings = dict(num_random=3, q_num_hidden=2, min_q_weight=5.0, with_lagrange=True, lagrange_thresh=0.8)
    settings.update(loss)
    return make_algorithm(LossConfig(name, **settings), NETWORK,
                          OptimConfig(actor_lr=1e-3, critic_lr=1e-3, potential_lr_scale=1.0, tau=0.05, policy_freq=1,
                                      gamma=0.99), OBS, ACT)


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDict({
        keys.OBSERVATION: torch.randn(BATCH, OBS, generator=g), keys.ACTION: torch.rand(BATCH, ACT, generator=g) * 2 - 1,
        keys.NEXT_OBSERVATION: torch.randn(BATCH, OBS, generator=g),
        keys.REWARD: torch.rand(BATCH, 1, generator=g), keys.DONE: torch.zeros(BATCH, 1, dtype=torch.bool),
        keys.TERMINATED: torch.zeros(BATCH, 1, dtype=torch.bool),
        keys.TRUNCATED: torch.zeros(BATCH, 1, dtype=torch.bool),
    }, [BATCH])


def test_the_gap_is_corls_and_the_multiplier_starts_at_corls_value():
    alg = _algorithm(min_q_weight=5.0, lagrange_thresh=0.8)
    assert alg.loss.target_action_gap == pytest.approx(5.0 * 0.8)  # TorchRL's gap is min_q_weight x CORL's
    assert alg.loss.log_alpha_prime.item() == pytest.approx(1.0)  # CORL's Scalar(1.0): alpha' = e
    assert "alpha_prime" not in _algorithm(with_lagrange=False).optimizers


@pytest.mark.parametrize("name", ["cql", "ppl_cql"])
def test_each_network_steps_on_its_own_terms_and_the_critic_sees_alpha_prime_times_the_cql_term(name):
    alg, batch = _algorithm(name), _batch()
    reference = copy.deepcopy(alg.loss)
    torch.manual_seed(3)
    alg.update(batch.clone(), 0)
    torch.manual_seed(3)  # the same sampled actions as the update's forward
    out = reference(batch.clone())
    alpha_prime = math.exp(1.0)
    critic = list(reference.qvalue_network_params.values(True, True))
    expected = torch.autograd.grad(out["loss_qvalue"] + alpha_prime * out["loss_cql"], critic, retain_graph=True)
    got = [p.grad for p in alg.loss.qvalue_network_params.values(True, True)]
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)
    # d/d(log alpha') of -alpha' (gap - thresh) is the loss itself: alpha' sees only its own term
    torch.testing.assert_close(alg.loss.log_alpha_prime.grad, out["loss_alpha_prime"].detach())
    leak = torch.autograd.grad(out["loss_alpha_prime"], critic, retain_graph=True)
    assert max(x.abs().max().item() for x in leak) > 0, "the summed term would have reached the critic"


def test_a_large_multiplier_makes_the_critic_lower_the_gap_not_raise_it():
    """At alpha' = 10 the summed update's critic would climb the CQL gap (factor 1 - 10/2 < 0); the dual step
    descends it."""
    alg = _algorithm(num_random=4)
    with torch.no_grad():
        alg.loss.log_alpha_prime.fill_(math.log(10.0))
    alg.optimizers["alpha_prime"].param_groups[0]["lr"] = 0.0  # hold alpha' at 10
    batch = _batch()
    torch.manual_seed(5)
    first = alg.update(batch.clone(), 0)["loss_cql"].item()
    for step in range(1, 60):
        last = alg.update(batch.clone(), step)["loss_cql"].item()
    assert last < first - 1.0, (first, last)
