"""D4RL datasets (by id or as a local HDF5 file) as a TorchRL ``D4RLExperienceReplay``.

TorchRL's ``D4RLExperienceReplay(direct_download=True)`` downloads the HDF5 from its URL table,
loads it whole into RAM and keeps every timeout row, bootstrapping through a zeroed next
observation, with no next action. We keep its URL table, its class and its on-disk layout
(``<root>/<dataset_id>`` holding a memmapped TensorDict), and replace how that folder is
filled:

1. the HDF5 comes from a local file, D4RL's own cache (``~/.d4rl/datasets`` or
   ``$D4RL_DATASET_DIR``), or a download that is written to ``*.part``, checked
   (:func:`~ppl_torchrl.data.hdf5.validate_d4rl_hdf5`: opens, the keys that are read exist
   with equal lengths, finite, every chunk readable; metadata and unread ``infos/*`` are not
   checked) and only then renamed, so a failed download is never half-used;
2. the file is streamed into transitions with the authors' semantics
   (:mod:`ppl_torchrl.data.transitions`) in an atomically-moved folder;
3. ``D4RLExperienceReplay(..., download=False)`` then finds the folder and serves it as its
   ``TensorStorage``, so later runs need neither the file nor the network.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from torchrl.data.datasets import D4RLExperienceReplay
from torchrl.data.datasets.d4rl_infos import D4RL_DATASETS
from ppl_torchrl.progress import progress_bar

from ppl_torchrl.data.hdf5 import D4RLFileError, validate_d4rl_hdf5
from ppl_torchrl.atomic import UMASK, atomic_path
from ppl_torchrl.data.cache import cache_name, cached_import, file_state
from ppl_torchrl.data.transitions import DatasetStats, time_limit_timeouts, write_transitions
from ppl_torchrl.registry import d4rl_time_limit

__all__ = [
    "D4RL_URLS",
    "CORLD4RLExperienceReplay",
    "default_root",
    "download_d4rl_hdf5",
    "import_d4rl_hdf5",
    "is_d4rl_id",
]

#: TorchRL's table of D4RL dataset URLs (``dataset_id -> url``). Tests point entries at
#: ``file://`` URLs; the download code path is the same.
D4RL_URLS = D4RL_DATASETS


def default_root() -> Path:
    """Where imported datasets live: ``$PPL_TORCHRL_DATA`` or ``~/.cache/ppl_torchrl``."""
    return Path(os.environ.get("PPL_TORCHRL_DATA", "~/.cache/ppl_torchrl")).expanduser()


def is_d4rl_id(dataset_id: str) -> bool:
    return dataset_id in D4RL_URLS


def _d4rl_cache_dirs() -> list[Path]:
    dirs = [Path("~/.d4rl/datasets").expanduser()]
    if os.environ.get("D4RL_DATASET_DIR"):
        dirs.insert(0, Path(os.environ["D4RL_DATASET_DIR"]).expanduser())
    return dirs


def _url_basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _no_network_hint(dataset_id: str, filename: str) -> str:
    return (
        f"Without network access, put the file at ~/.d4rl/datasets/{filename} (or in "
        f"$D4RL_DATASET_DIR), or pass the path of a local D4RL-format HDF5 file instead of the id "
        "(make_offline_replay_buffer('/path/to/file.hdf5', ...)), or use a local Minari dataset id "
        "with MINARI_DATASETS_PATH set."
    )


def download_d4rl_hdf5(dataset_id: str, dest_dir: str | Path, *, progress: bool = True) -> Path:
    """Downloads the HDF5 of ``dataset_id`` from TorchRL's URL table into ``dest_dir``; returns it.

    The bytes go to ``<name>.part``; the size is checked against ``Content-Length`` when the
    server sends one (D4RL publishes no hashes), the file is validated, and only then renamed
    to ``<name>``. On any failure the partial file is removed (so the next call retries) and a
    :class:`RuntimeError` / :class:`~ppl_torchrl.data.hdf5.D4RLFileError` says what to do.
    """
    if dataset_id not in D4RL_URLS:
        raise KeyError(f"{dataset_id!r} is not in TorchRL's D4RL URL table; see ppl_torchrl.data.D4RL_URLS.")
    url = D4RL_URLS[dataset_id]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / _url_basename(url)
    if final.is_file():
        validate_d4rl_hdf5(final)
        return final
    # the bytes go to a ".part" beside the file, renamed only once complete and valid (removed on any failure)
    with atomic_path(final, mode=UMASK, suffix=".part") as part:
        with open(part, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=60)
            except (urllib.error.URLError, OSError) as err:
                raise RuntimeError(
                    f"Could not download D4RL dataset {dataset_id!r} from {url} ({err}). "
                    + _no_network_hint(dataset_id, final.name)
                ) from err
            with response:
                expected = response.headers.get("Content-Length")
                expected = int(expected) if expected else None
                written = 0
                with progress_bar(total=expected, unit="B", unit_scale=True, desc=f"download {final.name}",
                                  disable=not progress) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
        if expected is not None and written != expected:
            raise RuntimeError(
                f"Download of {dataset_id!r} from {url} is truncated ({written} of {expected} bytes); "
                "the partial file was removed, call again to retry. " + _no_network_hint(dataset_id, final.name)
            )
        try:
            validate_d4rl_hdf5(part)
        except D4RLFileError as err:
            raise D4RLFileError(
                f"The file downloaded for {dataset_id!r} from {url} is not a valid D4RL HDF5 ({err}). "
                "It was removed; call again to retry."
            ) from err
    return final


def _fingerprint(path: Path) -> dict:
    return {"path": str(path.resolve()), **file_state(path)}


def _time_limit_match(path: Path, max_episode_steps: int | None) -> dict:
    """What the cache compares for the time limit: only for a file without ``timeouts``, whose import it shapes."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if "timeouts" in h5:
                return {}
    except OSError:
        return {}  # an unreadable file: the import says so
    return {"time_limit": None if max_episode_steps is None else int(max_episode_steps)}


def import_d4rl_hdf5(
    hdf5_path: str | Path,
    dest: str | Path,
    *,
    name: str | None = None,
    max_episode_steps: int | None = None,
    progress: bool = True,
) -> DatasetStats:
    """Validates a D4RL-format HDF5 file and streams it into CORL-semantics transitions at ``dest``.

    ``dest`` becomes a memmapped TensorDict folder (TorchRL's on-disk layout) plus a
    ``ppl_dataset.json`` with the :class:`~ppl_torchrl.data.transitions.DatasetStats`. Next
    observations are ``observations[i+1]`` as in CORL, even if the file has ``next_observations``.
    Only observations, actions, rewards, terminals and timeouts are read; the file's scalar
    entries (D4RL's ``metadata/algorithm``, ``metadata/iteration``...) are kept as
    ``DatasetStats.metadata``; policy weights and ``infos/*`` are left in the file.

    A file without ``timeouts`` (D4RL's older layout) needs ``max_episode_steps``, its environment's time
    limit: episodes then end as D4RL's ``qlearning_dataset`` ends them
    (:func:`~ppl_torchrl.data.transitions.time_limit_timeouts`), and the limit is recorded in the
    fingerprint. A file with ``timeouts`` ignores it.
    """
    import h5py

    info = validate_d4rl_hdf5(hdf5_path)
    fingerprint = _fingerprint(info.path)
    with h5py.File(info.path, "r") as h5:
        arrays = {k: h5[k] for k in ("observations", "actions", "rewards", "terminals")}
        if info.has_timeouts:
            arrays["timeouts"] = h5["timeouts"]
        elif max_episode_steps is None:
            raise D4RLFileError(
                f"{info.path} has no 'timeouts' (D4RL's older layout: v0 Gym-MuJoCo, maze2d, kitchen), so episodes "
                "end at the environment's time limit, as in D4RL's qlearning_dataset: pass max_episode_steps=<the "
                "limit> (recipes: dataset.max_episode_steps=<the limit>; a D4RL id knows its own)."
            )
        else:
            arrays["timeouts"] = time_limit_timeouts(h5["terminals"][()], max_episode_steps)
            fingerprint["time_limit"] = int(max_episode_steps)
        return write_transitions(
            arrays,
            dest,
            name=name or info.path.stem,
            source=str(info.path),
            fingerprint=fingerprint,
            metadata=info.metadata,
            progress=progress,
        )


class CORLD4RLExperienceReplay(D4RLExperienceReplay):
    """``D4RLExperienceReplay`` whose storage holds transitions with the authors' semantics.

    Give either a D4RL ``dataset_id`` (resolved through D4RL's local cache, else downloaded
    from TorchRL's URL table) or ``hdf5_path`` (a local D4RL-format file; ``dataset_id`` is then
    only a name). A file without ``timeouts`` ends its episodes at the time limit: D4RL's for an id
    (:func:`~ppl_torchrl.registry.d4rl_time_limit`), ``max_episode_steps`` for a local file. The
    import happens once, under ``root/d4rl/<dataset_id>`` or ``root/hdf5/<stem>-<hash of the path>``;
    later runs reuse it even if the file is gone. A local file whose size or mtime changed is re-imported.

    Attributes:
        dataset_stats: the :class:`~ppl_torchrl.data.transitions.DatasetStats` of the import
            (transition counts, ``state_mean``/``state_std`` for state normalisation).
        metadata: the file's scalar entries (``{"metadata/algorithm": "SAC", ...}`` for a real
            D4RL file, ``{}`` when it has none), like ``D4RLExperienceReplay.metadata``.

    Other keyword arguments (``sampler``, ``prefetch``, ``transform``, ``pin_memory``...) go to
    ``D4RLExperienceReplay``.
    """

    def __init__(
        self,
        dataset_id: str | None,
        batch_size: int,
        *,
        hdf5_path: str | Path | None = None,
        root: str | Path | None = None,
        download: bool = True,
        keep_hdf5: bool = False,
        max_episode_steps: int | None = None,
        progress: bool = True,
        **kwargs,
    ):
        base = Path(root).expanduser() if root is not None else default_root()
        if hdf5_path is not None:
            hdf5_path = Path(hdf5_path).expanduser()
            sub, name = base / "hdf5", cache_name(hdf5_path.stem, hdf5_path)
            # a file that changed is imported again (so is one without timeouts read with another time limit);
            # a file that is gone leaves its import in use
            match = {**file_state(hdf5_path), **_time_limit_match(hdf5_path, max_episode_steps)} \
                if hdf5_path.is_file() else {}
            stats = cached_import(sub / name, lambda: import_d4rl_hdf5(
                hdf5_path, sub / name, max_episode_steps=max_episode_steps, progress=progress), match=match)
        else:
            if dataset_id is None or not is_d4rl_id(dataset_id):
                raise KeyError(f"{dataset_id!r} is not a D4RL id known to TorchRL; pass hdf5_path for a local file.")
            sub, name = base / "d4rl", dataset_id
            stats = cached_import(sub / name, lambda: self._import_d4rl(dataset_id, sub / name, base, download,
                                                                        keep_hdf5, progress))
        super().__init__(
            name, batch_size, root=sub, download=False, direct_download=True, use_truncated_as_done=False, **kwargs
        )
        self.dataset_stats = stats
        self.metadata = dict(stats.metadata)

    @staticmethod
    def _import_d4rl(
        dataset_id: str, folder: Path, base: Path, download: bool, keep_hdf5: bool, progress: bool
    ) -> DatasetStats:
        """Imports ``dataset_id`` from D4RL's own cache, else from a download."""
        filename = _url_basename(D4RL_URLS[dataset_id])
        limit = d4rl_time_limit(dataset_id)
        for d in _d4rl_cache_dirs():
            if (d / filename).is_file():
                return import_d4rl_hdf5(d / filename, folder, name=dataset_id, max_episode_steps=limit,
                                        progress=progress)
        if not download:
            raise FileNotFoundError(
                f"D4RL dataset {dataset_id!r} is not imported under {folder} and download=False. "
                + _no_network_hint(dataset_id, filename)
            )
        h5 = download_d4rl_hdf5(dataset_id, base / "downloads", progress=progress)
        stats = import_d4rl_hdf5(h5, folder, name=dataset_id, max_episode_steps=limit, progress=progress)
        if not keep_hdf5:
            h5.unlink(missing_ok=True)
        return stats
