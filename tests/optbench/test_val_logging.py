"""What optbench reads from metrics.jsonl: validation metrics of regression and sorting (logging.val_examples)
and the training-only clock train_seconds (also across a resume)."""

import json

from iclab.config import validate
from iclab.runs import train_run
from iclab.training import checkpoint as ck


def _metrics(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_regression_val_error(tiny_cfg_dict, tmp_path):
    train_run(validate(tiny_cfg_dict), tmp_path / "off", evaluate_after=False)
    assert not any("val/error" in r for r in _metrics(tmp_path / "off"))  # off by default
    tiny_cfg_dict["logging"]["val_examples"] = 64
    train_run(validate(tiny_cfg_dict), tmp_path / "on", evaluate_after=False)
    recs = _metrics(tmp_path / "on")
    assert all(0.0 < r["val/error"] < 5.0 for r in recs)
    assert [r["loss"] for r in recs] == [
        r["loss"] for r in _metrics(tmp_path / "off")
    ]  # logging does not touch training
    train_run(validate(tiny_cfg_dict), tmp_path / "again", evaluate_after=False)
    assert [r["val/error"] for r in _metrics(tmp_path / "again")] == [r["val/error"] for r in recs]  # fixed prompts


def test_sorting_val_metrics(tmp_path):
    cfg = validate(
        {
            "task": {"name": "sorting", "seq_len": 4, "options": {"vocab": 8}},
            "model": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 8},
            "training": {"steps": 10, "batch_size": 8, "device": "cpu"},
            "logging": {"log_every": 5, "ckpt_every": 10, "val_examples": 32, "tensorboard": False, "progress": False},
        }
    )
    train_run(cfg, tmp_path / "s", evaluate_after=False)
    for r in _metrics(tmp_path / "s"):
        assert 0.0 <= r["val/exact_match"] <= r["val/token_accuracy"] <= 1.0 and r["val/loss"] > 0


def test_train_seconds_grows_and_survives_resume(tiny_cfg_dict, tmp_path):
    run = tmp_path / "r"
    train_run(validate(tiny_cfg_dict), run, evaluate_after=False)
    secs = [r["train_seconds"] for r in _metrics(run)]
    assert all(b > a for a, b in zip(secs, secs[1:])) and secs[0] > 0
    # checkpoints do not hold the clock (they stay bit-for-bit reproducible); a resume from step 10 continues
    # from the value logged at step 10
    assert "train_seconds" not in ck.load_checkpoint(ck.checkpoint_path(run / "checkpoints", 10))["trainer"]
    (run / "model.safetensors").unlink()
    ck.checkpoint_path(run / "checkpoints", 20).unlink()
    train_run(None, run, resume=True, evaluate_after=False)
    resumed = [r["train_seconds"] for r in _metrics(run)]
    assert resumed[:2] == secs[:2] and resumed[2] > secs[1] and len(resumed) == 4
