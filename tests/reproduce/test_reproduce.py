"""`iclab reproduce`: the registry, the runner (runs reused, configs hashed), and the entries' criteria against
hand-made evaluations."""

import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import load_config
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Command, Entry, Planned, Run, Verdict, mean_ci
from iclab.reproduce.runner import REPO, ReproduceError, config_digest, plan, reproduce, summary_table
from iclab.reproduce.trajectory import steps_to


def test_every_built_entry_names_configs_that_load_at_every_scale():
    built = [REPRODUCTIONS.get(n) for n in REPRODUCTIONS.names() if REPRODUCTIONS.get(n).built]
    assert len(built) >= 21
    for e in built:
        assert e.criterion and e.claim and "tiny" in e.configs
        for scale, cfgs in e.configs.items():
            for label, rel in cfgs.items():
                if isinstance(rel, Command):
                    assert callable(rel.fn)
                    continue
                load_config(REPO / rel)  # raises on a missing file or an invalid config


@pytest.fixture
def planned_entry():
    p = Planned("toy-planned", "a test", "a claim another issue builds", "issue 0")
    REPRODUCTIONS.register(p.name, help=p.claim)(p)
    yield p
    REPRODUCTIONS._items.pop(p.name)
    REPRODUCTIONS._help.pop(p.name)


def test_list_shows_every_entry_with_its_criterion_and_the_planned_ones(planned_entry):
    res = CliRunner().invoke(app, ["reproduce", "--list"])
    assert res.exit_code == 0, res.output
    for name in REPRODUCTIONS.names():
        assert name in res.output
    assert res.output.count("criterion:") == sum(REPRODUCTIONS.get(n).built for n in REPRODUCTIONS.names())
    assert "toy-planned" in res.output and "NOT BUILT (issue 0)" in res.output


def test_unknown_and_unbuilt_entries_are_one_line_errors(tmp_path, planned_entry):
    res = CliRunner().invoke(app, ["reproduce", "no-such-entry", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown reproduction 'no-such-entry'" in res.output
    res = CliRunner().invoke(app, ["reproduce", "toy-planned", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not built yet" in res.output
    res = CliRunner().invoke(app, ["reproduce", "garg-linear", "--scale", "huge", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no 'huge' scale" in res.output


def test_the_digest_ignores_seed_and_threads_but_not_the_recipe():
    path = REPO / "configs/garg/tiny/linear_regression.yaml"
    a = load_config(path, ["seed=0"])
    assert config_digest(a) == config_digest(load_config(path, ["seed=3", "training.threads=1"]))
    assert config_digest(a) != config_digest(load_config(path, ["training.lr=1e-3"]))
    # a setting written out at its default (as a key added to iclab later is) keeps the digest, options included
    assert config_digest(a) == config_digest(
        load_config(
            path, ["training.optimizer.options.momentum=0.95", "training.grad_clip=1.0", "task.options.scale=1.0"]
        )
    )
    assert config_digest(a) != config_digest(load_config(path, ["training.optimizer.options.momentum=0.9"]))


# --- the runner, with a throwaway entry on a config that trains in seconds -------------------------------------
@pytest.fixture
def toy_entry(tmp_path, tiny_cfg_dict):
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg_dict))
    calls = {"evaluate": 0}

    def evaluate(run):
        calls["evaluate"] += 1

    def check(runs):
        errs = [r.evaluation["model"]["mean"][-1] for r in runs["model"]]
        return Verdict(mean_ci(errs)[0] < 100.0, f"error {mean_ci(errs)[0]:.3f}", {"error": mean_ci(errs)[0]})

    def figure(runs, path):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([r.evaluation["model"]["mean"][-1] for r in runs["model"]], "o")
        fig.savefig(path)
        plt.close(fig)

    entry = Entry(
        name="toy-test-entry",
        source="a test",
        claim="it trains",
        criterion="error < 100",
        configs={"tiny": {"model": str(cfg_path)}},
        check=check,
        figure=figure,
        evaluate=evaluate,
        seeds={"tiny": 2},
    )
    REPRODUCTIONS.register(entry.name)(entry)
    yield entry, calls
    REPRODUCTIONS._items.pop(entry.name)
    REPRODUCTIONS._help.pop(entry.name)


def test_reproduce_trains_once_then_reuses_and_writes_result_figure_report(toy_entry, tmp_path):
    entry, calls = toy_entry
    out = tmp_path / "out"
    res = reproduce(entry.name, out=out, log=lambda *_: None)
    assert res["passed"] and res["seeds"] == 2 and calls["evaluate"] == 2
    dest = out / entry.name / "tiny"
    assert json.loads((dest / "result.json").read_text())["passed"] is True
    assert (dest / "figure.png").stat().st_size > 0 and (dest / "report.html").stat().st_size > 0
    table = summary_table(out)
    assert "| toy-test-entry | tiny | 2 | PASS | error " in table
    runs = plan(entry, "tiny", None, out)["model"]
    mtimes = [(r.dir / "model.safetensors").stat().st_mtime_ns for r in runs]
    lines = []
    reproduce(entry.name, out=out, log=lines.append)
    assert [(r.dir / "model.safetensors").stat().st_mtime_ns for r in runs] == mtimes  # nothing retrained
    assert sum("finished, reused" in ln for ln in lines) == 2
    # a changed recipe is a new set of runs, not the stale ones
    changed = plan(entry, "tiny", None, out, overrides=["training.lr=2e-3"])["model"]
    assert {r.dir.parent for r in changed}.isdisjoint({r.dir.parent for r in runs})


def test_cli_exit_code_is_1_on_fail(toy_entry, tmp_path, monkeypatch):
    entry, _ = toy_entry
    monkeypatch.setattr(entry, "check", lambda runs: Verdict(False, "made to fail"))
    res = CliRunner().invoke(app, ["reproduce", entry.name, "--seeds", "1", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "FAIL toy-test-entry: made to fail" in res.output


def test_seeds_must_be_positive(toy_entry, tmp_path):
    with pytest.raises(ReproduceError, match="--seeds 0"):
        plan(toy_entry[0], "tiny", 0, tmp_path)


def test_command_entries_run_once_per_seed_and_are_reused(tmp_path):
    calls = []

    def run_toy(out, seed=0, scale=1.0):
        calls.append((seed, scale))
        out.mkdir(parents=True, exist_ok=True)
        (out / "toy.json").write_text(json.dumps({"value": seed * scale}))

    def check(runs):
        vals = [r.json("toy.json")["value"] for r in runs["toy"]]
        return Verdict(sum(vals) == 3.0, f"sum {sum(vals)}")

    def figure(runs, path):
        path.write_bytes(b"png")

    entry = Entry(
        name="toy-command-entry",
        source="a test",
        claim="c",
        criterion="sum 3",
        configs={"tiny": {"toy": Command(run_toy, {"scale": 1.0})}},
        check=check,
        figure=figure,
        seeds={"tiny": 3},
    )
    REPRODUCTIONS.register(entry.name)(entry)
    try:
        res = reproduce(entry.name, out=tmp_path, log=lambda *_: None, report=False)
        assert res["passed"] and res["seeds"] == 3 and sorted(calls) == [(0, 1.0), (1, 1.0), (2, 1.0)]
        reproduce(entry.name, out=tmp_path, log=lambda *_: None, report=False)
        assert len(calls) == 3  # reused
        # other arguments are other runs; --set does not apply to a function
        other = plan(
            Entry(**{**entry.__dict__, "configs": {"tiny": {"toy": Command(run_toy, {"scale": 2.0})}}}),
            "tiny",
            1,
            tmp_path,
        )["toy"][0]
        assert other.dir.parent != plan(entry, "tiny", 1, tmp_path)["toy"][0].dir.parent
        with pytest.raises(ReproduceError, match="--set does not apply to 'toy'"):
            plan(entry, "tiny", 1, tmp_path, overrides=["training.lr=1"])
        # an interrupted command (no timing.json) is redone
        (plan(entry, "tiny", 1, tmp_path)["toy"][0].dir / "timing.json").unlink()
        reproduce(entry.name, seeds=1, out=tmp_path, log=lambda *_: None, report=False)
        assert len(calls) == 4
    finally:
        REPRODUCTIONS._items.pop(entry.name)
        REPRODUCTIONS._help.pop(entry.name)


# --- the criteria, on evaluations made by hand ---------------------------------------------------------------
def _run(tmp_path, label, seed, files: dict, cfg_rel="configs/garg/tiny/linear_regression.yaml"):
    d = tmp_path / label.replace(" ", "_").replace(",", "") / f"seed{seed}"
    d.mkdir(parents=True)
    for name, obj in files.items():
        (d / name).write_text(json.dumps(obj))
    return Run(label, seed, d, load_config(REPO / cfg_rel, [f"seed={seed}"]))


def _ev(model, **baselines):
    n = len(model)
    return {
        "n_dims": 3,
        "n_points": n,
        "model": {"mean": model},
        "baselines": {b: {"mean": v} for b, v in baselines.items()},
    }


def test_garg_linear_criterion(tmp_path):
    check = REPRODUCTIONS.get("garg-linear").check
    ls, knn = [1, 0.5, 0.1, 0, 0, 0, 0], [1, 1, 1, 1, 0.8, 0.7, 0.6]
    good = [
        _run(
            tmp_path / "g", "model", s, {"eval.json": _ev([1, 0.6, 0.3, 0.1, 0.05, 0.04, v], least_squares=ls, knn=knn)}
        )
        for s, v in enumerate([0.02, 0.04])
    ]
    v = check({"model": good})
    assert v.passed and v.numbers["k"] == 6 and v.numbers["model"] == pytest.approx(0.03)
    bad = [
        _run(tmp_path / "b", "model", s, {"eval.json": _ev([1] * 6 + [v], least_squares=ls, knn=knn)})
        for s, v in enumerate([0.02, 0.2])
    ]
    assert not check({"model": bad}).passed  # mean 0.11 > 0 + 0.05


def test_yang_flat_criterion(tmp_path):
    check = REPRODUCTIONS.get("yang-flat").check

    def lp(curve):
        return {
            "loops.json": {
                "loops": list(range(1, len(curve) + 1)),
                "last_point": curve,
                "trained_loops": 3,
                "n_points": 9,
                "n_dims": 4,
            }
        }

    flat = [_run(tmp_path / "f", "looped", 0, lp([0.9, 0.3, 0.05, 0.05, 0.06, 0.05]))]
    assert check({"looped": flat}).passed
    rising = [_run(tmp_path / "r", "looped", 0, lp([0.9, 0.3, 0.05, 0.05, 0.2, 0.5]))]
    v = check({"looped": rising})
    assert not v.passed and v.numbers["rise"] == pytest.approx(0.45)


def test_pos_norm_criterion_and_main_effects(tmp_path):
    entry = REPRODUCTIONS.get("seed000-pos-norm")
    labels = list(entry.configs["tiny"])
    errs = dict(zip(labels, [0.1, 0.3, 0.2, 0.5]))
    runs = {
        lab: [_run(tmp_path, lab, 0, {"eval.json": _ev([1] * 6 + [e], least_squares=[0] * 7)})]
        for lab, e in errs.items()
    }
    v = entry.check(runs)
    assert v.passed
    assert "position once - every = +0.2500" in v.details[0] and "norm once - every = +0.1500" in v.details[0]


def test_steps_to_reads_the_first_checkpoint_at_or_below_the_target():
    curve = {"steps": [100, 200, 300, 400], "error": [0.5, 0.1, 0.2, 0.05]}
    assert steps_to(curve, 0.1) == 200
    assert steps_to(curve, 0.01) == math.inf


def test_seed001_reuse_and_surgery_criteria(tmp_path):
    reuse = REPRODUCTIONS.get("seed001-reuse")
    ls = [1, 0.5, 0.1, 0, 0, 0, 0]
    six = [
        _run(tmp_path / "a", "6 layers", s, {"eval.json": _ev([1] * 6 + [v], least_squares=ls)})
        for s, v in enumerate([0.05, 0.07])
    ]
    rec = [
        _run(tmp_path / "b", "3 layers x 2", s, {"eval.json": _ev([1] * 6 + [v], least_squares=ls)})
        for s, v in enumerate([0.04, 0.06])
    ]
    v = reuse.check({"6 layers": six, "3 layers x 2": rec})
    assert v.passed and v.numbers["wins"] == 2
    assert not reuse.check({"6 layers": rec, "3 layers x 2": six}).passed

    surgery = REPRODUCTIONS.get("seed001-surgery")

    def sj(orig, **others):
        variants = {"original": {"at_k": orig}, **{n: {"at_k": x} for n, x in others.items()}}
        return {
            "surgery_reproduce.json": {
                "summary_position": 6,
                "variants": variants,
                "reference": {"least_squares": {"at_k": 0.0}},
            }
        }

    worse = [_run(tmp_path / "c", "6 layers", s, sj(0.05, reverse=0.9, shuffle=0.3 + 0.1 * s)) for s in range(2)]
    v = surgery.check({"6 layers": worse})
    assert v.passed and v.numbers["best"] == "shuffle"
    helps = [_run(tmp_path / "d", "6 layers", s, sj(0.05, **{"duplicate:2": 0.02})) for s in range(2)]
    assert not surgery.check({"6 layers": helps}).passed
    surgery.figure({"6 layers": worse}, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_seed002_reflex_criterion(tmp_path):
    entry = REPRODUCTIONS.get("seed002-reflex")

    def runs(gap):
        return {
            label: [
                _run(
                    tmp_path / f"{gap}{i}",
                    label,
                    s,
                    {"eval.json": {"bits_per_char": 3.5 + (gap if i else 0) + 0.01 * s}},
                )
                for s in range(2)
            ]
            for i, label in enumerate(["nanoGPT 6L", "Reflex 6L 4-2-2", "Reflex 6L 5-2-1"])
        }

    assert entry.check(runs(0.01)).passed
    assert not entry.check(runs(-0.1)).passed  # a clear gain is not what the seed found
    assert entry.check(runs(0.1)).passed  # worse at nanoGPT's hyperparameters: as the seed found
    entry.figure(runs(0.02), tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0


def test_curriculum_shapes_counts_slower_degradation_only_for_learned_models(tmp_path):
    entry = REPRODUCTIONS.get("seed000-curriculum-shapes")

    def curve(at_train, at_long):  # trained on 10 points (k=9), evaluated to k=19
        return _ev([1.0] * 9 + [at_train] + [at_train] * 9 + [at_long])

    def runs(cos_train, cos_long):
        vals = {"linear (step)": (0.03, 0.3), "sqrt": (0.05, 0.2), "cos": (cos_train, cos_long), "log2": (0.04, 0.3)}
        return {
            lab: [_run(tmp_path / f"{cos_train}", lab, 0, {"eval.json": curve(*v)}, rel)]
            for (lab, v), rel in zip(vals.items(), entry.configs["tiny"].values())
        }

    v = entry.check(runs(0.95, 0.97))  # cos at chance: growth x1.02 but it never learned
    assert "sqrt and cos learned and degrade slower: False" in v.details[0] and "cos" in v.details[1]
    v = entry.check(runs(0.06, 0.2))
    assert "sqrt and cos learned and degrade slower: True" in v.details[0] and v.details[1].endswith("none")
