"""Generated sections of a hand-written Markdown file: the part between a section's two markers is replaced on every
run, the text around it is left alone (the evidence grids write docs/evidence.md, docs/finetune.md, docs/ogbench.md
and docs/results.md's OGBench table this way)."""
from __future__ import annotations

import re
from pathlib import Path

from ppl_torchrl.atomic import atomic_write

__all__ = ["read_section", "replace_section", "write_section"]


def _markers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"section name {name!r} must be letters, digits, '_', '.' or '-'.")
    return f"<!-- {name}:begin (generated; edits here are overwritten) -->", f"<!-- {name}:end -->"


def read_section(path: str | Path, name: str) -> str:
    """The body of section ``name`` of the Markdown file ``path`` ('' where the file or the section is absent)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    begin, end = _markers(name)
    i, j = text.find(begin), text.find(end)
    return text[i + len(begin):j].strip("\n") if 0 <= i < j else ""


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the part between ``name``'s markers replaced by ``body`` (appended if absent).

    Raises ``ValueError`` if only one marker is present or they are out of order: a half-edited
    document is not silently truncated.
    """
    begin, end = _markers(name)
    i, j = text.find(begin), text.find(end)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if i < 0 and j < 0:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}{block}\n"
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"the document has a broken '{name}' section (markers missing or out of order); "
                         f"restore both lines {begin!r} and {end!r}, or delete both.")
    return text[:i] + block + text[j + len(end):]


def write_section(path: str | Path, name: str, body: str, title: str = "") -> Path:
    """Replaces (or appends) section ``name`` of the Markdown file ``path``, atomically.

    A missing file is created with ``title`` as its first line.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else (f"# {title}\n\n" if title else "")
    return atomic_write(path, replace_section(text, name, body))
