"""How every results table of the project writes a number: ``mean ± std``; and the table of runs' final evaluations."""
from __future__ import annotations

#: what a table shows where there is no value
MISSING = "–"


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and population std (ddof 0, the project's convention over seeds) of ``values``; ``(None, None)`` if empty."""
    values = list(values)
    if not values:
        return None, None
    mu = sum(values) / len(values)
    return mu, (sum((v - mu) ** 2 for v in values) / len(values)) ** 0.5


def pm(mean: float | None, std: float | None = None, digits: int = 1, scale: float = 1.0) -> str:
    """``"12.3 ± 4.5"`` (``scale`` times the values, ``digits`` decimals), ``"12.3"`` without a std, :data:`MISSING`
    without a mean."""
    if mean is None:
        return MISSING
    if std is None:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def format_scores(results: list[dict]) -> str:
    """A Markdown table of final evaluations (``results.json`` contents): algorithm, dataset, seed, steps,
    return, normalized score (mean ± std over episodes) and success rate."""
    lines = ["| algorithm | dataset | seed | steps | return | normalized score | success rate |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        e = r.get("final_eval") or {}
        success = e.get("success_rate")
        lines.append(
            f"| {r['algorithm']} | {r['dataset']} | {r['seed']} | {r['steps']} | "
            f"{pm(e.get('return_mean'), e.get('return_std'))} | "
            f"{pm(e.get('normalized_score_mean'), e.get('normalized_score_std'))} | "
            f"{MISSING if success is None else f'{100 * success:.0f}%'} |"
        )
    return "\n".join(lines)
