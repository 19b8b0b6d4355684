"""What a recipe's ``dataset`` config section points at: a file to load and an id to evaluate against."""
from __future__ import annotations

from pathlib import Path

from ppl_torchrl.registry import get_dataset_spec, is_ogbench_id


def resolve_training_data(dataset_cfg) -> tuple[str, str | None]:
    """Returns ``(source, eval_id)`` for the ``dataset`` config section.

    * ``dataset.id`` a D4RL id: source is the id (downloaded or imported once), unless ``dataset.path``
      names a local D4RL-format HDF5 of it (e.g. ``~/.d4rl/datasets/antmaze_umaze_v2.hdf5``);
    * ``dataset.id`` a generated id (``*-gen-v0``): the dataset is generated here if missing;
    * ``dataset.id`` an HDF5 path or a Minari id: loaded as is; evaluation needs ``dataset.eval_id``
      (a registered id whose eval env matches the data), else it is skipped;
    * ``dataset.id`` an OGBench single-task id: the source is an
      :class:`~ppl_torchrl.data.buffer.OGBenchSource` (``dataset.path`` = its ``.npz``, ``dataset.split``,
      ``dataset.action_clip_eps``); evaluation on the id's own task with ``dataset.success_timing``
      (``pre``: ogbench >= 1.2.0, ``post``: the FQL paper's 1.1.0).
    """
    dataset_id = str(dataset_cfg.id)
    if is_ogbench_id(dataset_id):
        return _ogbench_source(dataset_id, dataset_cfg)
    path = dataset_cfg.get("path")
    eval_id = dataset_cfg.get("eval_id")
    if path:
        path = Path(str(path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"dataset.path={path} does not exist. Pass the path of a D4RL-format .hdf5 file.")
    spec = get_dataset_spec(dataset_id) if _is_registered(dataset_id) else None
    if spec is not None and spec.source == "generated" and not path:
        from ppl_torchrl.datagen import ensure_generated_dataset

        path = ensure_generated_dataset(dataset_id, seed=int(dataset_cfg.get("generation_seed", 0)))
    source = str(path) if path else dataset_id
    if eval_id is None and spec is not None:
        eval_id = spec.dataset_id
    if eval_id is not None:
        get_dataset_spec(str(eval_id))  # unknown eval ids fail before training
    return source, (None if eval_id is None else str(eval_id))


def _is_registered(dataset_id: str) -> bool:
    try:
        get_dataset_spec(dataset_id)
    except KeyError:
        return False
    return True


def _ogbench_source(dataset_id: str, dataset_cfg):
    from ppl_torchrl.data.buffer import OGBenchSource
    from ppl_torchrl.errors import ConfigError

    timing = str(dataset_cfg.get("success_timing") or "pre")
    if timing not in ("pre", "post"):
        raise ConfigError(f"dataset.success_timing must be 'pre' (ogbench >= 1.2.0) or 'post' (ogbench 1.1.0, the "
                          f"FQL paper), got {timing!r}.")
    split = str(dataset_cfg.get("split") or "train")
    if split not in ("train", "val"):
        raise ConfigError(f"dataset.split must be 'train' or 'val', got {split!r}.")
    path = dataset_cfg.get("path")
    eval_id = dataset_cfg.get("eval_id") or f"{dataset_id}@{timing}"
    get_dataset_spec(str(eval_id))  # unknown eval ids fail before training
    clip = dataset_cfg.get("action_clip_eps")
    source = OGBenchSource(dataset_id, None if not path else str(path), split, 1e-5 if clip is None else float(clip))
    return source, str(eval_id)
