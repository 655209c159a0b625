"""Run directories written before the package was reorganized (iclab 0.1, commit c1ac165) still work:
tests/data/run_v0_1 is such a run (linear regression, 2 layers, width 16, 20 steps, its step-10
checkpoint and its final weights), evaluated and resumed with today's code."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from iclab.runs import evaluate_run, train_run

OLD = Path(__file__).resolve().parents[1] / "data" / "run_v0_1"


def test_old_run_evaluates_to_the_same_numbers(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD, run)
    ev = evaluate_run(run, tag="again")
    saved = json.loads((OLD / "eval.json").read_text())
    assert ev["model"]["mean"] == saved["model"]["mean"]
    assert ev["baselines"] == saved["baselines"]


def test_old_run_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD, run)
    (run / "model.safetensors").unlink()
    train_run(None, run, resume=True, evaluate_after=False)
    a, b = load_file(str(OLD / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
