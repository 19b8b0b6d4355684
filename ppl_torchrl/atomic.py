"""Atomic file writes: nothing half-written is ever left under the final name.

Every writer of the project (checkpoints, results, logs, tables, figures) goes through here: the data go to
a temporary file in the destination folder, which replaces the destination with ``os.replace`` only once
complete; on error the temporary file is removed. :func:`exclusive` makes processes that build the same shared
artefact (an imported dataset, a generated one) take turns.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on a clean exit it becomes ``path`` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes text or bytes to ``path`` atomically and returns the path."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (checkpoints)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


@contextmanager
def exclusive(folder: str | os.PathLike) -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` (created if missing) for the block.

    Processes that build one shared artefact in ``folder`` (the first runs of a sweep, all importing the dataset
    they share) take turns: the first builds it, the others then find it built, instead of each replacing the
    folder another one is reading. The folder itself is locked (``flock`` on its descriptor), so no lock file is
    left behind; the lock goes with the process if it dies. Where ``flock`` is unavailable (not POSIX) the block
    runs unlocked.
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
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
        if created:  # a failed build leaves no empty folder behind
            try:
                folder.rmdir()
            except OSError:  # not empty: the build's result is in it
                pass
