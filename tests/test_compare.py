"""`iclab compare`: runs every config x seed once, reuses finished runs, aggregates with a t interval."""

import json
import math
import statistics

import pytest
import torch
from _faultkit import write_yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.experiments import GridError, parse_seeds
from iclab.stats import t_interval
from iclab.workloads import make_workload


def _cfg(**model):
    return {
        "seed": 0,
        "task": {"name": "linear_regression", "n_dims": 3, "n_points": 7},
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32, **model},
        "training": {"steps": 10, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
        "eval": {"n_prompts": 40, "batch_size": 20},
        "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
    }


def test_t_interval_against_a_hand_computation():
    vals = [1.0, 2.0, 4.0]
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert t_interval(vals) == pytest.approx(4.302652729911275 * sd / math.sqrt(3))  # t_{0.975, 2}
    assert t_interval([3.0]) == 0.0


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("2-4") == [2, 3, 4] and parse_seeds("1,5") == [1, 5]
    with pytest.raises(GridError, match="--seeds 'x'"):
        parse_seeds("x")


def test_compare_trains_each_pair_once_and_tabulates(tmp_path):
    a = write_yaml(tmp_path / "a.yaml", _cfg())
    b = write_yaml(
        tmp_path / "b.yaml",
        _cfg(
            n_layer=1,
            loops=2,
            loop_window=2,
            loop_loss="last",
            injection="none",
            pos_embedding="once",
            final_norm="once",
        ),
    )
    out = tmp_path / "cmp"
    args = ["compare", str(a), str(b), "--seeds", "2", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "compare.json").read_text())["configs"]
    for name in ("a", "b"):
        vals = [json.loads((out / name / f"seed{s}" / "eval.json").read_text())["model"]["mean"][6] for s in (0, 1)]
        assert res[name]["values"] == vals and res[name]["mean"] == pytest.approx(statistics.fmean(vals))
        assert res[name]["ci95"] == pytest.approx(t_interval(vals))
    assert res["a"]["params"] > res["b"]["params"]  # 2 layers vs 1 layer applied twice: same block compute
    assert res["a"]["flops_per_step"] == pytest.approx(res["b"]["flops_per_step"], rel=0.01)
    for f in ("compare.csv", "compare.md", "compare.png"):
        assert (out / f).is_file()
    stamp = (out / "a" / "seed0" / "model.safetensors").stat().st_mtime_ns
    r2 = CliRunner().invoke(app, args)  # a second time: nothing is trained again
    assert r2.exit_code == 0 and "finished, reused" in r2.output
    assert (out / "a" / "seed0" / "model.safetensors").stat().st_mtime_ns == stamp
    # --reference a: b's paired difference to a, by seed, against scipy's paired t-test
    from scipy import stats as sps

    r3 = CliRunner().invoke(app, [*args, "--reference", "a"])
    assert r3.exit_code == 0, r3.output
    res = json.loads((out / "compare.json").read_text())
    assert res["reference"] == "a" and res["configs"]["a"]["vs_reference"] is None
    d = res["configs"]["b"]["vs_reference"]
    diffs = [vb - va for va, vb in zip(res["configs"]["a"]["values"], res["configs"]["b"]["values"])]
    half = sps.t.ppf(0.975, 1) * statistics.stdev(diffs) / 2**0.5
    assert d["diff"] == pytest.approx(statistics.fmean(diffs)) and d["n"] == 2
    assert [d["lo"], d["hi"]] == pytest.approx([statistics.fmean(diffs) - half, statistics.fmean(diffs) + half])
    assert d["p"] == pytest.approx(sps.ttest_rel(res["configs"]["b"]["values"], res["configs"]["a"]["values"]).pvalue)
    assert " - a (paired by seed, 95% CI) | p (paired t) |" in (out / "compare.md").read_text()
    assert "| a |" in (out / "compare.md").read_text() and "reference" in (out / "compare.md").read_text()


def test_an_unknown_reference_is_refused_before_anything_is_written(tmp_path):
    a = write_yaml(tmp_path / "a.yaml", _cfg())
    out = tmp_path / "cmp"
    r = CliRunner().invoke(app, ["compare", str(a), "--seeds", "2", "--out", str(out), "--reference", "nope"])
    assert r.exit_code == 2 and "--reference 'nope' is not one of the compared names: a" in r.output
    assert not out.exists()


def test_loop_loss_last_trains_only_the_final_iteration():
    cfg = validate(_cfg(n_layer=1, loops=3, loop_window=3, loop_loss="last"))
    w = make_workload(cfg)
    torch.manual_seed(0)
    model = w.build_model()
    xs, ys = w.batch(0, {"points": 7, "dims": 3, "loops": 3}, torch.device("cpu"))
    preds = model(xs, ys, loops=3, window=3)
    assert torch.equal(w.loss(model, (xs, ys), {"loops": 3}), ((preds[-1] - ys) ** 2).mean())
    mean = validate(_cfg(n_layer=1, loops=3, loop_window=3))
    assert torch.allclose(
        make_workload(mean).loss(model, (xs, ys), {"loops": 3}), sum(((p - ys) ** 2).mean() for p in preds) / 3
    )


def test_a_run_that_cannot_start_is_exit_2_and_writes_nothing(tmp_path):
    cfg = _cfg()
    cfg["training"]["device"] = "cuda:99"
    a = write_yaml(tmp_path / "a.yaml", cfg)
    out = tmp_path / "cmp"
    r = CliRunner().invoke(app, ["compare", str(a), "--seeds", "1", "--out", str(out)])
    assert r.exit_code == 2 and "1 run(s) did not finish" in r.output and "cuda:99" in r.output, r.output
    assert not out.exists()
