"""Evaluation under shifts / on other classes: equivalences with the standard evaluation, and the CLI."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.evaluation.regression import evaluate
from iclab.evaluation.shift_eval import evaluate_shift, query_rows
from iclab.evaluation.shifts import make_shift
from iclab.models import make_model
from iclab.workloads.regression.functions import make_task

runner = CliRunner()


def tiny_model(n_dims=3):
    torch.manual_seed(0)
    cfg = validate(
        {
            "task": {"n_dims": n_dims, "n_points": 7},
            "model": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32},
        }
    )
    return make_model(cfg.model, "regression", n_dims=n_dims)


def test_standard_shift_equals_the_standard_evaluation():
    model, task = tiny_model(), make_task("linear_regression", 3)
    kw = dict(n_prompts=30, n_points=7, baselines=["least_squares", "averaging"], seed=4, batch_size=8)
    a = evaluate(model, task, **kw)
    b = evaluate_shift(model, task, make_shift("standard"), **kw)
    assert a["model"] == b["model"] and a["baselines"] == b["baselines"]
    assert b["zero_predictor"]["mean"][0] > 0


def test_query_shift_predicts_from_prefix_and_query():
    """Row (b, i) of the expansion predicts y at i from the first i points and query i: compare against
    explicit forward passes on the cut prompt."""
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(1)
    xs, xq = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    ys, yq = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    rx, ry = query_rows(xs, ys, xq, yq)
    with torch.no_grad():
        pred = model.predict(rx, ry).reshape(2, 5, 5).diagonal(dim1=1, dim2=2)
        for i in range(5):
            cut_x = torch.cat([xs[:, :i], xq[:, i : i + 1]], 1)
            cut_y = torch.cat([ys[:, :i], yq[:, i : i + 1]], 1)
            assert torch.allclose(pred[:, i], model.predict(cut_x, cut_y)[:, -1], atol=1e-5)


def test_least_squares_is_exact_under_query_shifts():
    """Noiseless linear prompts: least squares predicts any query exactly once it has d points, whatever
    the query; so its error vanishes past d under orthants / overlapping queries."""
    model, task = tiny_model(), make_task("linear_regression", 3)
    for name in ("orthants", "overlapping_query"):
        ev = evaluate_shift(
            model, task, make_shift(name), n_prompts=20, n_points=7, baselines=["least_squares"], batch_size=35
        )
        assert max(ev["baselines"]["least_squares"]["mean"][4:]) < 1e-6
    ev = evaluate_shift(
        model, task, make_shift("orthogonal_query"), n_prompts=20, n_points=7, baselines=["least_squares"]
    )
    assert ev["n_points"] == 3
    # a query orthogonal to the prefix: min-norm least squares predicts 0 (error = the zero predictor's)
    assert ev["baselines"]["least_squares"]["mean"] == pytest.approx(ev["zero_predictor"]["mean"], rel=1e-4)


@pytest.fixture(scope="module")
def pooled_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shift_run")
    cfg = {
        "seed": 0,
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7, "options": {"pool_size": 4}},
        "model": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32},
        "training": {"steps": 10, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
        "eval": {"n_prompts": 20, "batch_size": 40},
        "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
    }
    p = tmp / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp / "run"
    r = runner.invoke(app, ["train", str(p), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_pooled_run_eval_includes_memorization(pooled_run):
    ev = json.loads((pooled_run / "eval.json").read_text())
    assert list(ev["baselines"]) == ["least_squares", "knn", "averaging", "memorization"]
    # on fresh functions memorization cannot be exact; on the training pool it is (after one example)
    assert ev["baselines"]["memorization"]["mean"][5] > 0.05
    r = runner.invoke(app, ["eval", str(pooled_run), "--shift", "train_pool"])
    assert r.exit_code == 0, r.output
    tp = json.loads((pooled_run / "eval_train_pool.json").read_text())
    assert max(tp["baselines"]["memorization"]["mean"][2:]) < 1e-6


def test_cli_shift_task_and_all_shifts(pooled_run):
    r = runner.invoke(app, ["eval", str(pooled_run), "--shift", "scaled_x", "--shift-option", "factor=3"])
    assert r.exit_code == 0, r.output
    ev = json.loads((pooled_run / "eval_scaled_x_factor3.json").read_text())
    assert ev["shift"] == "scaled_x" and ev["shift_options"] == {"factor": 3.0}
    assert ev["zero_predictor"]["mean"][3] == pytest.approx(9.0, rel=0.5)  # E[y^2] grows by factor^2
    assert (pooled_run / "error_vs_examples_scaled_x_factor3.png").is_file()

    r = runner.invoke(app, ["eval", str(pooled_run), "--task", "decision_tree", "--task-option", "depth=2"])
    assert r.exit_code == 0, r.output
    ev = json.loads((pooled_run / "eval_standard_on_decision_tree.json").read_text())
    assert ev["eval_task"] == "decision_tree" and ev["trained_task"] == "linear_regression"
    assert ev["normalization"] == 1.0 and "memorization" not in ev["baselines"]

    r = runner.invoke(app, ["eval", str(pooled_run), "--all-shifts", "--n-prompts", "6"])
    assert r.exit_code == 0, r.output
    assert (pooled_run / "shifts_nprompts6.png").stat().st_size > 10000  # a non-default option names the files
    for name in ("standard", "skewed", "orthants", "orthogonal_query", "train_pool"):
        assert json.loads((pooled_run / f"eval_{name}_nprompts6.json").read_text())["n_prompts"] == 6


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--shift", "nope"], "unknown shift 'nope'"),
        (["--shift", "scaled_x", "--shift-option", "factr=2"], "factr"),
        (["--shift", "scaled_x", "--shift-option", "factor"], "key=value"),
        (["--task", "decision_tree", "--task-option", "depth=0"], "depth"),
        (["--task", "decision_tree", "--shift", "train_pool"], "training pool"),
        (["--baselines", "least_squares,nope"], "unknown baseline 'nope'"),
    ],
)
def test_cli_errors_are_one_line(pooled_run, args, msg):
    r = runner.invoke(app, ["eval", str(pooled_run), *args])
    assert r.exit_code == 2, r.output
    assert msg in r.output and "Traceback" not in r.output
