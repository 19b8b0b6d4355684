"""What a score means and how a policy gets one.

* :mod:`~ppl_torchrl.evaluation.registry`: every dataset id the project knows (suite, eval task, episode
  length) with its reference returns, and the D4RL normalized score computed from them;
* :mod:`~ppl_torchrl.evaluation.published`: the published scores our tables are compared with;
* :mod:`~ppl_torchrl.evaluation.rollouts`: :func:`evaluate_policy`, deterministic episodes in an eval env
  (:mod:`ppl_torchrl.envs`).

    >>> from ppl_torchrl.evaluation import evaluate_policy, get_dataset_spec, normalized_score
"""
from __future__ import annotations

from ppl_torchrl.evaluation.registry import DATASETS, DatasetSpec, get_dataset_spec, normalized_score, register_dataset

__all__ = ["DATASETS", "DatasetSpec", "evaluate_policy", "get_dataset_spec", "normalized_score", "register_dataset"]


def __getattr__(name: str):
    # evaluate_policy imports torch and torchrl: loaded on first use, so that the dataset registry stays light
    if name == "evaluate_policy":
        from ppl_torchrl.evaluation.rollouts import evaluate_policy

        return evaluate_policy
    raise AttributeError(f"module 'ppl_torchrl.evaluation' has no attribute {name!r}")
