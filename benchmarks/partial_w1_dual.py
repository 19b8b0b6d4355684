"""A numerical check of docs/algorithm.md's equation (2): under a K-Lipschitz bound, PPL's f-step at one state,

    max_{f <= 0, Lip f <= K}  -sum_a f(a) pi(a) + w sum_a f(a) beta(a),

equals K times the cheapest way to move the policy's distribution ``pi`` onto a sub-measure of ``w beta`` (partial
transport with cost ``K |a - a'|``). Both are linear programs on a grid of actions in [-1, 1], solved with scipy's
``linprog`` (HiGHS); scipy is in the test and bench extras.

    python benchmarks/partial_w1_dual.py     # random data and policies, w in {1, 1.5, 3, 8}: both values per case
"""
from __future__ import annotations

import numpy as np


def partial_transport_cost(pi: np.ndarray, beta: np.ndarray, w: float, grid: np.ndarray, k: float = 1.0) -> float:
    """``min sum_ij K |a_i - a_j| gamma_ij`` over ``gamma >= 0`` with row sums ``pi`` and column sums at most
    ``w beta``."""
    from scipy.optimize import linprog

    n = len(grid)
    rows, cols = np.zeros((n, n * n)), np.zeros((n, n * n))
    for i in range(n):
        rows[i, i * n:(i + 1) * n] = 1.0
        cols[i, i::n] = 1.0
    cost = k * np.abs(grid[:, None] - grid[None, :])
    res = linprog(cost.ravel(), A_ub=cols, b_ub=w * beta, A_eq=rows, b_eq=pi, bounds=(0, None), method="highs")
    if not res.success:
        raise RuntimeError(res.message)
    return float(res.fun)


def ppl_f_step_value(pi: np.ndarray, beta: np.ndarray, w: float, grid: np.ndarray, k: float = 1.0) -> float:
    """``max -sum f pi + w sum f beta`` over ``f <= 0`` with ``|f(a_i) - f(a_{i+1})| <= K |a_i - a_{i+1}|`` (on a
    sorted 1-D grid the neighbouring pairs give the whole Lipschitz bound)."""
    from scipy.optimize import linprog

    n = len(grid)
    step = np.zeros((n - 1, n))
    step[np.arange(n - 1), np.arange(n - 1)], step[np.arange(n - 1), np.arange(1, n)] = 1.0, -1.0
    gaps = k * np.diff(grid)
    res = linprog(-(w * beta - pi), A_ub=np.vstack([step, -step]), b_ub=np.concatenate([gaps, gaps]),
                  bounds=(None, 0), method="highs")
    if not res.success:
        raise RuntimeError(res.message)
    return float(-res.fun)


def random_case(rng: np.random.Generator, n: int, point_policy: bool) -> tuple[np.ndarray, np.ndarray]:
    """A random data distribution and a policy: a single action (deterministic) or a peaked distribution."""
    beta = rng.random(n)
    pi = np.zeros(n)
    if point_policy:
        pi[rng.integers(n)] = 1.0
    else:
        pi = rng.random(n) ** 4
    return pi / pi.sum(), beta / beta.sum()


def main() -> int:
    grid = np.linspace(-1, 1, 41)
    rng = np.random.default_rng(0)
    print("| case | w | partial transport cost | PPL f-step value |\n|---|---:|---:|---:|")
    for case in range(8):
        pi, beta = random_case(rng, len(grid), point_policy=case % 2 == 0)
        w = (1.0, 1.5, 3.0, 8.0)[case % 4]
        print(f"| {'point' if case % 2 == 0 else 'spread'} policy {case} | {w:g} | "
              f"{partial_transport_cost(pi, beta, w, grid):.6f} | {ppl_f_step_value(pi, beta, w, grid):.6f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
