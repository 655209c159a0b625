"""The figure of many runs: per-seed dots around a mean with its 95% interval (`iclab compare`, `iclab sweep`).

matplotlib's backend (Agg) is chosen once, in iclab/evaluation/plots.py, which this module imports.
"""

from __future__ import annotations

from iclab.evaluation.plots import plt, run_color

__all__ = ["plt", "run_color", "seed_dots", "floor_at_zero"]


def seed_dots(ax, xs: list, stats: list[dict], color, label: str | None = None, line: bool = False) -> None:
    """At each x, stats {"mean", "ci95", "values"}: the mean with its 95% interval as an error bar (joined by
    a line when `line`) and each seed's value as a faint dot. A ci95 of None (one seed) draws no bar."""
    ax.errorbar(
        xs,
        [m["mean"] for m in stats],
        yerr=[0.0 if m["ci95"] is None else m["ci95"] for m in stats],  # None: one seed, no interval
        fmt="o-" if line else "o",
        color=color,
        capsize=4,
        label=label,
    )
    for x, m in zip(xs, stats):
        ax.scatter([x] * len(m["values"]), m["values"], color=color, alpha=0.4, s=12)


def floor_at_zero(ax, stats: list[dict]) -> bool:
    """Start the y axis at 0 when every value is >= 0 but an interval reaches below 0 (a t interval of few
    skewed values can; the metric cannot). Returns whether it did (the title then says so)."""
    wide = any(m["ci95"] is not None and m["mean"] < m["ci95"] for m in stats)
    if wide and all(v >= 0 for m in stats for v in m["values"]):
        ax.set_ylim(bottom=0)
        return True
    return False
