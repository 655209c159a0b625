"""The logit lens of a token workload: the LM head after every block; the last one is the model itself."""

import json

import pytest
from typer.testing import CliRunner

from iclab.analysis.lens import logit_lens
from iclab.cli import app
from iclab.config import validate
from iclab.runs import train_run


@pytest.fixture(scope="module")
def sort_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lens") / "run"
    cfg = {
        "seed": 0,
        "task": {"name": "sorting", "seq_len": 6, "options": {"vocab": 12}},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16, "loops": 2, "loop_window": 1},
        "training": {"steps": 20, "batch_size": 8, "lr": 3e-3, "device": "cpu"},
        "eval": {"n_prompts": 64},
        "logging": {"log_every": 10, "ckpt_every": 20, "tensorboard": False, "progress": False},
    }
    train_run(validate(cfg), run)
    return run


def test_token_lens_last_layer_is_the_model(sort_run):
    rec = logit_lens(sort_run, n_prompts=64, seed=3, write=False)
    assert rec["layers"] == ["0.0", "0.1", "1.0", "1.1"]  # every block of both loop iterations, 0-based
    assert rec["loss"][-1] == pytest.approx(rec["model_loss"], rel=1e-5)
    assert rec["n_tokens"] == 64 * 6  # the sorted halves only
    assert all(0 <= a <= 1 for a in rec["token_accuracy"])


def test_lens_cli_on_a_token_run(sort_run):
    r = CliRunner().invoke(app, ["lens", str(sort_run), "--n-prompts", "32"])
    assert r.exit_code == 0, r.output
    assert json.loads((sort_run / "lens_nprompts32.json").read_text())["family"] == "sequence"
    assert (sort_run / "lens_nprompts32.png").is_file()
