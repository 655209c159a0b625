"""The shipped looped configs: they load, they say what the papers/seeds say, each has a tiny twin, and the
tiny ones run end to end (train -> eval.json, loops.json, figures) through the CLI."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import ConfigError, load_config
from iclab.registry import TASKS

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(
    p
    for p in (ROOT / "configs").rglob("*.yaml")  # optbench specs (configs/optbench/*.yaml) are not run
    if p.parent != ROOT / "configs" / "optbench"
)  # configs: tests/optbench/test_optbench.py checks them
LOOPED = ROOT / "configs" / "looped"
runner = CliRunner()


def raw(path):
    return yaml.safe_load(Path(path).read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads(path):
    task = raw(path).get("task", {}).get("name", "linear_regression")
    if task not in TASKS:
        pytest.skip(f"task {task!r} is not registered in this checkout")
    load_config(path)


def test_unknown_task_is_still_an_error():
    with pytest.raises(ConfigError, match="unknown task"):
        load_config(LOOPED / "tiny" / "lr_b30_T15.yaml", ["task.name=no_such_task"])


@pytest.mark.parametrize(
    "name, task, b, T, points, loops_inc",
    [
        ("lr_b30_T15", "linear_regression", 30, 15, 41, 2),
        ("sparse_lr_b20_T10", "sparse_linear_regression", 20, 10, 41, 2),
        ("dt_b70_T15", "decision_tree", 70, 15, 101, 2),
        ("relu2nn_b12_T5", "relu_2nn_regression", 12, 5, 101, 2),
    ],
)
def test_paper_configs_are_yang_et_al(name, task, b, T, points, loops_inc):
    c = raw(LOOPED / f"{name}.yaml")
    m, cur = c["model"], c["curriculum"]
    assert c["task"] == {"name": task, "n_dims": 20, "n_points": points}
    assert (m["n_embd"], m["n_head"], m["n_layer"], m["loops"], m["loop_window"]) == (256, 8, 1, b, T)
    assert (m["injection"], m["pos_embedding"], m["final_norm"]) == ("add", "every_loop", "every_loop")
    assert cur["loops"] == {"start": T, "end": b, "inc": loops_inc, "interval": 500}
    assert cur["dims"] == {"start": 5, "end": 20, "inc": 1, "interval": 5000}
    assert c["training"]["lr"] == 1e-4 and c["training"]["batch_size"] == 64 and c["training"]["steps"] == 500_000


def test_seed000_configs_are_the_groups_setting():
    for path in sorted((LOOPED / "seed000").glob("*.yaml")):
        c = raw(path)
        assert (c["task"]["n_dims"], c["task"]["n_points"], c["training"]["steps"]) == (10, 20, 75_000), path.name
        assert (c["model"]["n_embd"], c["model"]["n_head"]) == (256, 8), path.name
        if path.stem not in ("b30_T10",):
            assert (c["model"]["loops"], c["model"]["loop_window"]) == (20, 5), path.name
    assert raw(LOOPED / "seed000" / "drop_d1_k5.yaml")["model"]["drop_tokens"] == 1
    assert raw(LOOPED / "seed000" / "clm_log2.yaml")["curriculum"]["loops"]["shape"] == "log"


MECHANISM = ("injection", "pos_embedding", "final_norm", "drop_positions")


def test_every_looped_config_has_a_tiny_twin_with_the_same_mechanism():
    full = [p for p in LOOPED.rglob("*.yaml") if "tiny" not in p.parts]
    assert len(full) >= 15
    for p in full:
        twin = p.parent / "tiny" / p.name
        assert twin.is_file(), f"no tiny variant of {p.relative_to(ROOT)}"
        a, b = raw(p), raw(twin)
        assert a["task"]["name"] == b["task"]["name"], p.name
        for k in MECHANISM:
            assert a["model"].get(k) == b["model"].get(k), (p.name, k)
        assert bool(a["model"].get("drop_tokens")) == bool(b["model"].get("drop_tokens")), p.name
        assert a["model"].get("n_layer") == b["model"].get("n_layer"), p.name
        shapes = lambda c: {k: v.get("shape", "step") for k, v in c.get("curriculum", {}).items()}  # noqa: E731
        assert shapes(a) == shapes(b), p.name
        assert b["training"]["device"] == "cpu" and b["training"]["steps"] <= 3000 and b["model"]["n_embd"] <= 64


def _train(cfg_path, out, *extra):
    r = runner.invoke(
        app,
        [
            "train",
            str(cfg_path),
            "--out",
            str(out),
            "training.steps=4",
            "training.warmup_steps=2",
            "eval.n_prompts=20",
            "logging.log_every=2",
            "logging.tensorboard=false",
            "logging.progress=false",
            *extra,
        ],
    )
    assert r.exit_code == 0, r.output
    return r


def test_tiny_looped_and_standard_runs_go_end_to_end(tmp_path):
    loop, std = tmp_path / "loop", tmp_path / "std"
    _train(LOOPED / "tiny" / "lr_b30_T15.yaml", loop, "eval.max_loops=12")
    _train(LOOPED / "tiny" / "lr_standard.yaml", std)
    lp = json.loads((loop / "loops.json").read_text())
    assert lp["loops"] == list(range(1, 13)) and len(lp["last_point"]) == 12 and lp["trained_loops"] == 10
    assert (loop / "error_vs_loops.png").is_file() and not (std / "loops.json").exists()
    recs = [json.loads(x) for x in (loop / "metrics.jsonl").read_text().splitlines()]
    assert all(r["steps_per_s"] > 0 for r in recs) and recs[-1]["curriculum/loops"] == 5

    # re-evaluate with far more loops and longer prompts, then overlay runs in both kinds of figure
    r = runner.invoke(
        app,
        [
            "eval",
            str(loop),
            "--loops",
            "30",
            "--max-loops",
            "40",
            "--n-points",
            "20",
            "--n-prompts",
            "20",
            "--tag",
            "long",
        ],
    )
    assert r.exit_code == 0, r.output
    ev = json.loads((loop / "eval_long.json").read_text())
    assert ev["loops"] == 30 and ev["n_points"] == 20
    assert len(json.loads((loop / "loops_long.json").read_text())["loops"]) == 40
    r = runner.invoke(app, ["plot", str(loop), str(loop), "--tag", "long", "--loops", "--out", str(tmp_path / "l.png")])
    assert r.exit_code == 0 and (tmp_path / "l.png").stat().st_size > 1000
    r = runner.invoke(app, ["plot", str(loop), str(std), "--out", str(tmp_path / "e.png")])
    assert r.exit_code == 0 and (tmp_path / "e.png").stat().st_size > 1000


def test_tiny_token_dropping_run_is_evaluated_per_prefix(tmp_path):
    out = tmp_path / "drop"
    _train(
        LOOPED / "seed000" / "tiny" / "drop_d2_k5.yaml", out, "eval.loops=12", "eval.max_loops=12", "eval.n_points=12"
    )
    ev = json.loads((out / "eval.json").read_text())
    assert len(ev["model"]["mean"]) == 12 and all(v == v for v in ev["model"]["mean"])  # every position, no NaN
    lp = json.loads((out / "loops.json").read_text())
    assert len(lp["all_points"]) == 12


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lr_b30_T15", "lr_standard"])
def test_tiny_linear_regression_configs_learn(tmp_path, name):
    """The full tiny runs (a few minutes each on one core): error at k=2d well below predicting zero."""
    r = runner.invoke(
        app,
        [
            "train",
            str(LOOPED / "tiny" / f"{name}.yaml"),
            "--out",
            str(tmp_path / name),
            "logging.progress=false",
            "logging.tensorboard=false",
        ],
    )
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / name / "eval.json").read_text())
    k = 2 * ev["n_dims"]
    assert ev["model"]["mean"][k] < 0.3, ev["model"]["mean"]


def test_throughput_benchmark_compares_configs_in_one_process(tmp_path):
    import runpy

    bench = runpy.run_path(str(ROOT / "benchmarks" / "loop_throughput.py"))
    tiny = LOOPED / "seed000" / "tiny"
    out = bench["main"](
        [
            str(tiny / "base.yaml"),
            str(tiny / "drop_d100_k5.yaml"),
            "--steps",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "1",
            "--set",
            "training.batch_size=4",
            "--json",
            str(tmp_path / "b.json"),
        ]
    )
    first, second = out["results"]
    assert first["ratio"] == 1.0 and second["steps_per_s"] > 0
    assert first["curriculum"] == {"dims": 4, "points": 10, "loops": 10, "seq_len": 0}  # timed at the full curriculum
    assert json.loads((tmp_path / "b.json").read_text())["results"][1]["config"].endswith("drop_d100_k5.yaml")
