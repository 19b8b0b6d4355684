"""Progress that fits where it is shown: a live tqdm bar on a terminal, a plain line now and then in a log.

A bar redraws itself with carriage returns up to ten times a second: on a terminal that is one live line, but in
a file (a cluster job's stderr) every redraw stays, hundreds of them per run. When the stream is not a terminal,
:func:`progress_bar` therefore writes one whole line every ``percent`` % of the total, every ``minutes`` minutes
(whichever comes first), and at the end. ``PPL_TORCHRL_PROGRESS=bar`` or ``=lines`` forces either form.
"""
from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm as _live_tqdm
from tqdm.std import tqdm as _std_tqdm

#: a log line every this many percent of the total ...
LINE_EVERY_PERCENT = 5.0
#: ... or every this many minutes, whichever comes first
LINE_EVERY_MINUTES = 5.0


class LogProgress(_std_tqdm):
    """tqdm for logs: the same interface and text as a bar, written as whole lines, one every ``percent`` % of the
    total or every ``minutes`` minutes (only by time when the total is unknown), plus the first and the last."""

    def __init__(self, *args, percent: float = LINE_EVERY_PERCENT, minutes: float = LINE_EVERY_MINUTES, **kwargs):
        self.percent, self.every_seconds = float(percent), 60.0 * float(minutes)
        self._line_n, self._line_t, self._final = None, 0.0, False
        kwargs.update(mininterval=0.0, miniters=1, ascii=True, dynamic_ncols=False)
        super().__init__(*args, **kwargs)

    def _due(self) -> bool:
        if self._final or self._line_n is None:
            return True
        if self.n == self._line_n:
            return False
        if time.monotonic() - self._line_t >= self.every_seconds:
            return True
        if self.total and self.percent > 0:
            def band(n):
                return int(100.0 * n / self.total // self.percent)
            return band(self.n) != band(self._line_n)
        return False

    def display(self, msg=None, pos=None):
        if msg == "" or not self._due():  # tqdm clears a bar with msg=""; a log keeps its lines
            return False
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        self._line_n, self._line_t = self.n, time.monotonic()
        return True

    def close(self):
        if not self.disable and self.n != self._line_n:
            self._ema_dt = lambda: None  # the last line gives the overall rate
            self._final = True
            self.display()
        self.leave = False  # tqdm's own closing would redraw and end with a newline
        super().close()


def _use_lines(stream) -> bool:
    forced = os.environ.get("PPL_TORCHRL_PROGRESS", "").lower()
    if forced in ("bar", "lines"):
        return forced == "lines"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return True


def progress_bar(iterable=None, *, file=None, **kwargs):
    """A tqdm bar (same arguments) on a terminal, a :class:`LogProgress` when ``file`` (stderr by default) is not
    one."""
    stream = sys.stderr if file is None else file
    cls = LogProgress if _use_lines(stream) else _live_tqdm
    return cls(iterable, file=file, **kwargs)


def write(message: str) -> None:
    """A message between progress lines (``tqdm.write``: it does not break a live bar)."""
    _std_tqdm.write(message)
