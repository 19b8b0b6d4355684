"""One entry point: a dataset id or path in, a seeded TorchRL replay buffer of transitions out."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import torch
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import RandomSampler, SamplerWithoutReplacement
from torchrl.envs.transforms import DeviceCastTransform

from ppl_torchrl.data.d4rl import D4RL_URLS, CORLD4RLExperienceReplay, is_d4rl_id
from ppl_torchrl.data.minari import CORLMinariExperienceReplay, local_minari_ids, minari_root
from ppl_torchrl.data.ogbench import OGBenchExperienceReplay
from ppl_torchrl.data.transforms import reward_transform, state_norm_transform
from ppl_torchrl.errors import did_you_mean
from ppl_torchrl.registry import DATASETS, is_ogbench_id
from ppl_torchrl.registry.ogbench_ids import ogbench_single_task_ids

__all__ = ["OGBenchSource", "make_offline_replay_buffer", "resolve_dataset"]

DatasetKind = Literal["hdf5", "d4rl", "minari", "ogbench"]


class OGBenchSource(str):
    """An OGBench single-task id with where its file is and which split to read (a ``str``: the id).

    ``path``: the training ``.npz`` (``None``: ``$OGBENCH_DATASET_DIR`` or ``~/.ogbench/data``); ``split``:
    ``"train"`` or ``"val"`` (the ``-val.npz`` beside it); ``action_clip_eps``: FQL's clip of dataset actions.
    """

    def __new__(cls, dataset_id: str, path=None, split: str = "train", action_clip_eps: float = 1e-5):
        obj = super().__new__(cls, dataset_id)
        obj.path, obj.split, obj.action_clip_eps = path, split, float(action_clip_eps)
        return obj


def resolve_dataset(dataset: str | Path) -> DatasetKind:
    """Says how ``dataset`` will be loaded; raises a ``KeyError`` naming close ids if it is unknown.

    * ``"hdf5"``: a ``Path``, an existing file, or a string ending in ``.hdf5``/``.h5``;
    * ``"d4rl"``: an id of TorchRL's D4RL URL table (all ids of :mod:`ppl_torchrl.registry` with
      ``source="d4rl"`` are in it);
    * ``"minari"``: a Minari id present under ``MINARI_DATASETS_PATH`` (or any id with a ``/``);
    * ``"ogbench"``: an OGBench single-task id (``cube-single-play-singletask-task2-v0``; :mod:`ppl_torchrl.data.ogbench`).
    """
    if isinstance(dataset, OGBenchSource) or is_ogbench_id(dataset):
        return "ogbench"
    if str(dataset).endswith(".npz"):
        raise KeyError(
            f"{dataset} is a .npz file: OGBench files are read through their single-task id. Pass the id as the "
            "dataset and the file as its path (recipes: dataset.id=cube-single-play-singletask-task2-v0 "
            "dataset.path=<file.npz>; Python: OGBenchSource(<id>, path=<file.npz>))."
        )
    if isinstance(dataset, Path) or str(dataset).endswith((".hdf5", ".h5")) or Path(str(dataset)).expanduser().is_file():
        return "hdf5"
    if is_d4rl_id(dataset):
        return "d4rl"
    if "/" in dataset or dataset in local_minari_ids():
        return "minari"
    candidates = dict.fromkeys([*D4RL_URLS, *DATASETS, *local_minari_ids(),
                                *ogbench_single_task_ids(), *ogbench_single_task_ids(generated=True)])
    hint = did_you_mean(dataset, candidates)
    spec = DATASETS.get(dataset)
    if spec is not None and spec.source != "d4rl":
        hint = f" {dataset!r} is a registered {spec.source} dataset: generate it and pass the HDF5 path."
    raise KeyError(
        f"Unknown dataset {dataset!r}.{hint} Pass a D4RL id (ppl_torchrl.registry.DATASETS, e.g. "
        f"'hopper-medium-v2'), the path of a local D4RL-format .hdf5 file, a Minari id available "
        f"under {minari_root()} (set MINARI_DATASETS_PATH), or an OGBench single-task id of a state-based "
        "dataset (e.g. 'cube-single-play-singletask-task2-v0', tasks 1-5)."
    )


def make_offline_replay_buffer(
    dataset: str | Path,
    *,
    batch_size: int,
    root: str | Path | None = None,
    reward_scale: float = 1.0,
    reward_bias: float = 0.0,
    normalize_states: bool = False,
    device: torch.device | str | None = None,
    prefetch: int | None = None,
    seed: int | None = None,
    without_replacement: bool = False,
    download: bool = True,
    observation_keys: Sequence[str] | None = None,
    max_episode_steps: int | None = None,
    progress: bool = True,
) -> TensorDictReplayBuffer:
    """Returns a TorchRL replay buffer of ``dataset``'s transitions, with the authors' semantics.

    Args:
        dataset: a D4RL id (``"antmaze-large-diverse-v2"``), the path of a local D4RL-format HDF5
            file, a local Minari id (``"mujoco/hopper/medium-v0"``) or an OGBench single-task id (an
            :class:`OGBenchSource` to give its file, split and action clip); see :func:`resolve_dataset`.
        batch_size: transitions per ``buffer.sample()``.
        root: cache folder of imported datasets (default ``$PPL_TORCHRL_DATA`` or
            ``~/.cache/ppl_torchrl``).
        reward_scale, reward_bias: ``r -> scale * r + bias`` at sampling time
            (:func:`~ppl_torchrl.data.transforms.reward_scale_bias` gives the authors' values).
        normalize_states: normalise observations and next observations with the dataset's
            ``state_mean``/``state_std`` (CORL's ``std + 1e-3``).
        device: where sampled batches are moved (a ``DeviceCastTransform``); storage stays on disk.
        prefetch: batches prepared ahead by TorchRL's prefetch threads.
        seed: seeds the buffer's own ``torch.Generator``, so the sequence of batches is reproducible
            and independent of the global RNG.
        without_replacement: sample epochs without replacement (``SamplerWithoutReplacement``,
            ``drop_last=True``) instead of CORL's uniform sampling with replacement.
        download: for D4RL ids not imported yet, allow downloading the HDF5.
        observation_keys: for Minari datasets with dict observations, the keys to concatenate.
        max_episode_steps: for a local D4RL-format file without ``timeouts`` (D4RL's older layout), the
            environment's time limit, at which episodes then end as in D4RL's ``qlearning_dataset`` (a D4RL id
            knows its own limit).
        progress: show tqdm bars during import/download.

    Returns:
        a ``CORLD4RLExperienceReplay`` (D4RL id or HDF5 path) or ``CORLMinariExperienceReplay``
        (Minari id), both TorchRL ``TensorDictReplayBuffer``s over a ``TensorStorage`` of the
        memmapped transitions. Batches hold exactly :data:`ppl_torchrl.keys.BATCH_KEYS` plus
        ``TRUNCATED`` (all false) and TorchRL's ``"index"``; observations/actions float32, reward
        and flags ``[B, 1]``. Attributes: ``dataset_stats`` (a
        :class:`~ppl_torchrl.data.transitions.DatasetStats`), and ``state_mean``/``state_std``
        (float32 tensors that evaluation must apply to env observations: the dataset statistics
        with ``normalize_states``, else 0 and 1).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    kind = resolve_dataset(dataset)
    sampler = SamplerWithoutReplacement(drop_last=True) if without_replacement else RandomSampler()
    common = dict(root=root, progress=progress, sampler=sampler, prefetch=prefetch)
    if kind == "hdf5":
        buffer = CORLD4RLExperienceReplay(None, batch_size, hdf5_path=dataset, max_episode_steps=max_episode_steps,
                                          **common)
    elif kind == "d4rl":
        buffer = CORLD4RLExperienceReplay(dataset, batch_size, download=download, **common)
    elif kind == "ogbench":
        src = dataset if isinstance(dataset, OGBenchSource) else OGBenchSource(str(dataset))
        buffer = OGBenchExperienceReplay(str(src), batch_size, path=src.path, split=src.split,
                                         action_clip_eps=src.action_clip_eps, download=download, **common)
    else:
        buffer = CORLMinariExperienceReplay(dataset, batch_size, observation_keys=observation_keys, **common)
    stats = buffer.dataset_stats

    transforms = []
    if normalize_states:
        transforms.append(state_norm_transform(stats))
        buffer.state_mean, buffer.state_std = stats.state_mean_tensor(), stats.state_std_tensor()
    else:
        buffer.state_mean = torch.zeros(stats.obs_dim)
        buffer.state_std = torch.ones(stats.obs_dim)
    reward = reward_transform(reward_scale, reward_bias)
    if reward is not None:
        transforms.append(reward)
    if device is not None:
        transforms.append(DeviceCastTransform(torch.device(device)))
    for t in transforms:
        buffer.append_transform(t)
    if seed is not None:
        buffer.set_rng(torch.Generator().manual_seed(int(seed)))
    return buffer
