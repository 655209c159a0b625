import math

import pytest

from iclab.config import validate
from iclab.training.curriculum import Curriculum, Schedule


def test_garg_stepwise_schedule():
    s = Schedule(start=5, end=20, shape="step", inc=1, interval=2000)
    assert [s(t) for t in (0, 1999, 2000, 4000, 29_999, 30_000, 10**6)] == [5, 5, 6, 7, 19, 20, 20]
    p = Schedule(start=11, end=41, shape="step", inc=2, interval=2000)
    assert [p(t) for t in (0, 2000, 3999, 30_000, 10**6)] == [11, 13, 13, 41, 41]


def first_step_at(s, value, limit=10**7):
    """The first step at which schedule s shows `value` (binary search; s is monotone here)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if s(mid) >= value else (mid + 1, hi)
    return lo


@pytest.mark.parametrize(
    "s, end_step",
    [
        (Schedule(5, 20, "step", inc=2, interval=500), 8 * 500),  # Yang et al.'s loops T -> b: +2 / 500
        (Schedule(2, 10, "linear", duration=900), 800),  # 9 values, 100 steps each
        (Schedule(2, 10, "sqrt", duration=8100), 6400),  # value i at 8100 * (i / 9)^2
        (Schedule(5, 20, "log", inc=2, interval=500, base=2.0), 500 * (2**8 - 1)),
        (Schedule(1, 10, "log", interval=3000, base=1.1), math.ceil(3000 * (1.1**9 - 1) / 0.1)),
    ],
)
def test_monotone_shapes_hit_start_and_end_at_the_right_steps(s, end_step):
    assert s(0) == s.start
    assert s(end_step - 1) < s.end and s(end_step) == s.end and s(10 * end_step) == s.end
    assert first_step_at(s, s.end) == end_step
    values = [s(t) for t in range(0, end_step + 1, max(1, end_step // 997))]
    assert values == sorted(values)
    assert all((v - s.start) % s.inc == 0 or v == s.end for v in values)  # on the inc grid


def test_hold_times_grow_as_documented():
    # log: level i is held interval * base^i steps -> the levels start at 100, 300, 700, 1500
    lg = Schedule(0, 4, "log", interval=100, base=2.0)
    assert [first_step_at(lg, v) for v in (1, 2, 3, 4)] == [100, 300, 700, 1500]
    # sqrt: value i is reached at duration * (i / 5)^2 for 5 values -> hold times 100, 300, 500, 700, ...
    sq = Schedule(0, 4, "sqrt", duration=2500)
    assert [first_step_at(sq, v) for v in (1, 2, 3, 4)] == [100, 400, 900, 1600]
    # step: every level equally long
    st = Schedule(0, 4, "step", interval=250)
    assert [first_step_at(st, v) for v in (1, 2, 3, 4)] == [250, 500, 750, 1000]


def test_cos_is_a_cycle_between_start_and_end():
    c = Schedule(5, 20, "cos", inc=1, interval=1000)
    assert c(0) == 5 and c(500) == 20 and c(1000) == 5 and c(1500) == 20
    assert c(250) == 13  # 16 values in equal bands of the cosine: half-way up at a quarter period
    assert max(c(t) for t in range(0, 3000, 7)) == 20 and min(c(t) for t in range(0, 3000, 7)) == 5


def test_seed000_log2_never_reaches_max_loops_in_75k_steps():
    """Seed 000's log2 curriculum on loops 5 -> 20 (+2, interval 500) is still below b = 20 at the end of its
    75k training steps (and its dims 1 -> 10, interval 3000, far below 10)."""
    loops = Schedule(5, 20, "log", inc=2, interval=500, base=2.0)
    dims = Schedule(1, 10, "log", inc=1, interval=3000, base=2.0)
    assert loops(74_999) == 19 and dims(74_999) == 5
    assert Schedule(5, 20, "log", inc=2, interval=500, base=1.1)(74_999) == 20


def test_curriculum_from_config_falls_back_to_max():
    cfg = validate(
        {
            "task": {"n_dims": 20, "n_points": 41},
            "curriculum": {"dims": {"start": 5, "end": 20, "inc": 1, "interval": 2000}},
            "training": {"steps": 100},
        }
    )
    cur = Curriculum(cfg)
    assert cur.at(0) == {"dims": 5, "points": 41, "loops": 1, "seq_len": 0}
    assert cur.at(4000)["dims"] == 7
