"""How a policy gets a score, and the published scores ours are compared with.

* :mod:`~ppl_torchrl.evaluation.rollouts`: :func:`evaluate_policy`, deterministic episodes in an eval env
  (:mod:`ppl_torchrl.envs`), scored as the dataset id's table says (:mod:`ppl_torchrl.registry`);
* :mod:`~ppl_torchrl.evaluation.published`: the published scores our tables are compared with.

    >>> from ppl_torchrl.evaluation import evaluate_policy
"""
from __future__ import annotations

__all__ = ["evaluate_policy"]


def __getattr__(name: str):
    # evaluate_policy imports torch, torchrl and the eval envs: loaded on first use, so that the published numbers
    # stay light
    if name == "evaluate_policy":
        from ppl_torchrl.evaluation.rollouts import evaluate_policy

        return evaluate_policy
    raise AttributeError(f"module 'ppl_torchrl.evaluation' has no attribute {name!r}")
