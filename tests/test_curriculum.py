import pytest

from iclab.config import validate
from iclab.curriculum import Curriculum, Schedule


def test_garg_stepwise_schedule():
    s = Schedule(start=5, end=20, shape="step", inc=1, interval=2000)
    assert [s(t) for t in (0, 1999, 2000, 4000, 29_999, 30_000, 10**6)] == [5, 5, 6, 7, 19, 20, 20]
    p = Schedule(start=11, end=41, shape="step", inc=2, interval=2000)
    assert [p(t) for t in (0, 2000, 3999, 30_000, 10**6)] == [11, 13, 13, 41, 41]


@pytest.mark.parametrize("shape", ["linear", "sqrt", "cos", "log2"])
def test_shaped_schedules_hit_start_and_end(shape):
    s = Schedule(start=2, end=10, shape=shape, inc=1, duration=1000)
    assert s(0) == 2
    assert s(1000) == 10 and s(5000) == 10
    values = [s(t) for t in range(0, 1001, 10)]
    assert values == sorted(values)  # monotone


def test_sqrt_is_ahead_of_linear_and_cos_behind_early():
    lin = Schedule(1, 101, "linear", duration=100)
    sq = Schedule(1, 101, "sqrt", duration=100)
    co = Schedule(1, 101, "cos", duration=100)
    assert sq(25) > lin(25) > co(25)


def test_curriculum_from_config_falls_back_to_max():
    cfg = validate({"task": {"n_dims": 20, "n_points": 41},
                    "curriculum": {"dims": {"start": 5, "end": 20, "inc": 1, "interval": 2000}},
                    "training": {"steps": 100}})
    cur = Curriculum(cfg)
    assert cur.at(0) == {"dims": 5, "points": 41, "loops": 1}
    assert cur.at(4000)["dims"] == 7
