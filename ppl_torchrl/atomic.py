"""Atomic file writes: nothing half-written is ever left under the final name.

Every writer of the project (checkpoints, results, logs, tables, figures, imported and generated datasets,
downloads) goes through here, and nothing else calls ``os.replace`` or makes temporary files to rename
(``tests/test_layout.py`` checks it): the data go to a temporary file (or folder) beside the destination,
which replaces the destination with ``os.replace`` only once complete; on error the temporary is removed.
:func:`exclusive` makes processes that build the same shared artefact (an imported dataset, a generated one)
take turns.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ppl_torchrl.errors import BusyError

#: ``mode=`` of a file written as ``open()`` would create it: ``0o666`` less the process's umask. Data files
#: (downloads, generated datasets, behaviour policies) get it, so that a data folder shared between users keeps
#: the permissions its owner set up through the umask; mkstemp's own 0600 would make them unreadable to others.
UMASK = "umask"
#: the mode of the project's outputs (results, logs, checkpoints, tables, figures): ordinary shared files
OUTPUT_MODE = 0o644


def _file_mode(mode: int | str) -> int:
    if mode == UMASK:
        umask = os.umask(0)  # reading the umask means setting it: put it straight back
        os.umask(umask)
        return 0o666 & ~umask
    if not isinstance(mode, int):
        raise ValueError(f"mode must be an int (e.g. 0o644) or atomic.UMASK, got {mode!r}.")
    return mode


@contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int | str = OUTPUT_MODE, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on a clean exit it gets ``mode`` and becomes ``path``.

    ``mode``: the file's permissions, :data:`OUTPUT_MODE` (0644) or :data:`UMASK`. ``suffix``: the temporary's
    (``.part`` for a download, so that a crash leaves a name that says what it is).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode(mode))  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes, *, mode: int | str = OUTPUT_MODE) -> Path:
    """Writes text or bytes to ``path`` atomically and returns the path."""
    with atomic_path(path, mode=mode) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike, *, mode: int | str = OUTPUT_MODE) -> Path:
    """``torch.save`` to ``path`` atomically (checkpoints, behaviour policies)."""
    import torch

    with atomic_path(path, mode=mode) as tmp:
        torch.save(obj, tmp)
    return Path(path)


@contextmanager
def atomic_folder(dest: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``dest``; on a clean exit it replaces ``dest`` (see
    :func:`replace_folder`), on error it is removed. Its permissions are mkdtemp's (0700): imported datasets are
    the user's own cache."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        replace_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Moves the complete folder ``src`` to ``dest`` (same file system), replacing an existing ``dest``.

    ``os.replace`` cannot replace a non-empty folder, so an existing ``dest`` is removed first: a crash between the
    two steps leaves no ``dest`` (the next run builds it again), never a mixture of old and new files.
    """
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(src, dest)
    return dest


@contextmanager
def exclusive(folder: str | os.PathLike, *, wait: bool = True, busy: str = "") -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` (created if missing) for the block.

    Processes that build one shared artefact in ``folder`` (the first runs of a sweep, all importing the dataset
    they share) take turns: the first builds it, the others then find it built, instead of each replacing the
    folder another one is reading. With ``wait=False`` a folder another process holds raises
    :class:`~ppl_torchrl.errors.BusyError` at once (its message ends with ``busy``, what to do): a run folder is
    trained by one process at a time. The folder itself is locked (``flock`` on its descriptor), so no lock file is
    left behind; the lock goes with the process if it dies. Where ``flock`` is unavailable (not POSIX, or a file
    system without it) the block runs unlocked.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BusyError(f"{folder} is in use by another process{busy}") from None
            except OSError:  # a file system without flock (some NFS and Lustre mounts): run unlocked
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
        if created:  # a failed build leaves no empty folder behind
            try:
                folder.rmdir()
            except OSError:  # not empty: the build's result is in it
                pass
