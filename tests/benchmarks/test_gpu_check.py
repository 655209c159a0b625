"""benchmarks/gpu_check.py: the dry mode runs every step's own code on the CPU, so the first GPU run does not
fail on the script itself. The fast test runs the bench step's command line in-process (typer) and stubs the
pytest subprocess; the slow one runs the whole dry mode as a user would (subprocesses included)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from iclab.cli import app

REPO = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_projection_weights_each_curriculum_stage_by_its_steps():
    gc = _gpu_check()
    # stages start at 0, 10, 30; 100 steps: 10 x 1 + 20 x 2 + 70 x 3
    assert gc.project([0, 10, 30], {0: 1.0, 10: 2.0, 30: 3.0}, 100) == pytest.approx(10 + 40 + 210)
    assert gc.project([0, 10, 30], {0: 1.0, 10: 2.0, 30: 3.0}, 20) == pytest.approx(10 + 20)


def test_garg_stage_starts_follow_the_reference_curriculum():
    from iclab.config import load_config

    cfg = load_config(REPO / "configs/garg/linear_regression.yaml")
    # dims 5 -> 20 and points 11 -> 41, both every 2000 steps: 15 changes, the last at step 30000
    assert _gpu_check()._stage_starts(cfg) == list(range(0, 30001, 2000))


def test_dry_mode_runs_every_step(tmp_path, monkeypatch):
    gc = _gpu_check()
    calls = []

    def fake_run(name, cmd, timeout, env=None):
        calls.append(cmd)
        if name.startswith("bench"):  # the real command line, in-process: `python -m iclab bench ARGS`
            i = cmd.index("bench")
            res = CliRunner().invoke(app, cmd[i:])
            return {"step": name, "cmd": cmd, "rc": res.exit_code, "ok": res.exit_code == 0, "output_tail": res.output}
        return {"step": name, "cmd": cmd, "rc": 0, "ok": True, "output_tail": "1 passed"}

    monkeypatch.setattr(gc, "run_cmd", fake_run)
    out = tmp_path / "check.json"
    assert gc.main(["--dry", "--out", str(out), "--slice-s", "0.4"]) == 0
    res = json.loads(out.read_text())
    assert res["dry"] and res["ok"] and res["machine"]["torch"] == torch.__version__
    steps = {s["step"]: s for s in res["steps"]}
    assert list(steps) == ["tests", "bench", "ddp", "garg"]
    assert "pytest" in calls[0] and "-k" in calls[0]
    bench = steps["bench"]
    assert [r["name"] for r in bench["records"]] == ["quickstart[training.dtype=float32,training.compile=false]"]
    assert bench["mfu_table"]["rows"]["quickstart"]["float32 eager"]["steps_per_s"] > 0
    assert steps["ddp"]["skipped"] == "dry run"
    garg = steps["garg"]
    assert garg["stage_starts"] == list(range(0, 30001, 2000))
    assert garg["sequential"]["steps"] >= 5 and garg["projected_500k_s"] > 0
    # the projection is the stage-weighted sum of the measured times
    per = {int(k): v for k, v in garg["sec_per_step_at_stage"].items()}
    assert garg["projected_500k_s"] == pytest.approx(gc.project(garg["stage_starts"], per, 500_000))


def test_without_cuda_and_without_dry_it_refuses(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    assert _gpu_check().main(["--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_gpu_check_sh_dry_end_to_end(tmp_path):
    out = tmp_path / "check.json"
    env = {"PY": sys.executable, "GPU_CHECK_DRY": "1", "PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [str(REPO / "benchmarks/gpu_check.sh"), "--out", str(out), "--slice-s", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(out.read_text())
    assert res["ok"] and [s["step"] for s in res["steps"]] == ["tests", "bench", "ddp", "garg"]
    assert "1 passed" in res["steps"][0]["summary"]
