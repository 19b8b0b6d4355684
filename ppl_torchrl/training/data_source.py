"""What a recipe's ``dataset`` config section points at: a file to load and an id to evaluate against."""
from __future__ import annotations

from pathlib import Path

from ppl_torchrl.evaluation.registry import get_dataset_spec


def resolve_training_data(dataset_cfg) -> tuple[str, str | None]:
    """Returns ``(source, eval_id)`` for the ``dataset`` config section.

    * ``dataset.id`` a D4RL id: source is the id (downloaded or imported once), unless ``dataset.path``
      names a local D4RL-format HDF5 of it (e.g. ``~/.d4rl/datasets/antmaze_umaze_v2.hdf5``);
    * ``dataset.id`` a generated id (``*-gen-v0``): the dataset is generated here if missing;
    * ``dataset.id`` an HDF5 path or a Minari id: loaded as is; evaluation needs ``dataset.eval_id``
      (a registered id whose eval env matches the data), else it is skipped.
    """
    dataset_id = str(dataset_cfg.id)
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
