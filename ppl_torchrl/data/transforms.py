"""Reward and state transforms of the authors' recipes, as TorchRL transforms on the buffer.

Applied at sampling time (``ReplayBuffer(transform=...)``), so the memmapped data on disk stay
the raw dataset and one import serves every algorithm.

* ReBRAC / PPL^R on AntMaze (CORL ``rebrac.py`` ``normalize_reward``): ``r -> 100 r``.
* CQL / PPL^CQL on AntMaze (CORL ``cql.py``, ``reward_scale=10, reward_bias=-5``): ``r -> 10 r - 5``.
* MuJoCo and Adroit: raw rewards.
* State normalisation (CORL ``compute_mean_std(eps=1e-3)``): ``s -> (s - mean) / (std + 1e-3)``
  on both ``observation`` and ``("next", "observation")``; evaluation applies the same numbers to
  env observations (:func:`state_norm_transform` with ``in_keys=[OBSERVATION]``).
"""
from __future__ import annotations

from typing import Sequence

from torchrl.envs.transforms import ObservationNorm, RewardScaling

from ppl_torchrl.data.transitions import DatasetStats
from ppl_torchrl.keys import NEXT_OBSERVATION, OBSERVATION, REWARD

__all__ = ["reward_scale_bias", "reward_transform", "state_norm_transform"]

_ANTMAZE_REWARD = {"rebrac": (100.0, 0.0), "ppl_r": (100.0, 0.0), "cql": (10.0, -5.0), "ppl_cql": (10.0, -5.0)}


def reward_scale_bias(dataset_id: str, algorithm: str) -> tuple[float, float]:
    """``(scale, bias)`` of the authors' reward transform ``r -> scale * r + bias``.

    ``algorithm`` is one of ``"rebrac"``, ``"ppl_r"``, ``"cql"``, ``"ppl_cql"``. AntMaze ids get
    the values above; every other dataset gets ``(1, 0)``. Exact suite check (``antmaze-`` prefix),
    no substring search over the whole id.
    """
    algorithm = algorithm.lower()
    if algorithm not in _ANTMAZE_REWARD:
        raise ValueError(f"Unknown algorithm {algorithm!r}; expected one of {sorted(_ANTMAZE_REWARD)}.")
    if dataset_id.startswith("antmaze-") and "-singletask" not in dataset_id:  # not OGBench's antmaze
        return _ANTMAZE_REWARD[algorithm]
    return 1.0, 0.0


def reward_transform(scale: float = 1.0, bias: float = 0.0) -> RewardScaling | None:
    """``r -> scale * r + bias`` on ``("next", "reward")``, or ``None`` for the identity."""
    if scale == 1.0 and bias == 0.0:
        return None
    return RewardScaling(loc=float(bias), scale=float(scale), in_keys=[REWARD])


def state_norm_transform(stats: DatasetStats, in_keys: Sequence = (OBSERVATION, NEXT_OBSERVATION)) -> ObservationNorm:
    """``s -> (s - state_mean) / state_std`` (``state_std`` already includes CORL's ``+1e-3``)."""
    return ObservationNorm(
        loc=stats.state_mean_tensor(), scale=stats.state_std_tensor(), in_keys=list(in_keys), standard_normal=True
    )
