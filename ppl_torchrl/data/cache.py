"""The one rule by which an imported dataset is reused: the cache of D4RL files and ids, Minari ids and OGBench files.

An import is a folder under the data root (:func:`~ppl_torchrl.data.transitions.write_transitions`' memmap and its
marker, which records the source's fingerprint). :func:`cached_import` reuses it when

* its marker is complete and of the current format (:func:`~ppl_torchrl.data.transitions.load_stats`),
* every extra file the source adds beside the transitions is there (``needs``), and
* each entry of ``match`` equals the one the marker recorded (what the source says must not have changed:
  a file's size and mtime, a clipping setting, a package version, the observation keys asked for);

otherwise it imports again. Entries the marker records but ``match`` leaves out are not compared (a D4RL file's
path is already in its folder's name, so a moved copy of the same file is the same import). All of it runs under
a lock of the folder's parent (:func:`~ppl_torchrl.atomic.exclusive`), so the concurrent first runs of a sweep
import once and the others reuse that import.

Folder names and fingerprints are unchanged from before this module: caches built earlier are found and reused
(``tests/test_data.py`` pins both).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ppl_torchrl.atomic import exclusive
from ppl_torchrl.data.transitions import DatasetStats, load_stats

__all__ = ["cache_name", "cached_import", "file_state"]


def cache_name(stem: str, source: str | Path) -> str:
    """``<stem>-<8 hex digits of the source file's absolute path>``: two files of one name never share an import."""
    digest = hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def file_state(path: str | Path) -> dict:
    """``{"size", "mtime_ns"}`` of a source file: a file that changed in place is imported again."""
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cached_import(folder: str | Path, build: Callable[[], DatasetStats], *, match: Mapping | None = None,
                  needs: Sequence[str] = ()) -> DatasetStats:
    """The stats of the import at ``folder`` if it can be reused (module docstring), else those of ``build()``,
    which must (re)write ``folder``."""
    folder = Path(folder)
    with exclusive(folder.parent):  # concurrent first runs of a sweep: one imports, the others reuse it
        stats = load_stats(folder)
        if (stats is not None and all((folder / name).is_file() for name in needs)
                and all(stats.fingerprint.get(key) == value for key, value in (match or {}).items())):
            return stats
        return build()
