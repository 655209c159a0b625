"""Statistics of iclab, in one place: intervals and tests over per-seed values.

Every number with an interval that iclab prints (compare and sweep tables, reproduce verdicts, multiple
choice accuracy) comes from this module; scipy provides the distributions.
"""

from __future__ import annotations

import math
import statistics

Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


def t_interval(values: list[float]) -> float:
    """Half-width of the 95% confidence interval of the mean (Student's t, n - 1 dof); 0 for one value."""
    from scipy.stats import t

    n = len(values)
    return 0.0 if n < 2 else float(t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n))


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for one value; NaN when a value is not finite)."""
    vals = [float(v) for v in values]
    if not all(math.isfinite(v) for v in vals):  # a diverged seed: no interval (statistics.stdev fails on NaN)
        return statistics.fmean(vals), math.nan
    return statistics.fmean(vals), t_interval(vals)


def fmt_ci(values: list[float], digits: int = 3) -> str:
    """ "mean +- half-width" of per-seed values ("diverged on n/N seeds" when some are not finite)."""
    bad = sum(not math.isfinite(float(v)) for v in values)
    if bad:
        return f"diverged on {bad}/{len(values)} seeds"
    m, h = mean_ci(values)
    return f"{m:.{digits}f} +- {h:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def wilson_interval(k: int, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval of a binomial proportion k / n ([0, 1] for n = 0)."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, center - half), min(1.0, center + half)]
