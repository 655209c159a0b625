"""The engine's other backends: `iclab compare --backend local`, the persistent pool, submitit's local
executor (the SLURM path) and a local Ray cluster (all slow: each starts its own worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.experiments import Job, run_many

TINY = {
    "seed": 0,
    "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
    "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
    "training": {"steps": 10, "batch_size": 8, "lr": 1.0e-3, "device": "cpu", "threads": 1},
    "eval": {"n_prompts": 20, "batch_size": 20, "baselines": ["least_squares"]},
    "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
}


@pytest.mark.slow  # ~40 s on a loaded 2-core machine (a worker process, then compare's peak-FLOP/s measurement)
def test_compare_trains_missing_runs_through_the_local_backend(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "cmp"
    r = CliRunner().invoke(
        app, ["compare", str(cfg), "--seeds", "1", "--out", str(out), "--backend", "local", "--workers", "2"]
    )
    assert r.exit_code == 0, r.output
    run = out / "a" / "seed0"
    assert "local backend: 1 run(s)" in r.output and f"{run}: done" in r.output  # trained by the pool, then read
    assert (out / "a" / "seed0.log").is_file() and json.loads((out / "compare.json").read_text())["configs"]["a"][
        "values"
    ]
    r = CliRunner().invoke(app, ["compare", str(cfg), "--seeds", "1", "--out", str(out)])
    assert r.exit_code == 0 and f"{run}: finished, reused" in r.output and "training" not in r.output
    r = CliRunner().invoke(app, ["compare", str(cfg), "--seeds", "1", "--out", str(out), "--backend", "nope"])
    assert r.exit_code == 2 and "--backend 'nope'" in r.output


def _jobs(tmp_path: Path) -> list[Job]:
    bad = validate({**TINY, "training": {**TINY["training"], "lr": 1e6, "grad_clip": None}})
    return [Job(validate({**TINY, "seed": s}), tmp_path / f"seed{s}") for s in (0, 1)] + [Job(bad, tmp_path / "bad")]


def _check(tmp_path: Path, res) -> None:
    assert [r.state for r in res] == ["done", "done", "failed"], res
    assert "non-finite loss" in res[2].error
    for s in (0, 1):
        assert (tmp_path / f"seed{s}" / "eval.json").is_file()


@pytest.mark.slow
def test_pool_backend_trains_in_persistent_workers(tmp_path):
    lines = []
    res = run_many(_jobs(tmp_path), backend="pool", workers=2, log=lines.append, options={"threads": 1})
    _check(tmp_path, res)
    assert "pool backend: 3 run(s), 2 worker process(es) x 1 thread(s)" in lines


@pytest.mark.slow
def test_slurm_backend_with_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit")
    res = run_many(
        _jobs(tmp_path), backend="slurm", workers=2, log=lambda m: None, options={"cluster": "local", "timeout_min": 10}
    )
    _check(tmp_path, res)
    assert list((tmp_path / ".submitit").iterdir())  # submitit's own logs


@pytest.mark.slow
def test_ray_backend_on_a_local_cluster(tmp_path):
    pytest.importorskip("ray")
    res = run_many(_jobs(tmp_path), backend="ray", workers=2, log=lambda m: None)
    _check(tmp_path, res)


@pytest.mark.slow  # ~15 s: two spawned workers import torch, train, then take the SIGTERM
def test_a_sigterm_reaches_the_pool_workers_and_no_queued_run_starts(tmp_path):
    """`kill` of a pool run: the persistent workers' trainers checkpoint and report interrupted, the third job
    never starts, and the parent raises KeyboardInterrupt instead of leaving the workers training on."""
    import os
    import signal
    import threading
    import time

    from iclab.experiments import backends

    long = {
        **TINY,
        "training": {**TINY["training"], "steps": 100_000},
        "logging": {**TINY["logging"], "ckpt_every": 50},
    }
    jobs = [Job(validate({**long, "seed": s}), tmp_path / f"seed{s}") for s in range(3)]

    def terminate_once_two_train():
        deadline = time.monotonic() + 120
        logs = [tmp_path / f"seed{s}" / "metrics.jsonl" for s in (0, 1)]
        while time.monotonic() < deadline and not all(p.exists() for p in logs):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_once_two_train)
    lines: list[str] = []
    killer.start()
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        backends._run_pool(jobs, 2, lines.append, {"threads": 1})
    killer.join()
    assert sum(": interrupted" in ln for ln in lines) == 2, lines
    assert not (tmp_path / "seed2").exists()  # queued: never started
    for s in (0, 1):
        assert list((tmp_path / f"seed{s}" / "checkpoints").glob("*.safetensors"))  # the trainer checkpointed
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
