"""A run's ``metrics.jsonl`` (one JSON row per logged step, written by :class:`~ppl_torchrl.training.run_logger.RunLogger`):
its name, its one reader (for the reports, the benchmarks and a resumed run), and learning curves from it."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

__all__ = ["METRICS", "SCORE_CURVE", "read_curve", "read_metrics", "seed_band"]

METRICS = "metrics.jsonl"
#: the evaluation's normalized score, as logged: the default learning curve
SCORE_CURVE = "eval/normalized_score_mean"


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl`` in order (``[]`` without the file): the one reader of that file.

    A live run may be writing its last line: a last line without its newline that is not JSON yet is left out.
    Any other line that is not JSON raises ``ValueError`` naming it (``path:line``): the file is damaged.
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) and not text.endswith("\n"):
                break  # being written
            raise ValueError(f"{path}:{n} is not a JSON line; the file is damaged.") from None
    return rows


def read_curve(run_dir: str | Path, key: str = SCORE_CURVE) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in ``run_dir/metrics.jsonl`` (rows without the key are skipped)."""
    steps, values = [], []
    for row in read_metrics(run_dir):
        if key in row and row[key] is not None:
            steps.append(int(row["step"]))
            values.append(float(row[key]))
    return steps, values


def seed_band(curves: Sequence[tuple[list[int], list[float]]]) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over seeds at the steps every seed evaluated (steps, mean, std)."""
    maps = [dict(zip(s, v)) for s, v in curves if s]
    if not maps:
        return [], [], []
    common = sorted(set.intersection(*(set(m) for m in maps)))
    means, stds = [], []
    for s in common:
        vals = [m[s] for m in maps]
        mu = sum(vals) / len(vals)
        means.append(mu)
        stds.append(math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals)))
    return common, means, stds
