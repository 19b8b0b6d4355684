"""D4RL normalized scores.

``normalized_score(dataset_id, returns) = 100 * (R - ref_min) / (ref_max - ref_min)``:
the x100 convention of D4RL papers (0 = random policy, 100 = expert). D4RL's own
``get_normalized_score`` returns the fraction; the authors' code multiplies it by 100.
The reference returns live in :mod:`ppl_torchrl.registry` and nowhere else.
"""
from __future__ import annotations

import numpy as np

from ppl_torchrl.registry import get_dataset_spec


def normalized_score(dataset_id: str, returns):
    """Normalized score(s) on the x100 scale for one return or an array of returns."""
    spec = get_dataset_spec(dataset_id)
    returns = np.asarray(returns, dtype=np.float64)
    if not np.all(np.isfinite(returns)):
        raise ValueError(f"normalized_score got non-finite returns for {dataset_id!r}: {returns}")
    score = 100.0 * (returns - spec.ref_min) / (spec.ref_max - spec.ref_min)
    return float(score) if score.ndim == 0 else score
