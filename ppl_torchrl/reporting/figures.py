"""What every figure of the project shares: matplotlib without a display, one way to save, one curve style."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from ppl_torchrl.atomic import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Writes ``fig`` to ``path`` atomically (format from the suffix, PNG without one), trimmed to its content,
    and closes it. Returns the path."""
    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return atomic_write(path, buf.getvalue())


def draw_band(ax, steps: Sequence[int], mean: Sequence[float], std: Sequence[float], label: str,
              alpha: float = 0.25, markersize: float = 3.0, color=None):
    """A mean curve with markers and a ±std band; a single evaluation point shows as a marker with an error bar
    (a line or band through one point draws nothing). ``color``: the axes' next one by default. Returns the line."""
    line, = ax.plot(steps, mean, marker="o", markersize=markersize if len(steps) > 1 else 2 * markersize,
                    label=label, color=color)
    if len(steps) > 1:
        ax.fill_between(steps, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                        color=line.get_color(), alpha=alpha)
    else:
        ax.errorbar(steps, mean, yerr=std, fmt="none", ecolor=line.get_color(), capsize=4)
    return line
