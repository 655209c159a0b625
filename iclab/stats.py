"""Statistics of iclab, in one place: intervals and tests over per-seed values.

Every number with an interval that iclab prints (compare and sweep tables, reproduce verdicts, multiple
choice accuracy) comes from this module; scipy provides the distributions (statsmodels is not needed).

- means: `t_interval` / `mean_ci` / `fmt_ci` (half-widths), `t_ci` (an `Interval` at any confidence);
- paired seeds: `paired` (mean difference with a t-interval, t-test p, exact `sign_test`);
- one-sided and equivalence: `one_sided`, `t_test`, `tost` (two one-sided tests with a stated margin);
- medians and ratios: `bootstrap_ci`, `bootstrap_ratio` (percentile bootstrap, seeded);
- proportions: `wilson_interval`;
- planning: `power`, `seeds_needed` (seeds for a given effect at the observed spread, noncentral t).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

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


# --- tests on per-seed values -----------------------------------------------------------------------------
# A reproduction's runs are paired by seed: seed s of every arm draws the same data order and the same init
# seed, so a difference of two arms is tested on the per-seed differences (a paired t-test), never on the two
# means. Each test here has an independent check in tests/test_stats.py (scipy, or a hand computation).


@dataclass(frozen=True)
class Interval:
    """A mean (or other statistic) with its confidence interval [lo, hi], over n values."""

    estimate: float
    lo: float
    hi: float
    n: int
    sd: float = math.nan

    def excludes(self, x: float) -> bool:
        return x < self.lo or x > self.hi


def t_ci(values: list[float], confidence: float = 0.95) -> Interval:
    """Mean and its two-sided t-interval (Student's t with n - 1 dof); a point for one value or zero spread."""
    from scipy.stats import t

    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = statistics.fmean(vals)
    if n < 2:
        return Interval(m, m, m, 1)
    sd = statistics.stdev(vals)
    h = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(m, m - h, m + h, n, sd)


@dataclass(frozen=True)
class SignTest:
    """Exact two-sided sign test of paired differences: how many are below and above zero (ties dropped)."""

    below: int
    above: int
    ties: int
    p: float


def sign_test(diffs: list[float]) -> SignTest:
    """Exact binomial sign test (two-sided) of H0: a difference is as likely above zero as below."""
    from scipy.stats import binomtest

    below = sum(d < 0 for d in diffs)
    above = sum(d > 0 for d in diffs)
    ties = len(diffs) - below - above
    p = 1.0 if below + above == 0 else float(binomtest(below, below + above, 0.5).pvalue)
    return SignTest(below, above, ties, p)


@dataclass(frozen=True)
class Paired:
    """The paired difference a - b over seeds: its mean with a t-interval, the two-sided t-test p-value
    (H0: mean difference 0) and the exact sign test."""

    diff: Interval
    p: float
    sign: SignTest


def paired(a: list[float], b: list[float], confidence: float = 0.95) -> Paired:
    """Paired comparison of a and b (same length, element i of both from seed i)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    return Paired(t_ci(diffs, confidence), t_test(diffs, 0.0, "two-sided"), sign_test(diffs))


def t_test(values: list[float], mu: float = 0.0, alternative: str = "two-sided") -> float:
    """p-value of the one-sample t-test of the mean against mu; alternative 'less', 'greater' (one-sided) or
    'two-sided'. NaN for fewer than 2 values; with zero spread the p-value is 0 or 1 (the sign decides)."""
    from scipy.stats import ttest_1samp

    vals = [float(v) for v in values]
    if len(vals) < 2:
        return math.nan
    if statistics.pstdev(vals) <= 1e-12 * max(1.0, max(abs(v) for v in vals)):  # no spread (up to rounding)
        d = statistics.fmean(vals) - mu
        side = {"less": d < 0, "greater": d > 0, "two-sided": d != 0}[alternative]
        return 0.0 if side else 1.0
    return float(ttest_1samp(vals, mu, alternative=alternative).pvalue)


def one_sided(values: list[float], bound: float, direction: str) -> float:
    """p-value of the one-sided test that the mean is below (direction 'less') or above ('greater') bound."""
    if direction not in ("less", "greater"):
        raise ValueError(f"direction must be 'less' or 'greater', got {direction!r}")
    return t_test(values, bound, direction)


@dataclass(frozen=True)
class Tost:
    """Two one-sided tests of equivalence: the mean lies within (-margin, +margin) (shifted by center)."""

    p: float  # the larger of the two one-sided p-values: equivalence is shown at level alpha when p < alpha
    ci90: Interval  # the (1 - 2 alpha) interval: inside the margins exactly when p < alpha
    margin: float


def tost(values: list[float], margin: float, center: float = 0.0, alpha: float = 0.05) -> Tost:
    """TOST (Schuirmann 1987) of H0: |mean - center| >= margin against |mean - center| < margin."""
    if margin <= 0:
        raise ValueError(f"an equivalence margin must be positive, got {margin}")
    p_low = t_test(values, center - margin, "greater")
    p_high = t_test(values, center + margin, "less")
    return Tost(max(p_low, p_high), t_ci(values, 1 - 2 * alpha), margin)


def bootstrap_ci(
    values: list[float],
    statistic: str = "median",
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the median (or 'mean') of values; deterministic for a given seed."""
    import numpy as np
    from scipy.stats import bootstrap

    fn = {"median": np.median, "mean": np.mean}[statistic]
    x = np.asarray(values, dtype=float)
    est = float(fn(x))
    if len(x) < 2 or np.ptp(x) == 0:
        return Interval(est, est, est, len(x))
    res = bootstrap(
        (x,), fn, confidence_level=confidence, n_resamples=n_resamples, method="percentile", rng=seed, vectorized=True
    )
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high), len(x))


def bootstrap_ratio(
    a: list[float], b: list[float], confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> Interval:
    """mean(a) / mean(b) with a paired percentile bootstrap interval (seeds resampled together)."""
    import numpy as np
    from scipy.stats import bootstrap

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    est = float(x.mean() / y.mean())
    if len(x) < 2:
        return Interval(est, est, est, len(x))

    def ratio(u, v, axis=-1):
        return u.mean(axis=axis) / v.mean(axis=axis)

    res = bootstrap(
        (x, y), ratio, paired=True, confidence_level=confidence, n_resamples=n_resamples, method="percentile", rng=seed
    )
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high), len(x))


def power(effect: float, sd: float, n: int, alpha: float = 0.05, two_sided: bool = True) -> float:
    """Power of the one-sample (or paired) t-test to detect a true mean `effect` at spread sd with n values
    (noncentral t)."""
    from scipy.stats import nct, t

    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0 if effect != 0 else 0.0
    dof, nc = n - 1, abs(effect) / sd * math.sqrt(n)
    crit = t.ppf(1 - alpha / 2 if two_sided else 1 - alpha, dof)
    return float(nct.sf(crit, dof, nc) + (nct.cdf(-crit, dof, nc) if two_sided else 0.0))


def seeds_needed(
    effect: float, sd: float, alpha: float = 0.05, target: float = 0.8, two_sided: bool = True, most: int = 10_000
) -> int | None:
    """The fewest seeds whose t-test has power >= target to detect a mean `effect` at spread sd (None when more
    than `most` would be needed, or the effect is 0)."""
    if effect == 0 or not math.isfinite(effect) or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    lo, hi = 2, 4
    while power(effect, sd, hi, alpha, two_sided) < target:
        lo, hi = hi, hi * 2
        if hi > most:
            return None
    while lo < hi:  # power grows with n: bisect for the first n that reaches the target
        mid = (lo + hi) // 2
        if power(effect, sd, mid, alpha, two_sided) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo
