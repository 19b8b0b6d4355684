"""Offline datasets (D4RL ids, local D4RL-format HDF5 files, Minari ids, OGBench single-task ids) as TorchRL replay buffers.

    >>> from ppl_torchrl.data import make_offline_replay_buffer
    >>> rb = make_offline_replay_buffer("antmaze-umaze-v2", batch_size=256, reward_scale=100.0, seed=0)
    >>> batch = rb.sample()   # keys of ppl_torchrl.keys, authors' (CORL) transition semantics

See ``docs/data.md`` for the semantics table and measured load times.
"""
from __future__ import annotations

from ppl_torchrl.data.buffer import OGBenchSource, make_offline_replay_buffer, resolve_dataset
from ppl_torchrl.data.d4rl import (
    D4RL_URLS,
    CORLD4RLExperienceReplay,
    default_root,
    download_d4rl_hdf5,
    import_d4rl_hdf5,
)
from ppl_torchrl.data.hdf5 import (
    D4RLFileError,
    D4RLFileInfo,
    read_d4rl_hdf5,
    validate_d4rl_hdf5,
    write_d4rl_hdf5,
)
from ppl_torchrl.data.minari import CORLMinariExperienceReplay, import_minari_dataset
from ppl_torchrl.data.ogbench import OGBenchExperienceReplay, OGBenchFileError, import_ogbench_dataset
from ppl_torchrl.data.transforms import reward_scale_bias, reward_transform, state_norm_transform
from ppl_torchrl.data.transitions import DatasetStats, corl_transition_rows, load_transitions, write_transitions

__all__ = [
    "CORLD4RLExperienceReplay",
    "CORLMinariExperienceReplay",
    "D4RLFileError",
    "D4RLFileInfo",
    "D4RL_URLS",
    "DatasetStats",
    "OGBenchExperienceReplay",
    "OGBenchFileError",
    "OGBenchSource",
    "corl_transition_rows",
    "default_root",
    "download_d4rl_hdf5",
    "import_d4rl_hdf5",
    "import_minari_dataset",
    "import_ogbench_dataset",
    "load_transitions",
    "make_offline_replay_buffer",
    "read_d4rl_hdf5",
    "resolve_dataset",
    "reward_scale_bias",
    "reward_transform",
    "state_norm_transform",
    "validate_d4rl_hdf5",
    "write_d4rl_hdf5",
    "write_transitions",
]
