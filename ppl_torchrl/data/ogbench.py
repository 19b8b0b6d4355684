"""OGBench single-task datasets (Park et al., ICLR 2025) as TorchRL replay buffers.

A single-task id (its grammar: :mod:`ppl_torchrl.registry.ogbench_ids`) names a dataset file and a task:
``cube-single-play-singletask-task2-v0`` is the file ``cube-single-play-v0.npz`` relabelled for task 2 of
``cube-single``; ``-gen`` before the version names the file this project regenerates (``recipes/collect.py``).

Files are looked for in ``dataset.path`` (given), ``$OGBENCH_DATASET_DIR``, then ``~/.ogbench/data``
(OGBench's default); a missing published file is downloaded with ``ogbench.download_datasets`` when
there is network. The ``-val.npz`` sibling is the validation split (``split="val"``).

Semantics (``docs/data.md``, "OGBench"), decided here and nowhere else:

* A file is a step table, episode after episode. In OGBench's layout (what its generators write and
  what it publishes) ``terminals`` is 1 on the *last row of each episode*; that row has no successor in
  its episode, so it is not a transition (``ogbench.load_dataset`` drops it too). The compact layout
  (``ogbench.load_dataset(compact_dataset=True)`` saved as is) says the same with ``valids`` (0 on that
  row); a file with ``valids`` is read through it.
* Transition ``i`` is ``(obs[i], act[i], r[i], obs[i+1], act[i+1])``. ``act[i+1]`` is the action the data
  took at ``obs[i+1]``; it always exists inside the episode, because the episode's last row keeps its
  action. (FQL's ``Dataset.get_subset`` takes ``actions[i+1]`` of the already-filtered table, which at an
  episode's last transition is the first action of the *next* episode; we do not.)
* Rewards and masks are ``ogbench.relabel_utils.relabel_dataset``'s (called, not rewritten): computed on
  the state ``obs[i]``; ``terminated = 1 - mask`` (the task is solved) is the only flag that stops
  bootstrapping. The end of an episode is not a termination: ``truncated`` stays false, as for the
  other sources, because the episode's last row is simply not a transition.
* Actions are clipped to ``±(1 - action_clip_eps)`` (FQL's ``make_env_and_datasets``; ``1e-5``), so that
  tanh log-probabilities stay finite.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from torchrl.data.datasets import D4RLExperienceReplay

from ppl_torchrl.data.cache import cache_name, cached_import, file_state
from ppl_torchrl.data.transitions import DatasetStats, write_transitions
from ppl_torchrl.errors import UserError
from ppl_torchrl.registry.ogbench_ids import OGBenchId, import_ogbench, parse_ogbench_id

__all__ = [
    "OGBenchExperienceReplay",
    "OGBenchFileError",
    "import_ogbench_dataset",
    "ogbench_data_dir",
    "ogbench_file",
    "read_ogbench_file",
    "relabel",
]


class OGBenchFileError(UserError, ValueError):
    """An OGBench file that cannot be read as a dataset (missing key, wrong lengths, NaN, truncated)."""


def ogbench_data_dir() -> Path:
    """``$OGBENCH_DATASET_DIR`` or OGBench's default ``~/.ogbench/data``."""
    return Path(os.environ.get("OGBENCH_DATASET_DIR", "~/.ogbench/data")).expanduser()


def ogbench_file(parsed: OGBenchId, split: str = "train", path: str | Path | None = None,
                 download: bool = True) -> Path:
    """The ``.npz`` of ``parsed``'s dataset and ``split``; downloads a missing published file if it can.

    ``path`` is the training file; its validation split is the ``-val.npz`` sibling (OGBench's rule).
    """
    if split not in ("train", "val"):
        raise UserError(f"dataset.split must be 'train' or 'val', got {split!r}.")
    suffix = "-val.npz" if split == "val" else ".npz"
    if path is not None:
        path = Path(path).expanduser()
        if split == "val":
            path = path.with_name(path.name[: -len(".npz")] + "-val.npz" if path.name.endswith(".npz")
                                  else path.name + "-val.npz")
        if not path.is_file():
            raise FileNotFoundError(f"OGBench file {path} does not exist; pass dataset.path=<the .npz of "
                                    f"{parsed.dataset_name}> (its validation split is the -val.npz beside it).")
        return path
    folder = ogbench_data_dir()
    target = folder / f"{parsed.dataset_name}{suffix}"
    if target.is_file():
        return target
    where = (f"put {target.name} in {folder} (set OGBENCH_DATASET_DIR to use another folder) or pass "
             "dataset.path=<file.npz>")
    if parsed.generated:
        raise FileNotFoundError(f"{target} does not exist: generate it with `python recipes/collect.py "
                                f"dataset_id={parsed.dataset_name}`, or {where}.")
    if not download:
        raise FileNotFoundError(f"OGBench dataset {parsed.dataset_name} is not in {folder} and download is off: "
                                f"{where}.")
    ogbench = import_ogbench()
    existed = folder.exists()
    try:
        ogbench.download_datasets([parsed.dataset_name], str(folder))
    except OSError as err:  # URLError is an OSError: no network
        for tmp in folder.glob(f"{parsed.dataset_name}*.npz.tmp"):
            tmp.unlink(missing_ok=True)
        if not existed and not any(folder.iterdir()):
            folder.rmdir()  # leave no empty folder behind
        raise FileNotFoundError(f"could not download OGBench dataset {parsed.dataset_name} ({err}); without "
                                f"network, {where} (from https://rail.eecs.berkeley.edu/datasets/ogbench/"
                                f"{parsed.dataset_name}{suffix}).") from None
    return target


def _needed_keys(family: str) -> tuple[str, ...]:
    if family.startswith(("scene", "puzzle")):
        return ("observations", "actions", "terminals", "qpos", "button_states")
    return ("observations", "actions", "terminals", "qpos")


def read_ogbench_file(path: str | Path, family: str) -> dict[str, np.ndarray]:
    """The step table of an OGBench ``.npz`` (either layout), checked; ``valid`` marks the transition rows.

    Returns ``observations``, ``actions`` (float32), ``qpos`` (and ``button_states``) and ``valid`` (bool, row
    ``i`` is a transition to row ``i + 1``). Raises :class:`OGBenchFileError` in one line for a missing key,
    rows of different lengths, NaN/inf values, a layout whose last row is a transition, or a truncated file.
    """
    path = Path(path)
    try:
        with np.load(path) as f:
            present = set(f.files)
            missing = [k for k in _needed_keys(family) if k not in present]
            if missing:
                raise OGBenchFileError(f"{path}: missing key(s) {missing} (has {sorted(present)}); an OGBench "
                                       f"{family} file needs {list(_needed_keys(family))}.")
            data = {k: f[k] for k in (*_needed_keys(family), *(["valids"] if "valids" in present else []))}
    except OGBenchFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise OGBenchFileError(f"{path}: not a readable .npz ({type(err).__name__}: {err}); the file is truncated "
                               "or corrupt: download or generate it again.") from None
    n = len(data["observations"])
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise OGBenchFileError(f"{path}: arrays have different numbers of rows {lengths}; the file is corrupt.")
    if n < 2 or data["observations"].ndim != 2 or data["actions"].ndim != 2:
        raise OGBenchFileError(f"{path}: expected 2-D observations/actions with >= 2 rows, got shapes "
                               f"{data['observations'].shape} / {data['actions'].shape}.")
    for k in ("observations", "actions", "qpos"):
        bad = ~np.isfinite(data[k].reshape(n, -1)).all(-1)
        if bad.any():
            raise OGBenchFileError(f"{path}: {k} has NaN or inf in {int(bad.sum())} row(s) (first: row "
                                   f"{int(np.flatnonzero(bad)[0])}); re-download or regenerate the file.")
    if "valids" in data:
        valid = np.asarray(data.pop("valids")).reshape(-1) > 0.5
    else:
        valid = np.asarray(data["terminals"]).reshape(-1) < 0.5
    if valid[-1]:
        raise OGBenchFileError(f"{path}: the last row is not marked as the end of an episode "
                               "(terminals[-1] = 1 / valids[-1] = 0); the file is truncated.")
    data.pop("terminals")
    data["observations"] = data["observations"].astype(np.float32, copy=False)
    data["actions"] = data["actions"].astype(np.float32, copy=False)
    data["valid"] = valid
    return data


def _make_env(parsed: OGBenchId, success_timing: str | None = None):
    ogbench = import_ogbench()
    kwargs = {} if success_timing is None else {"success_timing": success_timing}
    return ogbench.make_env_and_datasets(parsed.published_id, env_only=True, **kwargs)


def relabel(parsed: OGBenchId, table: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(rewards, masks)`` of every row for ``parsed``'s task, by ``ogbench.relabel_utils.relabel_dataset``."""
    env = _make_env(parsed)
    from ogbench.relabel_utils import relabel_dataset

    try:
        info = {k: table[k] for k in ("qpos", "button_states") if k in table}
        relabel_dataset(parsed.env_id, env, info)
    finally:
        env.close()
    return info["rewards"], info["masks"]


def _fingerprint(path: Path, action_clip_eps: float) -> dict:
    from importlib.metadata import version

    import_ogbench()  # the relabelling's version is part of the import
    return {"file": str(path.resolve()), **file_state(path), "action_clip_eps": action_clip_eps,
            "ogbench": version("ogbench")}


def import_ogbench_dataset(parsed: OGBenchId, path: str | Path, dest: str | Path, *,
                           action_clip_eps: float = 1e-5, progress: bool = True) -> DatasetStats:
    """Relabels the file at ``path`` for ``parsed``'s task and writes its transitions at ``dest`` (atomically)."""
    path = Path(path)
    table = read_ogbench_file(path, parsed.family)
    rewards, masks = relabel(parsed, table)
    act = table["actions"]
    if action_clip_eps:
        act = np.clip(act, -1 + action_clip_eps, 1 - action_clip_eps)
    valid = table["valid"]
    arrays = {
        "observations": table["observations"],
        "actions": act,
        "rewards": rewards,
        # bootstrapping stops on the task's mask only; rows that end an episode are not transitions
        "terminals": masks < 0.5,
        "timeouts": ~valid,
    }
    episodes = int((~valid).sum())
    return write_transitions(
        arrays, dest, name=parsed.canonical_id, source=str(path), progress=progress,
        fingerprint=_fingerprint(path, action_clip_eps),
        metadata={"ogbench_env_id": parsed.env_id, "ogbench_dataset": parsed.dataset_name, "task": parsed.task,
                  "num_episodes": episodes, "num_rows": len(valid),
                  "success_rows": int((masks < 0.5).sum()), "success_transitions": int((masks[valid] < 0.5).sum())},
    )


class OGBenchExperienceReplay(D4RLExperienceReplay):
    """TorchRL's ``D4RLExperienceReplay`` over an OGBench single-task dataset imported with the semantics above.

    The import runs once into ``root/ogbench/<canonical id>[-val]-<hash of the file path>`` and is redone when
    the file's size or mtime, ``action_clip_eps`` or the ogbench version change. ``dataset_stats`` holds the
    counts and state statistics; other keyword arguments (``sampler``, ``prefetch``...) go to TorchRL.
    """

    def __init__(self, dataset_id: str, batch_size: int, *, path: str | Path | None = None, split: str = "train",
                 root: str | Path | None = None, action_clip_eps: float = 1e-5, download: bool = True,
                 progress: bool = True, **kwargs):
        from ppl_torchrl.data.d4rl import default_root

        parsed = parse_ogbench_id(dataset_id)
        if parsed is None:
            raise UserError(f"{dataset_id!r} is not an OGBench single-task id (e.g. "
                            "'cube-single-play-singletask-task2-v0').")
        file = ogbench_file(parsed, split, path, download)
        sub = (Path(root).expanduser() if root is not None else default_root()) / "ogbench"
        name = cache_name(f"{parsed.canonical_id}{'-val' if split == 'val' else ''}", file)
        stats = cached_import(sub / name, lambda: import_ogbench_dataset(
            parsed, file, sub / name, action_clip_eps=action_clip_eps, progress=progress),
            match=_fingerprint(file, action_clip_eps))
        super().__init__(name, batch_size, root=sub, download=False, direct_download=True,
                         use_truncated_as_done=False, **kwargs)
        self.dataset_stats = stats
        self.metadata = dict(stats.metadata)
        self.ogbench_id = parsed
