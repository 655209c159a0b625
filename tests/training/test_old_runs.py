"""Run directories written before the package was reorganized (iclab 0.1, commit c1ac165) still work:
tests/data/run_v0_1 is such a run (linear regression, 2 layers, width 16, 20 steps, its step-10
checkpoint and its final weights), evaluated and resumed with today's code."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from iclab.runs import evaluate_run, train_run

OLD = Path(__file__).resolve().parents[1] / "data" / "run_v0_1"


def test_old_run_evaluates_to_the_same_numbers(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD, run)
    ev = evaluate_run(run, tag="again")
    saved = json.loads((OLD / "eval.json").read_text())
    # the same numbers up to float32 rounding: another CPU's kernels (AVX2 vs AVX-512) round differently
    assert ev["model"]["mean"] == pytest.approx(saved["model"]["mean"], rel=1e-6, abs=1e-9)
    assert ev["baselines"].keys() == saved["baselines"].keys()
    for name, b in saved["baselines"].items():
        assert ev["baselines"][name]["mean"] == pytest.approx(b["mean"], rel=1e-6, abs=1e-9)


def test_old_run_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    """Resumed twice on this machine: bit for bit the same; against the weights saved on the machine that made
    the run: equal up to float32 rounding (another CPU's kernels round differently, ~1e-6 after 10 steps)."""
    finals = []
    for name in ("a", "b"):
        run = tmp_path / name
        shutil.copytree(OLD, run)
        (run / "model.safetensors").unlink()
        train_run(None, run, resume=True, evaluate_after=False)
        finals.append(load_file(str(run / "model.safetensors")))
    saved = load_file(str(OLD / "model.safetensors"))
    a, b = finals
    assert a.keys() == b.keys() == saved.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], saved[k], rtol=0, atol=1e-5) for k in a)
