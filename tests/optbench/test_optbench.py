"""optbench: the search space, trial configs, time to target from logged evaluations, external tuning, and a
tiny benchmark end to end (reuse of finished trials, rerun of an unfinished one, the report files)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from iclab.optbench import OptbenchError, run_benchmark
from iclab.optbench.bench import Trial, aggregate, trial_target
from iclab.optbench.spec import (
    BenchSpec,
    Dist,
    SubmissionSpec,
    WorkloadSpec,
    sample_hparams,
    trial_config,
    trial_config_data,
)

BASE = {
    "task": {"name": "classification", "options": {"dataset": "digits", "hidden": [16]}},
    "training": {"steps": 40, "batch_size": 32, "lr": 1e-2, "device": "cpu", "threads": 1},
    "logging": {"log_every": 10, "ckpt_every": 40, "tensorboard": False, "progress": False},
}


# --- search space and trial configs ------------------------------------------------------------------------
def test_sampling_is_seeded_and_in_bounds():
    sub = SubmissionSpec(
        space={
            "training.lr": Dist(log_uniform=(1e-4, 1e-1)),
            "training.optimizer.options.betas.0": Dist(log_uniform=(0.01, 0.3), one_minus=True),
            "training.warmup_steps": Dist(choice=[0.0, 0.1], of_steps=True),
            "x": Dist(uniform=(2.0, 3.0)),
        }
    )
    a = [sample_hparams(sub, 0, "adamw", "w", 0, t) for t in range(50)]
    assert a == [sample_hparams(sub, 0, "adamw", "w", 0, t) for t in range(50)]  # reproducible
    assert a[0] != sample_hparams(sub, 1, "adamw", "w", 0, 0)  # another bench seed, another point
    lrs = np.array([h["training.lr"] for h in a])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1 and np.log10(lrs).std() > 0.4  # spread over decades
    assert all(0.7 <= h["training.optimizer.options.betas.0"] <= 0.99 for h in a)
    assert all(2.0 <= h["x"] <= 3.0 for h in a)
    assert {h["training.warmup_steps"] for h in a} == {0.0, 0.1}


def test_trial_config_fills_optimizer_defaults_and_indexes_lists():
    sub = SubmissionSpec(
        set={"training.optimizer.name": "adamw", "training.schedule": "warmup_cosine"},
        space={
            "training.optimizer.options.betas.0": Dist(uniform=(0.1, 0.1), one_minus=True),
            "training.warmup_steps": Dist(choice=[0.1], of_steps=True),
        },
    )
    hp = sample_hparams(sub, 0, "s", "w", 0, 0)
    cfg = trial_config(BASE, sub, hp, seed=7, where="t")
    assert cfg.seed == 7 and cfg.training.optimizer.name == "adamw"
    assert cfg.training.optimizer.options["betas"] == [pytest.approx(0.9), 0.999]  # beta2 kept at its default
    assert cfg.training.warmup_steps == 4  # 0.1 of 40 steps
    assert BASE["training"].get("warmup_steps") is None  # the base is not modified


def test_trial_directory_names_hash_only_what_the_trial_sets():
    from iclab.optbench.spec import trial_hash

    sub = SubmissionSpec(
        set={"training.optimizer.name": "adamw"}, space={"training.lr": Dist(log_uniform=(1e-3, 1e-2))}
    )
    h = trial_hash(BASE, sub, {"training.lr": 0.005}, 3)
    assert h == trial_hash(json.loads(json.dumps(BASE)), sub, {"training.lr": 0.005}, 3) and len(h) == 12
    assert h != trial_hash(BASE, sub, {"training.lr": 0.006}, 3) and h != trial_hash(
        BASE, sub, {"training.lr": 0.005}, 4
    )


def test_bad_space_keys_are_one_line_errors():
    sub = SubmissionSpec(
        set={"training.optimizer.name": "adamw"}, space={"training.optimizer.options.betas.5": Dist(choice=[0.5])}
    )
    with pytest.raises(OptbenchError, match=r"betas.5.*list of 2"):
        trial_config_data(BASE, sub, {"training.optimizer.options.betas.5": 0.5}, seed=0, where="t")
    sub = SubmissionSpec(set={"training.optimizer.name": "adamw"}, space={"training.lrr": Dist(choice=[0.5])})
    with pytest.raises(OptbenchError, match="training.lrr"):
        trial_config(BASE, sub, {"training.lrr": 0.5}, seed=0, where="trial x")
    with pytest.raises(ValueError, match="exactly one"):
        Dist(uniform=(0, 1), choice=[1])
    with pytest.raises(ValueError, match="> 0"):
        Dist(log_uniform=(0, 1))


# --- time to target -------------------------------------------------------------------------------------------
def _w(metric, goal, target):  # a workload of the spec, by its three fields
    return WorkloadSpec(config="x.yaml", metric=metric, goal=goal, target=target)


def test_time_to_target_is_the_first_logged_evaluation_at_or_past_it():
    recs = [
        {"step": 10, "train_seconds": 1.0, "val/accuracy": 0.5},
        {"step": 20, "train_seconds": 2.0, "val/accuracy": float("nan")},
        {"step": 30, "train_seconds": 3.5, "val/accuracy": 0.9},  # exactly the target counts
        {"step": 40, "train_seconds": 4.0, "val/accuracy": 0.95},
    ]
    r = trial_target(recs, _w("val/accuracy", "max", 0.9))
    assert r == {"reached": True, "steps": 30, "seconds": 3.5, "best": 0.9}
    # not interpolated: a target between two evaluations is read at the later one
    assert trial_target(recs, _w("val/accuracy", "max", 0.6))["steps"] == 30
    miss = trial_target(recs, _w("val/accuracy", "max", 0.99))
    assert not miss["reached"] and math.isinf(miss["steps"]) and math.isinf(miss["seconds"]) and miss["best"] == 0.95
    low = trial_target(
        [{"step": 5, "train_seconds": 0.5, "val/loss": 2.0}, {"step": 10, "train_seconds": 1.0, "val/loss": 1.0}],
        _w("val/loss", "min", 1.5),
    )
    assert low["steps"] == 10 and low["seconds"] == 1.0
    # without train_seconds (older runs): the sum of interval / steps_per_s
    old = [{"step": 10, "steps_per_s": 10.0, "m": 0.0}, {"step": 30, "steps_per_s": 20.0, "m": 1.0}]
    assert trial_target(old, _w("m", "max", 1.0))["seconds"] == pytest.approx(2.0)


def _fake_trial(study, trial, steps, sub="A", w="w"):
    t = Trial(w, sub, study, trial, 0, {}, None, Path("."))
    t.result = {"reached": math.isfinite(steps), "steps": steps, "seconds": steps / 10, "best": 1.0}
    return t


def test_external_tuning_fastest_trial_per_study_then_median():
    spec = BenchSpec(
        trials=3,
        studies=3,
        workloads={"w": {"config": "x.yaml", "metric": "m", "goal": "max", "target": 1}},
        submissions={"A": {}, "B": {}},
    )
    inf = math.inf
    trials = [
        _fake_trial(0, 0, 300),
        _fake_trial(0, 1, 100),
        _fake_trial(0, 2, inf),  # study 0: 100
        _fake_trial(1, 0, inf),
        _fake_trial(1, 1, inf),
        _fake_trial(1, 2, inf),  # study 1: never
        _fake_trial(2, 0, 200),
        _fake_trial(2, 1, 400),
        _fake_trial(2, 2, 250),
    ]  # study 2: 200
    trials += [_fake_trial(s, t, 150, sub="B") for s in range(3) for t in range(3)]
    agg = aggregate(spec, trials)
    row = agg["table"]["w"]["A"]
    assert row["steps_per_study"] == [100, inf, 200] and row["steps"] == 200  # median of (100, 200, inf)
    assert row["reached"] == 5 and row["share_reached"] == pytest.approx(5 / 9)
    assert agg["measures"]["steps"]["ratios"]["A"]["w"] == pytest.approx(200 / 150)
    assert agg["measures"]["steps"]["scores"]["B"] == 1.0


# --- a tiny benchmark end to end --------------------------------------------------------------------------------
def _write_spec(tmp_path: Path) -> Path:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "digits.yaml").write_text(yaml.safe_dump(BASE))
    logistic = json.loads(json.dumps(BASE))
    logistic["task"]["options"] = {"dataset": "synthetic", "hidden": [], "n_samples": 400, "n_features": 8}
    (tmp_path / "w" / "logistic.yaml").write_text(yaml.safe_dump(logistic))
    spec = {
        "name": "tiny",
        "trials": 2,
        "studies": 1,
        "workers": 1,
        "workloads": {
            "digits": {"config": "w/digits.yaml", "metric": "val/accuracy", "goal": "max", "target": 0.5},
            "logistic": {"config": "w/logistic.yaml", "metric": "val/loss", "goal": "min", "target": 0.6},
        },
        "submissions": {
            "sgd": {
                "set": {"training.optimizer.name": "sgd", "training.optimizer.options.momentum": 0.9},
                "space": {"training.lr": {"log_uniform": [0.01, 0.3]}},
            },
            "adamw": {
                "set": {"training.optimizer.name": "adamw"},
                "space": {"training.lr": {"log_uniform": [1e-3, 3e-2]}},
            },
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_tiny_benchmark_runs_reuses_and_reruns_unfinished(tmp_path):
    spec_path = _write_spec(tmp_path)
    out = tmp_path / "bench"
    res = run_benchmark(spec_path, out, backend="inline", log=lambda *_: None)
    assert res["run"]["ran"] == 8 and res["run"]["states"] == {"done": 8}
    for name in (
        "trials.csv",
        "trials.json",
        "time_to_target.csv",
        "time_to_target.json",
        "time_to_target.md",
        "scores.json",
        "scores.md",
        "profiles.png",
        "curves.png",
        "summary.md",
        "spec.yaml",
    ):
        assert (out / name).is_file(), name
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 8 and all(r["state"] == "done" for r in rows)
    # every trial's steps_to_target is one of its logged steps (or null = not reached)
    for r in rows:
        logged = [json.loads(ln)["step"] for ln in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert r["steps"] is None or r["steps"] in logged
    assert any(r["reached"] for r in rows)  # the targets are easy: a benchmark that reaches nothing tests nothing
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["steps"]["scores"]) == {"sgd", "adamw"} and max(scores["steps"]["scores"].values()) > 0

    # a second invocation reuses every finished trial
    again = run_benchmark(spec_path, out, backend="inline", log=lambda *_: None)
    assert again["run"]["ran"] == 0 and again["run"]["reused"] == 8
    assert json.loads((out / "trials.json").read_text()) == rows

    # an unfinished trial (no final weights: killed before the end) is run again, the others are reused
    victim = Path(rows[0]["run_dir"])
    (victim / "model.safetensors").unlink()
    third = run_benchmark(spec_path, out, backend="inline", log=lambda *_: None)
    assert third["run"]["ran"] == 1 and third["run"]["reused"] == 7
    after = json.loads((out / "trials.json").read_text())
    assert [r["steps"] for r in after] == [r["steps"] for r in rows]  # the rerun is the same run (seeded)

    # report only, and bad requests as one-line errors
    run_benchmark(spec_path, out, report_only=True, log=lambda *_: None)
    with pytest.raises(OptbenchError, match="--workloads nope"):
        run_benchmark(spec_path, out, workloads=["nope"], log=lambda *_: None)
    with pytest.raises(OptbenchError, match="--report-only"):
        run_benchmark(spec_path, tmp_path / "missing", report_only=True, log=lambda *_: None)
    with pytest.raises(OptbenchError, match="--backend"):
        run_benchmark(spec_path, out, backend="mpi", log=lambda *_: None)


def test_bad_spec_is_a_one_line_error(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "workloads": {"w": {"config": "nope.yaml", "metric": "m", "goal": "max", "target": 1}},
                "submissions": {"a": {}},
            }
        )
    )
    with pytest.raises(OptbenchError, match="nope.yaml does not exist"):
        run_benchmark(p, tmp_path / "o", log=lambda *_: None)
    p.write_text(yaml.safe_dump({"workloads": {}, "submissions": {"a": {}}, "trails": 3}))
    with pytest.raises(OptbenchError, match="trails: unknown key"):
        run_benchmark(p, tmp_path / "o", log=lambda *_: None)


def test_cli_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from iclab.cli import app

    r = CliRunner().invoke(app, ["optbench", "--scale", "huge"])
    assert r.exit_code == 2 and "--scale 'huge'" in r.output
    r = CliRunner().invoke(app, ["optbench", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2 and "not found" in r.output


def test_shipped_specs_plan(tmp_path):
    """The default and full specs load and every trial config validates (nothing is trained)."""
    from iclab.optbench import CONFIG_DIR, load_spec
    from iclab.optbench.bench import plan

    for name in ("default.yaml", "full.yaml"):
        spec, d = load_spec(CONFIG_DIR / name)
        trials = plan(spec, d, tmp_path)
        assert len(trials) == len(spec.workloads) * len(spec.submissions) * spec.studies * spec.trials
        assert len({t.run_dir for t in trials}) == len(trials)
