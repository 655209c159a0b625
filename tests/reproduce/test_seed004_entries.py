"""The criteria of the seed-004 command entries (double descent, initialization, heavy tail) on hand-made records."""

import json
import math

import pytest

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Run
from iclab.reproduce.verdicts import CONTRADICTED, INCONCLUSIVE, SUPPORTED, judge


def status(entry, runs):
    return judge(entry.tests, entry.check(runs)).status


def _runs(tmp_path, label, name, records):
    runs = []
    for s, rec in enumerate(records):
        d = tmp_path / f"{label.replace(' ', '_')}{s}"
        d.mkdir(parents=True)
        (d / name).write_text(json.dumps(rec))
        runs.append(Run(label, s, d, None))
    return {label: runs}


def _sweep(xs, errs, thr, xkey):
    i = max(range(len(errs)), key=errs.__getitem__)
    return {xkey: xs, "test_error": errs, "threshold": thr, "peak_at": xs[i], "peak_error": errs[i]}


def _dd(peak_x=100, peak=50.0):
    xs = [10, 50, 80, peak_x, 150, 1000] if peak_x not in (10, 50, 80, 150, 1000) else [10, 50, 80, 150, 1000]
    errs = [1.0 if x != peak_x else peak for x in xs]
    return {
        "trials": 10,
        "noise": 0.5,
        "width_sweep": _sweep(xs, errs, 100, "widths"),
        "sample_sweep": _sweep(xs, errs, 100, "n_samples"),
        "polynomial": {"m": 15, "threshold": 14, "peak_at": 14},
    }


def test_double_descent_criterion(tmp_path):
    entry = REPRODUCTIONS.get("seed004-double-descent")
    good = _runs(tmp_path, "random features", "double_descent.json", [_dd(), _dd(110), _dd(peak=60.0)])
    v = judge(entry.tests, entry.check(good))
    assert v.status == SUPPORTED, [t["line"] for t in v.tests]
    assert v.per_seed["width peak / threshold"] == [1.0, 1.1, 1.0]
    off = [_dd(150)] * 3  # the peak 1.5x past the threshold on every seed
    assert status(entry, _runs(tmp_path / "a", "random features", "double_descent.json", off)) == CONTRADICTED
    low = [_dd(peak=5.0)] * 3  # a peak only 5x the ends
    assert status(entry, _runs(tmp_path / "b", "random features", "double_descent.json", low)) == CONTRADICTED
    assert status(entry, _runs(tmp_path / "c", "random features", "double_descent.json", [_dd()])) == INCONCLUSIVE
    entry.figure(good, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0


def _init(kaiming_end, naive_end):
    runs = []
    for depth in (20, 50):
        for act in ("relu", "tanh"):
            for init, end in (
                ("naive(0.01)", naive_end),
                ("naive(1)", float("nan")),
                ("xavier", 2.0),
                ("kaiming", kaiming_end),
            ):
                runs.append(
                    {
                        "depth": depth,
                        "activation": act,
                        "init": init,
                        "steps": [0, 10, 20],
                        "loss": [2.3, (2.3 + end) / 2, end],
                    }
                )
    return {"chance_loss": math.log(10), "width": 64, "optimizer": "SGD", "runs": runs}


def test_init_criterion(tmp_path):
    entry = REPRODUCTIONS.get("seed004-init")
    good = _runs(tmp_path, "deep MLPs", "initialization.json", [_init(1.5, 2.25), _init(1.8, 2.28), _init(1.6, 2.27)])
    assert status(entry, good) == SUPPORTED
    # Kaiming did not train on one seed: no longer decided / the naive init trained: contradicted
    one_stuck = [_init(1.5, 2.25), _init(1.5, 2.26), _init(2.2, 2.25)]
    assert status(entry, _runs(tmp_path / "a", "deep MLPs", "initialization.json", one_stuck)) == INCONCLUSIVE
    trained = [_init(1.5, 1.9), _init(1.5, 1.8), _init(1.5, 1.85)]
    assert status(entry, _runs(tmp_path / "b", "deep MLPs", "initialization.json", trained)) == CONTRADICTED
    entry.figure(good, tmp_path / "fig.png")  # naive(1)'s NaN curve is left out, not drawn as a gap
    assert (tmp_path / "fig.png").stat().st_size > 0


def _tail(sgd_rare, adam_rare, frequent=0.05):
    steps = [0, 50, 100]
    per = lambda rare: [[6.0, 6.0], [frequent * 2, rare * 2], [frequent, rare]]  # noqa: E731
    return {
        "steps_recorded": steps,
        "buckets": [{}, {}],
        "classes": 500,
        "initial_loss": math.log(500),
        "runs": {"sgd": {"lr": 0.3, "per_bucket": per(sgd_rare)}, "adam": {"lr": 0.03, "per_bucket": per(adam_rare)}},
        "final_bucket_loss": {"sgd": [frequent, sgd_rare], "adam": [frequent, adam_rare]},
    }


def test_heavy_tail_criterion(tmp_path):
    entry = REPRODUCTIONS.get("seed004-heavy-tail")
    good = _runs(tmp_path, "Zipf classes", "heavy-tail.json", [_tail(3.0, 0.4), _tail(2.5, 0.5), _tail(2.8, 0.45)])
    v = judge(entry.tests, entry.check(good))
    assert v.status == SUPPORTED and v.numbers["ratio"] == [3.0 / 0.4, 2.5 / 0.5, 2.8 / 0.45]
    # the geometric mean ratio: exp(mean log) of 7.5, 5, 6.22
    assert math.exp(v.tests[2]["effect"]) == pytest.approx(math.prod([7.5, 5.0, 2.8 / 0.45]) ** (1 / 3))
    twice = [_tail(1.0, 0.5), _tail(1.1, 0.5), _tail(0.9, 0.5)]  # SGD only ~2x Adam on the rarest classes
    assert status(entry, _runs(tmp_path / "a", "Zipf classes", "heavy-tail.json", twice)) == CONTRADICTED
    unlearned = [_tail(3.0, 0.4, 0.7)] * 3  # the frequent group at 0.7 > 0.1 ln 500
    assert status(entry, _runs(tmp_path / "b", "Zipf classes", "heavy-tail.json", unlearned)) == CONTRADICTED
    entry.figure(good, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0
