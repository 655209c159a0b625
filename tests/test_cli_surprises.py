"""Issue 26: a command line that never surprises. Refusal before any write, no zero-width intervals from one
seed, quiet sweep workers and progress within runs. No training here: every test is fast."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate

TINY = {
    "seed": 0,
    "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
    "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
    "training": {"steps": 20, "batch_size": 8, "lr": 1.0e-3, "device": "cpu"},
    "eval": {"n_prompts": 20, "batch_size": 20},
    "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
}


@pytest.fixture
def tiny(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def _refusals() -> list[tuple[list[str], str]]:
    out = [(["--backend", "lokal"], "choose one of"), (["--workers", "0"], "--workers 0")]
    if importlib.util.find_spec("ray") is None:
        out.append((["--backend", "ray"], "needs Ray"))
    if importlib.util.find_spec("submitit") is None:
        out.append((["--backend", "slurm"], "needs submitit"))
    return out


# --- 1. refusal before any write -------------------------------------------------------------------------
@pytest.mark.parametrize("args, msg", _refusals())
def test_a_refused_sweep_writes_nothing_and_status_does_not_see_a_sweep(tiny, tmp_path, args, msg):
    out = tmp_path / "sw"
    res = CliRunner().invoke(app, ["sweep", str(tiny), "--out", str(out), *args])
    assert res.exit_code == 2 and msg in res.output
    assert not out.exists()  # before: OUT/sweep.json, and `sweep status OUT` said "1 pending", exit 0
    st = CliRunner().invoke(app, ["sweep", "status", str(out)])
    assert st.exit_code == 2 and "not a sweep directory" in st.output


@pytest.mark.parametrize("args, msg", _refusals())
def test_a_refused_compare_writes_nothing_and_says_so_first(tiny, tmp_path, args, msg):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", str(tiny), "--seeds", "1", "--out", str(out), *args])
    assert res.exit_code == 2 and msg in res.output
    assert not out.exists() and "compare:" not in res.output  # refused before it announced any run


def test_an_out_that_is_a_file_is_one_line(tiny, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    for cmd in (["sweep", str(tiny)], ["compare", str(tiny), "--seeds", "1"]):
        res = CliRunner().invoke(app, [*cmd, "--out", str(f)])
        assert res.exit_code == 2 and "exists and is not a directory" in res.output, res.output
    assert f.read_text() == "keep"


def test_optbench_refuses_a_missing_backend_before_writing(tmp_path):
    out = tmp_path / "ob"
    res = CliRunner().invoke(app, ["optbench", "--backend", "lokal", "--out", str(out)])
    assert res.exit_code == 2 and "choose one of" in res.output
    assert not out.exists()
    if importlib.util.find_spec("ray") is None:  # before: wrote OUT/spec.yaml, then a traceback, exit 1
        res = CliRunner().invoke(app, ["optbench", "--backend", "ray", "--out", str(out)])
        assert res.exit_code == 2 and "needs Ray" in res.output and not out.exists()


def test_reproduce_refuses_an_out_below_a_file_before_training(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["reproduce", "garg-linear", "--out", str(f / "sub")])
    assert res.exit_code == 2 and "is not a directory" in res.output, res.output
    assert time.perf_counter() - t0 < 30 and f.read_text() == "keep"


def test_report_and_bench_name_an_out_that_is_a_directory(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(d)])
    assert res.exit_code == 2 and f"--out {d} is a directory" in res.output  # before: "[Errno 21] Is a directory"
    res = CliRunner().invoke(app, ["bench", "--quick", "--out", str(d)])
    assert res.exit_code == 2 and f"--out {d} is a directory" in res.output  # before: after minutes of timing
    assert list(d.iterdir()) == []


# --- 2. one seed: no interval -----------------------------------------------------------------------------
def test_one_seed_has_no_interval_in_sweep_tables_json_csv_and_figure():
    from iclab.experiments.plots import plt
    from iclab.sweep import aggregate as agg

    rows = agg.aggregate([{"name": "base", "values": {}, "runs": {0: {"loss": 0.25}}}])
    m = rows[0]["metrics"]["loss"]
    assert m["ci95"] is None and json.loads(json.dumps(rows))[0]["metrics"]["loss"]["ci95"] is None
    assert "0.25 +- n/a (1 seed)" in agg.table(rows) and "+- 0" not in agg.table(rows)
    assert "n/a (1 seed)" in agg.to_csv(rows)
    two = agg.aggregate([{"name": "base", "values": {}, "runs": {0: {"loss": 0.2}, 1: {"loss": 0.4}}}])
    assert two[0]["metrics"]["loss"]["ci95"] == pytest.approx(12.706204736 * 0.1414213562 / 2**0.5)
    fig, ax = plt.subplots()
    agg._plot_metric(ax, rows, "loss")
    assert ax.get_title() == "1 seed (no interval)"
    ax.clear()
    agg._plot_metric(ax, two, "loss")
    assert "over seeds" in ax.get_title()
    plt.close(fig)


def test_one_seed_has_no_interval_in_compare_table_csv_and_figure():
    from iclab import compare as cmp
    from iclab.experiments.plots import plt

    r = {
        "metric": "error at k=6",
        "mean": 0.34,
        "ci95": cmp.ci95_of([0.34]),
        "values": [0.34],
        "seeds": [0],
        "params": 7185,
        "flops_per_step": 1e6,
        "steps_per_s": 2.0,
        "tokens_per_s": 100.0,
        "mfu": 0.01,
        "wall_s": 3.0,
    }
    assert r["ci95"] is None
    text = cmp.table({"tiny": r})
    assert "| tiny | 0.3400 +- n/a (1 seed) |" in text and "+- 0.0000" not in text
    assert "n/a (1 seed)" in cmp._csv({"tiny": r})
    fig, ax = plt.subplots()
    cmp._plot_headline(ax, {"tiny": r})
    assert ax.get_title() == "1 seed (no interval)" and "1 seeds" not in ax.get_title()
    ax.clear()
    cmp._plot_headline(ax, {"tiny": {**r, "values": [0.3, 0.38], "mean": 0.34, "ci95": 0.5}})
    assert ax.get_title().startswith("mean +- 95% CI over 2 seeds")
    plt.close(fig)


# --- 3. quiet workers, progress within runs ----------------------------------------------------------------
def test_the_local_worker_process_logs_no_runpy_warning(tmp_path):
    spec = {"config": {"seed": 0, "task": {"name": "no_such_task"}}, "run_dir": str(tmp_path / "r"), "threads": 1}
    proc = subprocess.run(
        [sys.executable, "-m", "iclab.experiments.worker", "-"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "RuntimeWarning" not in proc.stderr and "found in sys.modules" not in proc.stderr, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("iclab-sweep-result ") and json.loads(last.split(" ", 1)[1])["state"] == "failed"
    assert proc.returncode == 1
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, iclab.cli, iclab.sweep.core, iclab.compare; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "iclab.experiments.jobs" in imported.stdout and "iclab.experiments.worker" not in imported.stdout


def _metrics(run: Path, steps: list[int]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in steps))


def test_progress_line_counts_finished_runs_and_steps_within_running_ones(tmp_path):
    from iclab.experiments import Job
    from iclab.experiments.backends import _Progress, progress_line

    cfg = validate(TINY)
    jobs = [Job(cfg, tmp_path / "p" / f"seed{s}") for s in range(3)]
    assert progress_line(jobs) == "progress: 0/3 runs finished"
    done = jobs[0].run_dir
    _metrics(done, [5, 10, 15, 20])
    (done / "model.safetensors").write_bytes(b"x")
    (done / "eval.json").write_text("{}")
    _metrics(jobs[1].run_dir, [5, 10])
    (jobs[1].run_dir / "metrics.jsonl").open("a").write('{"step": 15, "lo')  # a torn last line is skipped
    assert progress_line(jobs) == "progress: 1/3 runs finished; p/seed1 step 10/20"
    lines: list[str] = []
    mon = _Progress(jobs, lines.append, 0.02)
    _metrics(jobs[2].run_dir, [5])
    deadline = time.time() + 5
    while not lines and time.time() < deadline:
        time.sleep(0.02)
    mon.stop()
    assert lines and lines[-1] == "progress: 1/3 runs finished; p/seed1 step 10/20, p/seed2 step 5/20"
    assert len(set(lines)) == len(lines)  # a line only when something changed


def test_no_help_text_shows_an_escaped_percent():
    """Typer prints help strings as written: a "95%%" (printf-style escaping) shows up doubled."""
    import typer.main

    group = typer.main.get_command(app)
    names = list(group.commands)
    assert {"train", "compare", "sweep", "reproduce"} <= set(names)
    for name in names:
        out = CliRunner().invoke(app, [name, "--help"], terminal_width=200).output
        assert "%%" not in out, name
