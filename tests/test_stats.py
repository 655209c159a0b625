"""iclab.stats against hand computations and scipy's own routines."""

import math
import statistics

import pytest
from scipy import stats as sps

from iclab import stats


def test_t_ci_by_hand():
    # values 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t_{0.975, 3} = 3.182446305284263
    iv = stats.t_ci([1, 2, 3, 4])
    h = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert iv.estimate == 2.5 and iv.n == 4
    assert iv.lo == pytest.approx(2.5 - h) and iv.hi == pytest.approx(2.5 + h)
    assert stats.t_interval([1, 2, 3, 4]) == pytest.approx(h)
    assert stats.t_ci([7.0]).lo == stats.t_ci([7.0]).hi == 7.0  # one value: a point


def test_paired_matches_scipy_ttest_rel():
    a = [0.41, 0.02, 0.01, 0.02, 0.78]
    b = [0.01, 0.02, 0.02, 0.78, 0.01]
    res = stats.paired(a, b)
    ref = sps.ttest_rel(a, b)
    assert res.p == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (res.diff.lo, res.diff.hi) == pytest.approx((ci.low, ci.high))
    assert res.diff.estimate == pytest.approx(statistics.fmean(a) - statistics.fmean(b))
    with pytest.raises(ValueError):
        stats.paired([1, 2], [1])


def test_sign_test_exact():
    # 5 of 5 below zero: p = 2 * 0.5^5 = 0.0625; a tie is dropped
    st = stats.sign_test([-1, -2, -0.5, -3, -1, 0])
    assert (st.below, st.above, st.ties) == (5, 0, 1)
    assert st.p == pytest.approx(0.0625)
    # 4 of 6 below: p = 2 * P(X <= 2) = 2 * (1 + 6 + 15) / 64
    assert stats.sign_test([-1, -1, -1, -1, 2, 2]).p == pytest.approx(44 / 64)


def test_one_sided_and_tost():
    x = [0.1, 0.2, 0.15, 0.12, 0.18]
    assert stats.one_sided(x, 0.3, "less") == pytest.approx(sps.ttest_1samp(x, 0.3, alternative="less").pvalue)
    assert stats.one_sided(x, 0.3, "greater") > 0.99
    with pytest.raises(ValueError):
        stats.one_sided(x, 0.3, "lower")
    # TOST: the larger of the two one-sided p-values; equivalent exactly when the 90% CI lies inside the margins
    d = [0.01, -0.02, 0.005, 0.0, 0.012]
    t = stats.tost(d, 0.05)
    p1 = sps.ttest_1samp(d, -0.05, alternative="greater").pvalue
    p2 = sps.ttest_1samp(d, 0.05, alternative="less").pvalue
    assert t.p == pytest.approx(max(p1, p2))
    assert (t.p < 0.05) == (-0.05 < t.ci90.lo and t.ci90.hi < 0.05)
    wide = stats.tost([0.3, -0.3, 0.2, -0.25], 0.05)
    assert wide.p > 0.05 and not (-0.05 < wide.ci90.lo)
    with pytest.raises(ValueError):
        stats.tost(d, 0.0)


def test_zero_spread_decided_by_sign():
    assert stats.t_test([0.5, 0.5, 0.5], 0.0, "greater") == 0.0
    assert stats.t_test([0.5, 0.5, 0.5], 1.0, "greater") == 1.0
    assert math.isnan(stats.t_test([0.5], 0.0))


def test_bootstrap_median_and_ratio():
    x = [1.0, 2.0, 3.0, 10.0, 4.0]
    iv = stats.bootstrap_ci(x)
    assert iv.estimate == 3.0 and 1.0 <= iv.lo <= 3.0 <= iv.hi <= 10.0
    assert stats.bootstrap_ci(x) == iv  # seeded: deterministic
    ref = sps.bootstrap((x,), statistics.median, n_resamples=2000, method="percentile", rng=1, vectorized=False)
    iv2 = stats.bootstrap_ci(x, n_resamples=2000, seed=1)
    assert (iv2.lo, iv2.hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    r = stats.bootstrap_ratio([2, 4, 6], [1, 2, 2.5])
    assert r.estimate == pytest.approx(12 / 5.5)
    # every paired resample of 3 seeds has a ratio within [min, max] of the per-seed ratios 2, 2, 2.4
    assert 2.0 <= r.lo <= r.estimate <= r.hi <= 2.4


def test_wilson_matches_scipy():
    for k, n in [(0, 5), (3, 5), (5, 5), (17, 40)]:
        ci = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert stats.wilson_interval(k, n) == pytest.approx([ci.low, ci.high])
    # by hand, 3 of 5: center (0.6 + z^2/10) / (1 + z^2/5)
    z = stats.Z95
    center = (0.6 + z * z / 10) / (1 + z * z / 5)
    lo, hi = stats.wilson_interval(3, 5)
    assert (lo + hi) / 2 == pytest.approx(center)


def test_power_and_seeds_needed():
    # the textbook value: effect size 1, two-sided alpha 0.05, power 0.8 -> n = 10 (power 0.803 at 10, 0.737 at 9)
    assert stats.seeds_needed(1.0, 1.0) == 10
    assert stats.power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=1e-3)
    assert stats.power(1.0, 1.0, 9) < 0.8
    # normal approximation ((z_.975 + z_.8) / d)^2 is a lower bound that the t-test needs slightly more than
    d = 0.3
    approx = ((stats.Z95 + 0.8416212335729143) / d) ** 2
    assert approx <= stats.seeds_needed(d, 1.0) <= approx + 3
    assert stats.seeds_needed(0.0, 1.0) is None
    assert stats.seeds_needed(1e-6, 1.0) is None  # more than `most`
    assert stats.seeds_needed(2.0, 1.0, two_sided=False) < stats.seeds_needed(2.0, 1.0)
