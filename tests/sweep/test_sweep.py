"""`iclab sweep`: grid expansion and naming, bad grids, the local backend in parallel, a restarted sweep
runs only what is missing, aggregation against a hand computation, status, and the Python API."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.experiments import Job, expand, parse_grid, parse_target, run_many, time_to_target
from iclab.stats import t_interval
from iclab.sweep.core import status, summarize
from iclab.training.checkpoint import load_weights

TINY = {
    "seed": 0,
    "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
    "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32},
    "training": {"steps": 20, "batch_size": 8, "lr": 1.0e-3, "device": "cpu"},
    "eval": {"n_prompts": 20, "batch_size": 20, "baselines": ["least_squares"]},
    "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
}


def _write(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def test_grid_expansion_and_naming():
    pts = expand(
        parse_grid(["training.lr=1e-3,3e-3", "model.n_layer=1,2", "model.attention.allocation=[4,2,2],[5,2,1]"])
    )
    assert len(pts) == 8
    assert pts[0].name == "training.lr=1e-3,model.n_layer=1,model.attention.allocation=_4_2_2_"
    assert pts[0].overrides == ["training.lr=1e-3", "model.n_layer=1", "model.attention.allocation=[4,2,2]"]
    assert pts[0].values == {"training.lr": 1e-3, "model.n_layer": 1, "model.attention.allocation": [4, 2, 2]}
    assert [p.values["training.lr"] for p in pts] == [1e-3] * 4 + [3e-3] * 4  # first axis slowest
    assert len({p.name for p in pts}) == 8
    assert [p.name for p in expand([])] == ["base"]
    assert parse_target("heldout/accuracy>=0.9") == ("heldout/accuracy", ">=", 0.9)


@pytest.mark.parametrize(
    "grid, msg",
    [
        ("training.lr", "use key=v1,v2"),
        ("training.lr=", "empty value"),
        ("training.lr=1,,2", "empty value"),
        ("training.lr=1,1", "repeated"),
        ("training.lr=[1,2", "unbalanced"),
        ("seed=1,2", "--seeds"),
        (".lr=1,2", "not a config key"),
        ("training.lrr=1,2", "training.lrr: unknown key"),
        ("training.lr=abc,1", "grid point training.lr=abc"),
    ],
)
def test_bad_grid_is_one_line(tmp_path, grid, msg):
    cfg = _write(tmp_path)
    r = CliRunner().invoke(app, ["sweep", str(cfg), "--grid", grid, "--out", str(tmp_path / "s")])
    assert r.exit_code == 2, r.output
    assert msg in r.output and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "s").exists()


def test_bad_seeds_backend_target_are_one_line(tmp_path):
    cfg = _write(tmp_path)
    for args, msg in (
        (["--seeds", "x"], "--seeds 'x'"),
        (["--backend", "mpi"], "--backend 'mpi'"),
        (["--target", "loss<0.1"], "--target 'loss<0.1'"),
        (["--workers", "0"], "--workers 0"),
    ):
        r = CliRunner().invoke(app, ["sweep", str(cfg), "--out", str(tmp_path / "s"), *args])
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(app, ["sweep", "status", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "not a sweep directory" in r.output


def test_local_backend_runs_in_parallel_and_a_restart_runs_only_what_is_missing(tmp_path):
    """The sweep trains in this process (inline), is "killed", and the restart runs the two missing runs as two
    local-backend processes at the same time (a resume and a fresh run); the two finished ones are reused."""
    cfg = _write(tmp_path)
    out = tmp_path / "s"
    args = ["sweep", str(cfg), "--grid", "training.lr=1e-3,3e-3", "--seeds", "0-1", "--out", str(out)]
    r = CliRunner().invoke(app, [*args, "--backend", "inline"])
    assert r.exit_code == 0, r.output
    runs = sorted(out.glob("training.lr=*/seed*[0-9]"))
    assert [p.relative_to(out).as_posix() for p in runs] == [
        "training.lr=1e-3/seed0",
        "training.lr=1e-3/seed1",
        "training.lr=3e-3/seed0",
        "training.lr=3e-3/seed1",
    ]
    assert yaml.safe_load((runs[2] / "config.yaml").read_text())["training"]["lr"] == 3e-3
    assert yaml.safe_load((runs[3] / "config.yaml").read_text())["seed"] == 1
    for f in ("table.md", "table.csv", "table.json", "table.png", "sweep.json"):
        assert (out / f).is_file()
    finished = {p: load_weights(p / "model.safetensors") for p in runs}
    # the sweep is "killed": one run lost its end (final weights, eval, last checkpoint), one never started
    stamp = {p: (p / "model.safetensors").stat().st_mtime_ns for p in runs}
    for f in ("model.safetensors", "eval.json", "checkpoints/step_000000020.safetensors"):
        (runs[1] / f).unlink()
    shutil.rmtree(runs[3])
    states = {(s["point"], s["seed"]): s["state"] for s in status(out)}
    assert states[("training.lr=1e-3", 1)] == "interrupted" and states[("training.lr=3e-3", 1)] == "pending"
    r = CliRunner().invoke(app, [*args, "--backend", "local", "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert (
        r.output.count("finished, reused") == 2
        and f"{runs[1]}: resuming" in r.output
        and f"{runs[3]}: training" in r.output
        and "local backend: 2 run(s), 2 at a time" in r.output
    )
    t = [json.loads((p / "timing.json").read_text()) for p in (runs[1], runs[3])]
    assert max(x["started"] for x in t) < min(x["ended"] for x in t)  # both processes ran at the same time
    for p in (runs[0], runs[2]):
        assert (p / "model.safetensors").stat().st_mtime_ns == stamp[p]  # not trained again
    for p in (runs[1], runs[3]):  # the resumed and the retrained run end exactly as the uninterrupted ones did
        w = load_weights(p / "model.safetensors")
        assert all(torch.equal(w[k], finished[p][k]) for k in finished[p])
    assert all(s["state"] == "done" for s in status(out))
    r = CliRunner().invoke(app, ["sweep", "status", str(out)])
    assert r.exit_code == 0 and "4 done (of 4)" in r.output


def test_failed_run_is_reported_and_the_others_finish(tmp_path):
    ok = validate(TINY)
    bad = validate({**TINY, "training": {**TINY["training"], "lr": 1e6, "grad_clip": None}})
    # inline: the same job code in this process (a failed run reported across the local backend's process
    # boundary, with its exit code: tests/test_cli_surprises.py::test_the_local_worker_process_logs_no_runpy_warning)
    jobs = [Job(bad, tmp_path / "bad"), Job(ok, tmp_path / "ok")]
    res = run_many(jobs, backend="inline", log=lambda m: None)
    assert [r.state for r in res] == ["failed", "done"]
    assert "non-finite loss" in res[0].error and (tmp_path / "bad" / "failed.json").is_file()
    assert (tmp_path / "ok" / "model.safetensors").is_file()
    again = run_many([(ok, tmp_path / "ok")], log=lambda m: None)  # a (config, run_dir) tuple is a job too
    assert again[0].state == "reused"
    other = validate({**TINY, "training": {**TINY["training"], "lr": 2e-3}})
    clash = run_many([Job(other, tmp_path / "ok")], log=lambda m: None)  # same directory, another config
    assert clash[0].state == "failed" and "training.lr: saved 0.001, now 0.002" in clash[0].error


def _fake_run(run: Path, cfg: dict, error_k6: float, losses: list[float], sps: float, wall: float) -> None:
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(validate(cfg).model_dump(mode="json")))
    (run / "model.safetensors").write_bytes(b"")
    ev = {"n_dims": 3, "n_points": 7, "model": {"mean": [1.0] * 6 + [error_k6]}}
    (run / "eval.json").write_text(json.dumps(ev))
    recs = [{"step": 10 * (i + 1), "loss": v, "lr": 1e-3, "steps_per_s": sps} for i, v in enumerate(losses)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "timing.json").write_text(json.dumps({"wall_s": wall}))


def test_aggregation_against_a_hand_computed_table(tmp_path):
    out = tmp_path / "s"
    data = {  # point -> seed -> (error at k=6, losses at steps 10/20/30, steps/s, wall s)
        "training.lr=1e-3": {
            0: (0.5, [3.0, 2.0, 1.0], 10.0, 5.0),
            1: (0.7, [3.0, 2.5, 1.5], 20.0, 7.0),
            2: (0.9, [3.0, 1.0, 0.5], 10.0, 6.0),
        },
        "training.lr=3e-3": {0: (0.2, [2.0, 0.9, 0.4], 10.0, 4.0), 1: None, 2: (0.4, [2.0, 1.5, 1.2], 5.0, 4.0)},
    }
    points = []
    for name, seeds in data.items():
        lr = float(name.split("=")[1])
        for s, v in seeds.items():
            if v is not None:
                _fake_run(out / name / f"seed{s}", {**TINY, "seed": s, "training": {**TINY["training"], "lr": lr}}, *v)
        points.append(
            {
                "name": name,
                "overrides": [name],
                "values": {"training.lr": lr},
                "runs": {str(s): f"{name}/seed{s}" for s in seeds},
            }
        )
    plan = {
        "config": "tiny.yaml",
        "grid": ["training.lr=1e-3,3e-3"],
        "seeds": [0, 1, 2],
        "overrides": [],
        "target": "loss<=1.0",
        "points": points,
    }
    out.mkdir(exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(plan))
    rows = summarize(out)
    a, b = rows
    assert (a["n_done"], a["n_runs"], b["n_done"], b["n_runs"]) == (3, 3, 2, 3)
    errs = [0.5, 0.7, 0.9]
    m = a["metrics"]["eval: error at k=6"]
    assert m["mean"] == pytest.approx(0.7) and m["values"] == errs
    sd = math.sqrt(((0.5 - 0.7) ** 2 + 0 + (0.9 - 0.7) ** 2) / 2)  # = 0.2
    assert m["ci95"] == pytest.approx(4.302652729911275 * sd / math.sqrt(3))  # t_{0.975, 2}
    assert a["metrics"]["loss"]["mean"] == pytest.approx((1.0 + 1.5 + 0.5) / 3)
    assert b["metrics"]["loss"]["mean"] == pytest.approx(0.8)
    assert b["metrics"]["loss"]["ci95"] == pytest.approx(
        12.706204736174698 * statistics.stdev([0.4, 1.2]) / math.sqrt(2)
    )
    assert a["metrics"]["wall_s"]["mean"] == pytest.approx(6.0) and a["metrics"]["steps_per_s"][
        "mean"
    ] == pytest.approx(40 / 3)
    # time to loss <= 1.0: lr=1e-3: seed0 at step 30 (3 s at 10 steps/s), seed1 never, seed2 at step 20 (2 s)
    ta = a["target"]
    assert (ta["reached"], ta["of"]) == (2, 3) and ta["step"]["values"] == [30, 20] and ta["step"]["mean"] == 25
    assert ta["seconds"]["values"] == pytest.approx([3.0, 2.0])
    tb = b["target"]  # seed0 at step 20 (2 s), seed2 never
    assert (tb["reached"], tb["step"]["values"], tb["seconds"]["values"]) == (1, [20], pytest.approx([2.0]))
    md = (out / "table.md").read_text()
    assert "| training.lr=1e-3 | 3/3 | 0.7 +- " in md and "(2/3 reached)" in md
    csv = (out / "table.csv").read_text().splitlines()
    assert csv[0].startswith("point,training.lr,n_done,n_runs,eval: error at k=6_mean,eval: error at k=6_ci95")
    assert csv[2].startswith("training.lr=3e-3,0.003,2,3,0.30000000000000004,") or csv[2].startswith(
        "training.lr=3e-3,0.003,2,3,0.3,"
    )
    saved = json.loads((out / "table.json").read_text())
    assert saved["points"][0]["metrics"]["eval: error at k=6"]["ci95"] == pytest.approx(t_interval(errs))
    assert (out / "table.png").is_file()
    assert {(s["point"], s["seed"], s["state"]) for s in status(out)} >= {("training.lr=3e-3", 1, "pending")}


def test_time_to_target_prefers_logged_train_seconds():
    recs = [
        {"step": 10, "loss": 2.0, "steps_per_s": 10.0, "train_seconds": 0.5},
        {"step": 20, "loss": 0.5, "steps_per_s": 10.0, "train_seconds": 1.25},
    ]
    hit = time_to_target(recs, "loss", "<=", 1.0)
    assert (hit.step, hit.seconds) == (20, 1.25)
    assert not time_to_target(recs, "loss", ">=", 3.0).reached


def test_reference_adds_paired_differences_checked_against_scipy(tmp_path):
    from scipy import stats as sps

    cfg = _write(tmp_path)
    out = tmp_path / "s"
    base = ["sweep", str(cfg), "--grid", "training.lr=1e-3,3e-2", "--seeds", "0-2", "--backend", "inline"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "refused"), "--reference", "training.lr=9"])
    assert r.exit_code == 2 and "--reference 'training.lr=9' is not one of" in r.output
    assert not (tmp_path / "refused").exists()
    r = CliRunner().invoke(app, [*base, "--out", str(out), "--reference", "training.lr=1e-3"])
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "table.json").read_text())["points"]
    ref, other = rows
    assert ref["vs_reference"] is None
    d = other["vs_reference"]
    main = d["metric"]
    a, b = other["metrics"][main]["values"], ref["metrics"][main]["values"]  # seeds 0, 1, 2 in order
    diffs = [x - y for x, y in zip(a, b)]
    half = sps.t.ppf(0.975, 2) * statistics.stdev(diffs) / math.sqrt(3)
    assert d["n"] == 3 and d["diff"] == pytest.approx(statistics.fmean(diffs))
    assert [d["lo"], d["hi"]] == pytest.approx([statistics.fmean(diffs) - half, statistics.fmean(diffs) + half])
    assert d["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    md = (out / "table.md").read_text()
    assert f"{main} - training.lr=1e-3 (paired by seed, 95% CI)" in md and "| reference | - |" in md
