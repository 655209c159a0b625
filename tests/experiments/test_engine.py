"""The run engine: the training clock and time to target against hand computations, seeds and the config
axis, a job's identity (volatile settings ignored, others refused), inline reuse and resume, the stop after
an interrupted job, and the per-seed dots figure."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time

import pytest

from iclab.config import validate
from iclab.experiments import (
    BACKENDS,
    ExperimentError,
    GridError,
    Job,
    config_axis,
    parse_seeds,
    read_metrics,
    run_many,
    time_to_target,
    training_clock,
    wall_seconds,
)
from iclab.experiments import backends as backends_mod

TINY = {
    "seed": 0,
    "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
    "model": {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32},
    "training": {"steps": 10, "batch_size": 8, "lr": 1.0e-3, "device": "cpu", "threads": 1},
    "eval": {"n_prompts": 20, "batch_size": 20, "baselines": []},
    "logging": {"log_every": 5, "ckpt_every": 5, "tensorboard": False, "progress": False},
}

RECS = [  # mixed on purpose: a logged train_seconds, an estimate from steps/s, a NaN, a record without steps/s
    {"step": 10, "steps_per_s": 10.0, "loss": 3.0},
    {"step": 20, "train_seconds": 1.5, "loss": 2.0},
    {"step": 30, "steps_per_s": 5.0, "loss": float("nan")},
    {"step": 40, "steps_per_s": 5.0, "loss": 0.5},
    {"step": 50, "loss": 0.1},
]


def test_training_clock_prefers_logged_train_seconds_and_estimates_the_rest():
    # 10 steps at 10/s = 1.0; logged 1.5; + 10 steps at 5/s = 3.5; + 10 at 5/s = 5.5; no steps/s: stays 5.5
    assert training_clock(RECS) == pytest.approx([1.0, 1.5, 3.5, 5.5, 5.5])
    assert training_clock([]) == []


def test_time_to_target_is_the_first_finite_logged_value_at_or_past_it():
    hit = time_to_target(RECS, "loss", "<=", 1.0)
    assert (hit.reached, hit.step, hit.seconds, hit.best) == (True, 40, pytest.approx(5.5), 0.5)
    at_two = time_to_target(RECS, "loss", "<=", 2.0)  # exactly the target counts
    assert (at_two.step, at_two.seconds, at_two.best) == (20, 1.5, 2.0)
    never = time_to_target(RECS, "loss", ">=", 10.0)  # the NaN is neither a hit nor the best
    assert not never.reached and never.step is None and never.seconds is None and never.best == 3.0
    assert time_to_target(RECS, "val/loss", "<=", 1.0).best is None
    with pytest.raises(ValueError, match="op '<'"):
        time_to_target(RECS, "loss", "<", 1.0)


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    lines = [json.dumps(r) for r in RECS[:2]] + ['{"step": 30, "lo']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20]
    assert read_metrics(tmp_path / "nowhere") == []


def test_seeds_and_the_config_axis(tmp_path):
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("2-4") == [2, 3, 4] and parse_seeds("1,5") == [1, 5]
    for bad in ("x", "0", "1,1", "-1"):
        with pytest.raises(GridError, match="--seeds"):
            parse_seeds(bad)
    pts = config_axis([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert [p.name for p in pts] == ["a", "b"] and pts[0].config == tmp_path / "a.yaml"
    clash = config_axis([tmp_path / "x" / "m.yaml", tmp_path / "y" / "m.yaml"])
    assert [p.name for p in clash] == ["x_m", "y_m"]


def test_bad_backend_workers_or_shared_directory(tmp_path):
    job = Job(validate(TINY), tmp_path / "r")
    assert BACKENDS == ("inline", "local", "pool", "ray", "slurm")
    with pytest.raises(ExperimentError, match="--backend 'mpi'"):
        run_many([job], backend="mpi")
    with pytest.raises(ExperimentError, match="--workers 0"):
        run_many([job], workers=0)
    with pytest.raises(ExperimentError, match="share a run directory"):
        run_many([job, Job(validate({**TINY, "seed": 1}), tmp_path / "r")])


def test_inline_reuses_resumes_and_checks_the_config_identity(tmp_path):
    cfg, run, lines = validate(TINY), tmp_path / "r", []
    [res] = run_many([Job(cfg, run)], backend="inline", log=lines.append)
    assert res.state == "done" and f"  {run}: training" in lines and (run / "eval.json").is_file()
    first = wall_seconds(run)
    assert first > 0 and set(json.loads((run / "timing.json").read_text())) == {"wall_s", "started", "ended"}
    # the settings that do not change results are not part of the identity: reused, nothing started
    quiet = validate({**TINY, "training": {**TINY["training"], "threads": 2}, "logging": {**TINY["logging"]}})
    quiet.logging.progress, quiet.logging.tensorboard = True, True
    stamp = (run / "model.safetensors").stat().st_mtime_ns
    assert run_many([Job(quiet, run)], backend="inline", log=lines.append)[0].state == "reused"
    assert (run / "model.safetensors").stat().st_mtime_ns == stamp
    # another learning rate in the same directory: a failure that names the key, the run untouched
    other = validate({**TINY, "training": {**TINY["training"], "lr": 2e-3}})
    [clash] = run_many([Job(other, run)], backend="inline", log=lambda m: None)
    assert clash.state == "failed" and "training.lr: saved 0.001, now 0.002" in clash.error
    assert (run / "model.safetensors").stat().st_mtime_ns == stamp
    (run / "failed.json").unlink()
    # an interrupted run (final weights and evaluation lost) resumes from its checkpoint; the time adds up
    (run / "model.safetensors").unlink()
    (run / "eval.json").unlink()
    lines.clear()
    [again] = run_many([Job(cfg, run)], backend="inline", log=lines.append)
    assert again.state == "done" and f"  {run}: resuming" in lines
    assert wall_seconds(run) > first and (run / "eval.json").is_file()


def test_no_job_starts_after_an_interrupted_one(tmp_path, monkeypatch):
    started = []

    def fake(spec):
        started.append(spec["run_dir"])
        return {"run_dir": spec["run_dir"], "state": "interrupted", "error": "interrupted at step 3", "wall_s": 1.0}

    monkeypatch.setattr(backends_mod, "execute_job", fake)
    jobs = [Job(validate({**TINY, "seed": s}), tmp_path / f"seed{s}") for s in range(3)]
    res = run_many(jobs, backend="inline", log=lambda m: None)
    assert started == [str(tmp_path / "seed0")]
    assert [r.state for r in res] == ["interrupted"] * 3 and res[1].error == backends_mod.NOT_STARTED


def test_seed_dots_draws_the_mean_its_interval_and_every_seed():
    from iclab.experiments.plots import floor_at_zero, plt, seed_dots

    fig, ax = plt.subplots()
    stats = [{"mean": 0.2, "ci95": 0.5, "values": [0.0, 0.1, 0.5]}, {"mean": 2.0, "ci95": 0.1, "values": [1.9, 2.1]}]
    seed_dots(ax, [0, 1], stats, "C0")
    dots = [tuple(map(tuple, c.get_offsets())) for c in ax.collections if c.get_offsets().shape[0] in (2, 3)]
    assert ((0.0, 0.0), (0.0, 0.1), (0.0, 0.5)) in dots and ((1.0, 1.9), (1.0, 2.1)) in dots
    bars = ax.containers[0]  # the error bar: means at 0.2 and 2.0, half-widths 0.5 and 0.1
    assert list(bars.lines[0].get_ydata()) == [0.2, 2.0]
    segs = bars.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segs] == [pytest.approx((-0.3, 0.7)), pytest.approx((1.9, 2.1))]
    assert floor_at_zero(ax, stats) and ax.get_ylim()[0] == 0  # 0.2 - 0.5 < 0 but no value is
    assert not floor_at_zero(ax, stats[1:]) and not floor_at_zero(ax, [{"mean": -1, "ci95": 2, "values": [-1]}])
    plt.close(fig)
    assert math.isclose(stats[0]["mean"], 0.2)


# a stand-in for `python -m iclab.experiments.worker -`: marks its run started, trains for a minute, and on
# SIGTERM reports "interrupted" the way the real worker's trainer does after checkpointing
FAKE_WORKER = r"""
import json, pathlib, signal, sys, time
run = pathlib.Path(json.loads(sys.stdin.read())["run_dir"])
def report(state):
    print("iclab-sweep-result " + json.dumps({"run_dir": str(run), "state": state, "error": None, "wall_s": 0.1}))
    sys.stdout.flush()
def on_term(*_):
    report("interrupted")
    sys.exit(130)
signal.signal(signal.SIGTERM, on_term)
run.mkdir(parents=True, exist_ok=True)
(run / "started").write_text("")
time.sleep(60)
report("done")
"""


def test_a_sigterm_reaches_the_local_workers_and_no_queued_run_starts(tmp_path, monkeypatch):
    """`kill` of `iclab sweep/reproduce --workers 2` (SIGTERM, which reaches the parent alone): the running
    workers get it, report interrupted, the third run never starts, and the parent raises KeyboardInterrupt
    (exit 130 in the CLI) instead of dying and leaving its workers training on as orphans."""
    script = tmp_path / "worker.py"
    script.write_text(FAKE_WORKER)
    monkeypatch.setattr(backends_mod, "WORKER", [sys.executable, str(script)])
    jobs = [Job(validate({**TINY, "seed": s}), tmp_path / f"seed{s}") for s in range(3)]
    started = [tmp_path / f"seed{s}" / "started" for s in range(3)]

    def terminate_once_two_run():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (started[0].exists() and started[1].exists()):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_once_two_run)
    lines: list[str] = []
    t0 = time.monotonic()
    killer.start()
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        backends_mod._run_local(jobs, 2, lines.append, {})
    killer.join()
    assert time.monotonic() - t0 < 30  # the workers stopped on the signal, not after their minute
    assert started[0].exists() and started[1].exists() and not started[2].exists()
    assert sum(": interrupted" in ln for ln in lines) == 2, lines
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again


def test_a_sigterm_during_a_pool_run_stops_the_queue_and_passes_on_to_its_processes():
    """The pool backend's handler (fast sibling of tests/sweep's slow real-pool test): the stop event is set,
    every live pool process gets SIGTERM, and the old handler is back afterwards."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    proc = ctx.Process(target=time.sleep, args=(60,))
    proc.start()
    pool = type("FakePool", (), {"_processes": {proc.pid: proc}})()
    stop = ctx.Event()
    from iclab.experiments import pool as pool_mod

    with pool_mod._PoolTerm(pool, stop) as term:
        os.kill(os.getpid(), signal.SIGTERM)
        proc.join(10)
    assert term.terminated and stop.is_set()
    assert proc.exitcode == -signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
