"""Ridge probes, the probe/lens experiments and their CLI on a tiny trained run."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from iclab.analysis.lens import lens_predictions
from iclab.analysis.probes import fit_ridge_probe, predict, r2_score


def _split(rng, N, p, k, noise):
    H = rng.normal(size=(N, p)) * rng.uniform(0.1, 10, size=p) + rng.normal(size=p)
    A = rng.normal(size=(p, k))
    return H, H @ A + 3.0 + noise * rng.normal(size=(N, k))


def test_probe_recovers_planted_linear_target():
    rng = np.random.default_rng(0)
    H, Y = _split(rng, 3000, 12, 3, 0.0)
    W, lam, r2v = fit_ridge_probe(H[:2000], Y[:2000], H[2000:2500], Y[2000:2500])
    assert r2v > 0.999 and r2_score(Y[2500:], predict(W, H[2500:])) > 0.999
    assert W.shape == (13, 3)


def test_probe_scores_zero_on_noise():
    rng = np.random.default_rng(1)
    H, Y = rng.normal(size=(3000, 20)), rng.normal(size=(3000, 2))
    W, lam, _ = fit_ridge_probe(H[:2000], Y[:2000], H[2000:2500], Y[2000:2500])
    assert abs(r2_score(Y[2500:], predict(W, H[2500:]))) <= 0.05


def test_penalty_is_the_validation_argmax_by_brute_force():
    rng = np.random.default_rng(2)
    H, Y = _split(rng, 260, 30, 2, 5.0)  # few rows, noisy: a real trade-off
    Ht, Yt, Hv, Yv = H[:60], Y[:60], H[60:], Y[60:]
    lambdas = [1e-6, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    W, lam, r2v = fit_ridge_probe(Ht, Yt, Hv, Yv, lambdas)
    mu, sd = Ht.mean(0), Ht.std(0)
    Hs, Hvs = (Ht - mu) / sd, (Hv - mu) / sd
    scores = []
    for penalty in lambdas:  # independent: solve the normal equations directly
        B = np.linalg.solve(Hs.T @ Hs / len(Hs) + penalty * np.eye(30), Hs.T @ (Yt - Yt.mean(0)) / len(Hs))
        P = Hvs @ B + Yt.mean(0)
        scores.append(np.mean(1 - ((Yv - P) ** 2).sum(0) / ((Yv - Yv.mean(0)) ** 2).sum(0)))
    assert lam == lambdas[int(np.argmax(scores))] and lam > 1e-6
    assert r2v == pytest.approx(max(scores), abs=1e-9)
    np.testing.assert_allclose(
        predict(W, Hv),
        Hvs @ np.linalg.solve(Hs.T @ Hs / len(Hs) + lam * np.eye(30), Hs.T @ (Yt - Yt.mean(0)) / len(Hs)) + Yt.mean(0),
        atol=1e-8,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from iclab.config import validate
    from iclab.runs import train_run

    run = tmp_path_factory.mktemp("probe") / "run"
    cfg = validate(
        {
            "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
            "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
            "training": {"steps": 20, "device": "cpu"},
            "eval": {"n_prompts": 64},
            "logging": {"tensorboard": False, "progress": False},
        }
    )
    train_run(cfg, run)
    return run


def test_lens_of_last_layer_is_the_model_prediction(tiny_run):
    from iclab.runs import load_run_config, load_run_model

    cfg = load_run_config(tiny_run)
    model = load_run_model(tiny_run, cfg, "cpu")
    xs, ys = torch.randn(50, 7, 3), torch.randn(50, 7)
    labels, lens, preds = lens_predictions(model, xs, ys, batch=20)
    assert labels == ["0", "1"]  # 0-based, as surgery numbers blocks and lens.shape == (2, 50, 7)
    torch.testing.assert_close(lens[-1], preds, rtol=0, atol=1e-6)
    assert (lens[0] - preds).abs().max() > 1e-4


def test_cli_probe_and_lens_end_to_end(tiny_run):
    from iclab.cli import app

    r = CliRunner().invoke(
        app,
        [
            "probe",
            str(tiny_run),
            "--target",
            "true_w",
            "--target",
            "gd_1_pred",
            "--target",
            "newton_2",
            "--n-prompts",
            "200",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "gd_1_pred" in r.output and "random init" in r.output
    rec = json.loads((tiny_run / "probes_nprompts200.json").read_text())
    assert rec["layers"] == ["embed", "0", "1"] and rec["positions"] == list(range(1, 7))
    for key in ("trained", "random_init"):
        for t in ("true_w", "gd_1_pred", "newton_2"):
            assert len(rec[key][t]["r2"]) == 3 and all(np.isfinite(rec[key][t]["r2"]))
    assert (tiny_run / "probes_nprompts200.png").stat().st_size > 1000
    r = CliRunner().invoke(app, ["lens", str(tiny_run), "--n-prompts", "100"])
    assert r.exit_code == 0, r.output
    lens = json.loads((tiny_run / "lens_nprompts100.json").read_text())
    assert len(lens["error_by_position"]) == 2 and len(lens["error_by_position"][0]) == 7
    np.testing.assert_allclose(lens["error_by_position"][-1], lens["model_error_by_position"], rtol=1e-5)
    assert (tiny_run / "lens_nprompts100.png").stat().st_size > 1000


def test_cli_bad_target_and_task(tiny_run, tmp_path):
    from iclab.cli import app

    r = CliRunner().invoke(app, ["probe", str(tiny_run), "--target", "lasso"])
    assert r.exit_code == 2 and "unknown probe target 'lasso'" in r.output and "newton_<k>" in r.output
    run = tmp_path / "quad"
    run.mkdir()
    (run / "config.yaml").write_text(
        (tiny_run / "config.yaml").read_text().replace("name: linear_regression", "name: quadratic_regression")
    )
    r = CliRunner().invoke(app, ["probe", str(run), "--target", "true_w"])
    assert r.exit_code == 2 and "need a linear-regression task" in r.output, r.output
