"""Double descent (iclab/analysis/double_descent.py): the min-norm random-features error peaks where the width
equals the number of samples (and the number of samples equals the width), the polynomial one at degree m - 1."""

import json

import numpy as np
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from iclab.analysis.double_descent import legendre_features, polynomial_sweep, sample_sweep, width_sweep
from iclab.cli import app


def test_random_features_peak_at_width_equal_to_samples():
    with threadpool_limits(1):
        r = width_sweep(40, trials=6, seed=0)
    err = np.array(r["test_error"])
    assert 0.8 * 40 <= r["peak_at"] <= 1.25 * 40
    assert err.max() > 10 * err[0] and err.max() > 10 * err[-1]  # a peak, then a second descent
    past = [e for w, e in zip(r["widths"], err) if w >= 4 * 40]
    assert min(past) < err.max() / 10
    train = dict(zip(r["widths"], r["train_error"]))
    below = max(w for w in r["widths"] if w <= 20)
    assert train[40] < 1e-12 and train[below] > 1e-3  # interpolates from the threshold on


def test_sample_wise_peak_at_samples_equal_to_width():
    with threadpool_limits(1):
        r = sample_sweep(30, trials=6, seed=1)
    assert 0.8 * 30 <= r["peak_at"] <= 1.25 * 30
    assert max(r["test_error"]) > 10 * r["test_error"][-1]


def test_polynomial_peak_at_the_interpolation_threshold():
    with threadpool_limits(1):
        r = polynomial_sweep(m=10, max_degree=40, trials=4, seed=0)
    assert r["peak_at"] == 9 == r["threshold"]
    med = r["test_error_median"]
    assert med[40] < med[9] / 100
    V = legendre_features(np.array([1.0]), 3)  # P_j(1) = 1, scaled by 1/(j+1)
    np.testing.assert_allclose(V[0], [1, 1 / 2, 1 / 3, 1 / 4])


def test_cli_writes_json_and_figures(tmp_path):
    res = CliRunner().invoke(
        app, ["dynamics", "double-descent", "--out", str(tmp_path), "--trials", "2", "--n-train", "20", "--width", "20"]
    )
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "double_descent.json").read_text())
    assert rec["width_sweep"]["threshold"] == 20
    assert (tmp_path / "double_descent.png").is_file() and (tmp_path / "double_descent_poly.png").is_file()
