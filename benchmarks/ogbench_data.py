"""Statistics of OGBench files (published or regenerated here) that can be compared without the other file.

    python benchmarks/ogbench_data.py ~/.ogbench/data/cube-single-play-gen-v0.npz cube-single

Prints one JSON line: rows, transitions, episodes, mean episode length, observation size, action statistics and,
for each of the 5 tasks, the share of transitions whose state solves it and the share of episodes that reach it
(ogbench's own relabelling). docs/ogbench.md records the numbers.
"""
import json
import sys

from ppl_torchrl.datagen.ogbench import dataset_statistics

if __name__ == "__main__":
    print(json.dumps(dataset_statistics(sys.argv[1], sys.argv[2])))
