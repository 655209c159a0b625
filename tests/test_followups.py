"""Follow-ups found by trying the project as a new user: an empty config file, a CUDA run evaluated
on a CPU-only machine."""

import pytest
import torch
import yaml
from _faultkit import cfg_dict
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import ConfigError, load_config, validate
from iclab.runs import train_run


def test_an_empty_config_file_is_an_error_not_a_paper_scale_run(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty)
    r = CliRunner().invoke(app, ["train", str(empty), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "is empty" in r.output and not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_run_is_evaluated_on_the_cpu_with_a_warning(tmp_path):
    run = tmp_path / "run"
    train_run(validate(cfg_dict(training={"steps": 10})), run, evaluate_after=False)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["training"]["device"] = "cuda"  # as if it had been trained on a GPU machine
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["eval", str(run)])
    assert r.exit_code == 0, r.output
    assert "loading the run on the CPU instead" in r.output and (run / "eval.json").is_file()


def test_error_curves_say_what_the_error_is_divided_by():
    """The tree task is normalized by 1, sparse by s, noisy by d + sigma^2: the y label must not say d."""
    from iclab.evaluation.plots import error_label

    assert error_label({"normalization": 1.0}) == "squared error / 1  (1 = predicting 0)"
    assert error_label({"normalization": 5.25}).startswith("squared error / 5.25")
    assert error_label({}) == "normalized squared error"
