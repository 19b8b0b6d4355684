"""What the project knows about a dataset id, below every layer that uses it.

* :mod:`~ppl_torchrl.registry.datasets`: every dataset id (suite, evaluation task, episode length, reference
  returns) in one table, and the D4RL normalized score computed from it;
* :mod:`~ppl_torchrl.registry.ogbench_ids`: the grammar of OGBench's single-task ids (about 1000 of them, parsed
  rather than listed);
* :mod:`~ppl_torchrl.registry.d4rl_time_limits`: the time limit of every D4RL id, which reading a D4RL file
  without ``timeouts`` needs.

It imports nothing of the project but :mod:`ppl_torchrl.errors`: data loading (:mod:`ppl_torchrl.data`),
evaluation environments (:mod:`ppl_torchrl.envs`), evaluation (:mod:`ppl_torchrl.evaluation`), data generation and
training all look ids up here, and nothing here looks back up at them (``tests/test_layout.py``).

    >>> from ppl_torchrl.registry import get_dataset_spec, normalized_score, parse_ogbench_id
"""
from __future__ import annotations

from ppl_torchrl.registry.d4rl_time_limits import d4rl_time_limit
from ppl_torchrl.registry.datasets import DATASETS, DatasetSpec, get_dataset_spec, normalized_score, register_dataset
from ppl_torchrl.registry.ogbench_ids import OGBenchId, is_ogbench_id, parse_ogbench_id

__all__ = ["DATASETS", "DatasetSpec", "OGBenchId", "d4rl_time_limit", "get_dataset_spec", "is_ogbench_id", "normalized_score",
           "parse_ogbench_id", "register_dataset"]
