"""docs/algorithm.md's equation (2): the penalised f-step's value is K times the partial transport cost, and for a
deterministic policy that is the distance to its nearest 1/w share of the data."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.partial_w1_dual import partial_transport_cost, ppl_f_step_value, random_case


@pytest.mark.parametrize("w", [1.0, 1.5, 3.0, 8.0])
@pytest.mark.parametrize("point_policy", [True, False])
def test_the_penalised_f_step_solves_partial_transport(w, point_policy):
    grid = np.linspace(-1, 1, 21)
    rng = np.random.default_rng(int(w * 10) + point_policy)
    pi, beta = random_case(rng, len(grid), point_policy)
    for k in (0.5, 2.0):
        assert ppl_f_step_value(pi, beta, w, grid, k) == pytest.approx(partial_transport_cost(pi, beta, w, grid, k),
                                                                       abs=1e-7)


def test_for_a_point_policy_it_is_k_times_the_distance_to_the_nearest_1_over_w_of_the_data():
    """By hand: data 0.3 at a = 0.5 and 0.7 at a = -0.5, the policy at 0.5. w = 3: the nearest third is the 0.3 at
    distance 0 plus 1/30 from -0.5 (distance 1), moved w-fold: 3 * (1/30) * 1 = 0.1. w = 1: all of the data, 0.7."""
    grid = np.array([-0.5, 0.5])
    beta, pi = np.array([0.7, 0.3]), np.array([0.0, 1.0])
    assert partial_transport_cost(pi, beta, 3.0, grid) == pytest.approx(0.1, abs=1e-9)
    assert ppl_f_step_value(pi, beta, 3.0, grid) == pytest.approx(0.1, abs=1e-9)
    assert ppl_f_step_value(pi, beta, 1.0, grid, k=2.0) == pytest.approx(1.4, abs=1e-9)
    assert ppl_f_step_value(pi, beta, 4.0, grid) == pytest.approx(0.0, abs=1e-9)  # 4 x 0.3 >= 1: room, f = 0
