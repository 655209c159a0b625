"""The classification workload (digits MLP, logistic regression): data split, batches, model, metrics, training."""

import json

import pytest
import torch

from iclab.config import ConfigError, load_config, validate
from iclab.runs import train_run
from iclab.workloads import make_workload

DIGITS = {
    "seed": 0,
    "task": {"name": "classification", "options": {"dataset": "digits", "hidden": [32, 32]}},
    "training": {
        "steps": 120,
        "batch_size": 64,
        "lr": 3e-3,
        "optimizer": {"name": "adamw"},
        "device": "cpu",
        "threads": 1,
        "grad_clip": None,
    },
    "logging": {"log_every": 40, "ckpt_every": 120, "tensorboard": False, "progress": False},
}


def _cfg(**options):
    d = json.loads(json.dumps(DIGITS))
    d["task"]["options"].update(options)
    return validate(d)


def test_split_is_fixed_disjoint_and_complete():
    w = make_workload(_cfg())
    assert (len(w.x_train), len(w.x_val)) == (1438, 359) and w.n_features == 64 and w.n_classes == 10
    w2 = make_workload(_cfg())
    assert torch.equal(w.x_val, w2.x_val) and torch.equal(w.y_train, w2.y_train)  # fixed
    rows = lambda x: {tuple(r) for r in x.tolist()}  # noqa: E731
    assert len(rows(w.x_train) & rows(w.x_val)) < 5  # load_digits holds a few duplicate images; the rows are disjoint
    assert not torch.equal(make_workload(_cfg(split_seed=1)).x_val, w.x_val)
    assert 0.0 <= float(w.x_train.min()) and float(w.x_train.max()) <= 1.0


def test_batches_are_a_function_of_seed_and_step():
    w = make_workload(_cfg())
    a, b = w.batch(3, {}, torch.device("cpu")), w.batch(3, {}, torch.device("cpu"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].shape == (64, 64)
    assert not torch.equal(w.batch(4, {}, torch.device("cpu"))[1], a[1])
    full = make_workload(validate({**DIGITS, "training": {**DIGITS["training"], "batch_size": 5000}}))
    assert full.batch(0, {}, torch.device("cpu"))[0].shape[0] == 1438  # full batch


def test_models_mlp_and_logistic():
    m = make_workload(_cfg()).build_model()
    names = [n for n, _ in m.named_parameters()]
    assert names == [
        "read_in.weight",
        "read_in.bias",
        "blocks.0.weight",
        "blocks.0.bias",
        "read_out.weight",
        "read_out.bias",
    ]
    lr = make_workload(_cfg(hidden=[])).build_model()
    assert [n for n, _ in lr.named_parameters()] == ["read_out.weight", "read_out.bias"]  # logistic regression
    assert lr(torch.zeros(3, 64)).shape == (3, 10)


def test_synthetic_logistic_data():
    w = make_workload(_cfg(dataset="synthetic", hidden=[], n_samples=1000, n_features=8, condition=100.0))
    assert w.n_classes == 2 and w.n_features == 8 and len(w.x_val) == 200
    # standardized with the training statistics (the default for synthetic)
    assert w.x_train.mean(0).abs().max() < 1e-4 and (w.x_train.std(0) - 1).abs().max() < 1e-2
    # the labels follow the logistic model: the true w* beats predicting the base rate by a wide margin
    ref = w.true_w_val_loss()
    p = w.y_val.float().mean().item()
    base = -(p * torch.log(torch.tensor(p)) + (1 - p) * torch.log(torch.tensor(1 - p))).item()
    assert 0.1 < ref < base - 0.2
    raw = make_workload(_cfg(dataset="synthetic", hidden=[], n_samples=1000, n_features=8, standardize=False))
    v = raw.x_train.var(0)
    assert v.max() / v.min() > 30  # condition 100 in the variances (sampled)


def test_trains_and_logs_validation(tmp_path):
    res = train_run(_cfg(), tmp_path / "run")
    recs = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [40, 80, 120]
    assert all("val/loss" in r and "val/accuracy" in r and r["train_seconds"] > 0 for r in recs)
    assert recs[-1]["val/accuracy"] > 0.85  # 10 classes: chance is 0.1
    ev = res["eval"]
    assert ev["val"]["accuracy"] == pytest.approx(recs[-1]["val/accuracy"]) and ev["n_val"] == 359
    assert (tmp_path / "run" / "classification.png").is_file() and (tmp_path / "run" / "eval.json").is_file()
    # the CLI: re-evaluation works, transformer-only analyses refuse in one line
    from typer.testing import CliRunner

    from iclab.cli import app

    r = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--tag", "again"])
    assert r.exit_code == 0 and "val accuracy" in r.output and (tmp_path / "run" / "eval_again.json").is_file()
    r = CliRunner().invoke(app, ["lens", str(tmp_path / "run")])
    assert r.exit_code == 2 and "transformer runs" in r.output


def test_config_errors_name_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("task: {name: classification, options: {dataset: mnist}}\n")
    with pytest.raises(ConfigError, match="dataset"):
        load_config(p)
    p.write_text("task: {name: classification, options: {hidden: [0]}}\n")
    with pytest.raises(ConfigError, match="hidden"):
        load_config(p)
    p.write_text("task: {name: classification}\ncurriculum: {loops: {start: 1, end: 1}}\n")
    with pytest.raises(ConfigError, match="curriculum"):
        load_config(p)
