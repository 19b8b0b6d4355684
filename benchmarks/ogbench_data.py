"""Statistics of OGBench files (published or regenerated here) that can be compared without the other file.

    python benchmarks/ogbench_data.py ~/.ogbench/data/cube-single-play-gen-v0.npz cube-single

Prints one JSON line: rows, transitions, episodes, mean episode length, observation size, action statistics and,
for each of the 5 tasks, the share of transitions whose state solves it and the share of episodes that reach it
(ogbench's own relabelling). docs/ogbench.md records the numbers.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ppl_torchrl.data.ogbench import read_ogbench_file, relabel
from ppl_torchrl.registry.ogbench_ids import DATASET_TYPES, TASKS, OGBenchId


def dataset_statistics(path: str | Path, family: str) -> dict:
    """What can be compared with a published file without having it: sizes, per-episode statistics and, per task,
    how many transitions are solved states and how many episodes pass through one (ogbench's relabelling)."""
    table = read_ogbench_file(path, family)
    valid = table["valid"]
    ends = np.flatnonzero(~valid)
    starts = np.concatenate([[0], ends[:-1] + 1])
    act = table["actions"][valid]
    out = {"file": str(path), "file_mb": Path(path).stat().st_size / 2**20, "rows": int(len(valid)),
           "transitions": int(valid.sum()), "episodes": int(len(ends)),
           "episode_length": float(np.mean(ends - starts + 1)), "obs_dim": int(table["observations"].shape[1]),
           "action_abs_mean": float(np.abs(act).mean()), "action_std": act.std(0).round(3).tolist(), "tasks": {}}
    episode_of_row = np.repeat(np.arange(len(ends)), ends - starts + 1)
    for task in TASKS:
        _, masks = relabel(OGBenchId("", family, DATASET_TYPES[family][0], False, task), table)
        solved = masks < 0.5
        out["tasks"][task] = {"solved_transitions": float(solved[valid].mean()),
                              "episodes_reaching": float(np.isin(np.arange(len(ends)), episode_of_row[solved]).mean())}
    return out


if __name__ == "__main__":
    print(json.dumps(dataset_statistics(sys.argv[1], sys.argv[2])))
