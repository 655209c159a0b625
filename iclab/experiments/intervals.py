"""The 95% interval of a mean over seeds as `iclab compare` and `iclab sweep` store and print it.

One seed has no interval: `ci95_of` gives None (null in JSON), and tables print `NO_CI`, "n/a (1 seed)",
rather than a zero-width "+- 0.0000" that would read as certainty.
"""

from __future__ import annotations

from iclab.stats import t_interval

NO_CI = "n/a (1 seed)"


def ci95_of(values: list[float]) -> float | None:
    """Half-width of the 95% t-interval of the mean of `values`; None for fewer than two values."""
    return t_interval(values) if len(values) > 1 else None


def ci_text(ci: float | None, fmt: str = ".4f") -> str:
    """A half-width formatted for a table, or "n/a (1 seed)" for None."""
    return NO_CI if ci is None else format(ci, fmt)


def ci_cell(ci: float | None):
    """A CSV cell: the half-width, or "n/a (1 seed)" for None."""
    return NO_CI if ci is None else ci
