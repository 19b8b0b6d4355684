"""Errors the user can fix, told apart from bugs, and the "did you mean" hint of unknown names.

A user error (a bad config value, an unknown id, a missing or corrupt file, no network, no CUDA) is
reported by the recipes in one line (:func:`ppl_torchrl.training.recipe.recipe_main`); anything else is a
bug and keeps its traceback. Library code raises :class:`ConfigError` and friends for its own checks;
errors of the usual types (``FileNotFoundError``, ``KeyError``, ...) raised for the same reasons by lower
layers are marked with :func:`user_errors` instead, so that they keep their type. :func:`is_user_error`
tells both.

This module imports nothing from the project: every layer may use it.
"""
from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Iterable, Iterator


class UserError(Exception):
    """An error the user fixes (config, ids, files, network, machine), not a bug: reported in one line."""


class ConfigError(UserError, ValueError):
    """A config value that cannot be right (also a ``ValueError``)."""


class ResumeError(UserError, FileNotFoundError):
    """``resume=true`` without a checkpoint to resume (also a ``FileNotFoundError``)."""


class RunExistsError(UserError, FileExistsError):
    """A run folder already holds another run (also a ``FileExistsError``)."""


class BusyError(UserError, BlockingIOError):
    """A folder another process is working in, e.g. a run folder being trained (also a ``BlockingIOError``)."""


class DeviceError(UserError, RuntimeError):
    """The requested device is not available (also a ``RuntimeError``)."""


class MissingPackageError(UserError, ImportError):
    """An optional package that a requested feature needs is not installed (also an ``ImportError``)."""


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's to fix: a :class:`UserError` or marked by :func:`user_errors`."""
    return isinstance(err, UserError) or bool(getattr(err, "user_error", False))


def add_note(err: BaseException, note: str) -> None:
    """``err.add_note(note)`` (Python >= 3.11; on 3.10 the note is kept for :func:`error_line` only)."""
    if hasattr(err, "add_note"):
        err.add_note(note)
    else:  # pragma: no cover - Python 3.10
        err.__notes__ = [*getattr(err, "__notes__", []), note]


def user_error(err: BaseException) -> BaseException:
    """Marks ``err`` as a user error (type unchanged) and returns it: ``raise user_error(KeyError(...))``."""
    err.user_error = True
    return err


@contextmanager
def user_errors(*types: type[BaseException], hint: str | None = None) -> Iterator[None]:
    """Marks exceptions of ``types`` raised inside as user errors (type unchanged), with an optional hint.

    For calls whose failures of these types come from the user's input, e.g. loading the dataset a
    config names: ``with user_errors(OSError, KeyError): load(...)``.
    """
    try:
        yield
    except types as err:
        try:
            err.user_error = True
        except AttributeError:  # pragma: no cover - exception types without a __dict__
            raise UserError(error_line(err)) from err
        if hint:
            add_note(err, hint)
        raise


def error_line(err: BaseException) -> str:
    """The message of ``err`` (and its notes) on one line, without the type name."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]  # str(KeyError) would quote it
    else:
        text = str(err) or type(err).__name__
    parts = [text, *getattr(err, "__notes__", ())]
    return " ".join(line.strip() for part in parts for line in str(part).splitlines() if line.strip())


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" Did you mean 'a', 'b'?"`` naming up to three close matches of ``name`` in ``known``, else ``""``.

    Appended to the message of an unknown dataset id, eval env or dataset name.
    """
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""
