"""AlgoPerf's performance ratios, profiles and score against a hand-computed example."""

import math

import pytest

from iclab.optbench.profiles import performance_ratios, profile, score, scores

INF = math.inf
# 3 submissions x 4 workloads; w3 is reached by nobody, C never reaches w1
TIMES = {
    "A": {"w1": 100, "w2": 300, "w3": INF, "w4": 50},
    "B": {"w1": 200, "w2": 100, "w3": INF, "w4": 250},
    "C": {"w1": INF, "w2": 150, "w3": INF, "w4": 100},
}


def test_ratios_by_hand():
    r = performance_ratios(TIMES)
    assert r["A"] == {"w1": 1.0, "w2": 3.0, "w3": INF, "w4": 1.0}
    assert r["B"] == {"w1": 2.0, "w2": 1.0, "w3": INF, "w4": 5.0}
    assert r["C"] == {"w1": INF, "w2": 1.5, "w3": INF, "w4": 2.0}


def test_profile_by_hand():
    r = performance_ratios(TIMES)
    # rho_A: w1, w4 at 1; w2 at 3; w3 never -> 2/4 on [1, 3), 3/4 from 3 on
    assert profile(r["A"], [1.0, 2.99, 3.0, 100.0]) == [0.5, 0.5, 0.75, 0.75]
    # rho_B: w2 at 1, w1 at 2, w4 at 5 (beyond r_max = 4, still counted by rho itself)
    assert profile(r["B"], [1.0, 1.999, 2.0, 4.0, 5.0]) == [0.25, 0.25, 0.5, 0.5, 0.75]
    assert profile(r["C"], [1.0, 1.5, 2.0]) == [0.0, 0.25, 0.5]


def test_score_by_hand():
    # score = (1 / (r_max - 1)) * integral_1^4 rho(tau) dtau
    # A: 0.5 on [1, 3) and 0.75 on [3, 4]: (2 * 0.5 + 1 * 0.75) / 3 = 1.75 / 3
    # B: 0.25 on [1, 2), 0.5 on [2, 4]: (0.25 + 1.0) / 3 = 1.25 / 3 (w4's ratio 5 > r_max adds nothing)
    # C: 0 on [1, 1.5), 0.25 on [1.5, 2), 0.5 on [2, 4]: (0.125 + 1.0) / 3 = 1.125 / 3
    s = scores(TIMES, r_max=4.0)
    assert s["A"] == pytest.approx(1.75 / 3)
    assert s["B"] == pytest.approx(1.25 / 3)
    assert s["C"] == pytest.approx(1.125 / 3)


def test_score_is_the_area_under_the_profile():
    """The closed form agrees with a numerical integral of the step function."""
    r = performance_ratios(TIMES)
    n = 30000
    for s in r:
        taus = [1 + 3 * (i + 0.5) / n for i in range(n)]  # midpoint rule on [1, 4]
        area = sum(profile(r[s], taus)) * 3 / n
        assert score(r[s], 4.0) == pytest.approx(area / 3, abs=1e-3)


def test_edge_cases():
    # the fastest everywhere scores 1; reaching nothing scores 0; r_max changes the score
    t = {"A": {"w": 10.0}, "B": {"w": 20.0}, "C": {"w": INF}}
    s = scores(t, r_max=4.0)
    assert s == {"A": 1.0, "B": pytest.approx(2 / 3), "C": 0.0}
    assert scores(t, r_max=2.0)["B"] == 0.0  # ratio 2 = r_max: rho jumps at the end, area 0
    # ties share the best ratio 1
    assert performance_ratios({"A": {"w": 5}, "B": {"w": 5}}) == {"A": {"w": 1.0}, "B": {"w": 1.0}}
    with pytest.raises(ValueError, match="r_max"):
        score({"w": 1.0}, r_max=1.0)
    with pytest.raises(ValueError, match="expected"):
        performance_ratios({"A": {"w": 1}, "B": {"v": 1}})
    with pytest.raises(ValueError, match=">= 0 or inf"):
        performance_ratios({"A": {"w": float("nan")}})
