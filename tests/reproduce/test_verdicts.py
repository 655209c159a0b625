"""Three-valued verdicts (iclab/reproduce/verdicts.py) on hand-made per-seed values, and `--recheck` from a stored
result.json."""

import json
import math
import statistics

import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from iclab import stats
from iclab.cli import app
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    Verdict,
    combine,
    decide,
    equivalent,
    greater,
    judge,
    less,
)


def test_paired_less_three_ways_with_the_interval_by_hand():
    a, b = [0.10, 0.12, 0.11, 0.13], [0.20, 0.21, 0.19, 0.24]
    out = decide(less("a", "b"), {"a": a, "b": b})
    d = [x - y for x, y in zip(a, b)]
    h = sps.t.ppf(0.975, 3) * statistics.stdev(d) / 2
    assert out["status"] == SUPPORTED and out["n"] == 4
    assert out["effect"] == pytest.approx(statistics.fmean(d))
    assert out["ci95"] == pytest.approx([statistics.fmean(d) - h, statistics.fmean(d) + h])
    assert out["p_one_sided"] == pytest.approx(sps.ttest_rel(a, b, alternative="less").pvalue)
    assert out["sign_test"] == {"below": 4, "above": 0, "p": pytest.approx(0.125)}
    assert decide(less("b", "a"), {"a": a, "b": b})["status"] == CONTRADICTED
    # a margin: b is within 0.15 above a
    assert decide(less("b", "a", 0.15), {"a": a, "b": b})["status"] == SUPPORTED
    assert decide(greater("b", "a", 0.15), {"a": a, "b": b})["status"] == CONTRADICTED


def test_inconclusive_says_how_many_seeds_the_spread_needs():
    per = {"a": [0.1, 0.3, 0.05, 0.2], "b": [0.15, 0.2, 0.1, 0.3]}
    out = decide(less("a", "b"), per)
    d = [x - y for x, y in zip(per["a"], per["b"])]
    need = stats.seeds_needed(statistics.fmean(d), statistics.stdev(d))
    assert out["status"] == INCONCLUSIVE and out["seeds_needed"] == need
    assert f"~{need} usable seeds would decide it" in out["line"]


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_seeds_are_inconclusive_whatever_the_values(n):
    per = {"a": [0.0] * n, "b": [10.0 + i for i in range(n)]}
    out = decide(less("a", "b"), per)
    assert out["status"] == INCONCLUSIVE and f"only {n} usable seed(s)" in out["line"]
    assert judge([less("a", "b")], Verdict("s", per_seed=per)).status == INCONCLUSIVE


def test_nan_seeds_are_counted_and_named_not_dropped_silently():
    per = {"a": [0.1, math.nan, 0.12, None, 0.11, 0.1], "b": [0.5, 0.5, 0.52, 0.5, 0.51, 0.5]}
    out = decide(less("a", "b"), per)
    assert out["n"] == 4 and out["n_total"] == 6 and out["seeds"] == [0, 2, 4, 5]
    assert "not finite (diverged or never reached) on seed(s) 1, 3" in out["line"]
    assert out["status"] == SUPPORTED


def test_the_plateau_is_reported_with_wilson_and_compared_on_the_seeds_that_learned():
    # seed 0 stuck under b, seed 3 stuck under a: the comparison is on seeds 1, 2, 4
    per = {"a": [0.02, 0.03, 0.025, 0.9, 0.03], "b": [0.75, 0.05, 0.045, 0.04, 0.05]}
    out = decide(less("a", "b", learned_below=0.2), per)
    assert out["seeds"] == [1, 2, 4] and out["n"] == 3
    assert out["learned"]["a"]["learned"] == 4 and out["learned"]["b"]["of"] == 5
    assert out["learned"]["a"]["wilson95"] == pytest.approx(stats.wilson_interval(4, 5))
    assert out["status"] == SUPPORTED and "compared on the 3 seed(s) that learned under all: [1, 2, 4]" in out["line"]
    # the means over all seeds say the opposite (a's stuck seed weighs more): the filter is what decides
    assert statistics.fmean(per["a"]) > statistics.fmean(per["b"])


def test_equivalence_by_tost_three_ways():
    base = [3.50, 3.52, 3.49, 3.51, 3.50]
    same = [x + d for x, d in zip(base, [0.004, -0.003, 0.002, 0.0, -0.001])]
    out = decide(equivalent("r", "n", 0.03), {"r": same, "n": base})
    diffs = [x - y for x, y in zip(same, base)]
    assert out["status"] == SUPPORTED and out["p_tost"] == pytest.approx(stats.tost(diffs, 0.03).p)
    worse = [x + 0.2 + d for x, d in zip(base, [0.004, -0.003, 0.002, 0.0, -0.001])]
    assert decide(equivalent("r", "n", 0.03), {"r": worse, "n": base})["status"] == CONTRADICTED
    noisy = [x + d for x, d in zip(base, [0.05, -0.04, 0.03, -0.05, 0.0])]
    out = decide(equivalent("r", "n", 0.03), {"r": noisy, "n": base})
    assert out["status"] == INCONCLUSIVE and out["seeds_needed"] > 5
    with pytest.raises(ValueError):
        equivalent("r", "n", 0.0)


def test_log_tests_are_on_the_ratio_per_seed():
    per = {"sgd": [3.0, 5.0, 4.0], "adam": [0.5, 0.5, 0.4]}  # ratios 6, 10, 10
    out = decide(greater("sgd", "adam", math.log(3), log=True), per)
    assert math.exp(out["effect"]) == pytest.approx((6 * 10 * 10) ** (1 / 3))
    assert out["status"] == SUPPORTED and "x" in out["line"]
    zero = decide(greater("sgd", "adam", 0.0, log=True), {"sgd": [1.0, 2.0, 0.0, 3.0], "adam": [1.0] * 4})
    assert "not positive on seed(s) 2" in zero["line"] and zero["n"] == 3


def test_an_exact_value_on_the_margin_contradicts_a_strict_claim():
    # the loop schedule reaches model.loops on every seed: "never reaches it" is false, not undecided
    out = decide(less("reached", "max"), {"reached": [10, 10, 10], "max": [10, 10, 10]})
    assert out["status"] == CONTRADICTED


def test_missing_quantities_and_combining():
    out = decide(less("a", "b"), {"a": [1.0, 2.0, 3.0]})
    assert out["status"] == INCONCLUSIVE and "per-seed values of b are not recorded" in out["line"]
    out = decide(less("a", "b"), {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0]})
    assert out["status"] == INCONCLUSIVE and "not pairable" in out["line"]
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([SUPPORTED, INCONCLUSIVE, CONTRADICTED]) == CONTRADICTED
    assert combine([]) == INCONCLUSIVE
    v = judge([], Verdict("nothing"))
    assert v.status == INCONCLUSIVE and v.tests[0]["line"] == "no pre-registered test"


def test_a_recorded_mean_and_half_width_give_the_same_interval_as_the_values():
    vals = [0.12, 0.18, 0.15, 0.2, 0.1]
    m, h = stats.mean_ci(vals)
    from_values = decide(less("x", 0.1), {"x": vals})
    from_summary = decide(less("x", 0.1), {"x": {"mean": m, "half": h, "n": 5}})
    assert from_summary["ci95"] == pytest.approx(from_values["ci95"])
    assert from_summary["status"] == from_values["status"] == INCONCLUSIVE
    # two varying quantities cannot be paired from their means
    paired = decide(less("x", "y"), {"x": {"mean": m, "half": h, "n": 5}, "y": {"mean": m, "half": h, "n": 5}})
    assert paired["status"] == INCONCLUSIVE and "only means were recorded" in paired["line"]


def test_every_built_entry_has_tests_shown_by_list():
    built = [REPRODUCTIONS.get(n) for n in REPRODUCTIONS.names() if REPRODUCTIONS.get(n).built]
    assert all(e.tests for e in built)
    res = CliRunner().invoke(app, ["reproduce", "--list"])
    assert res.exit_code == 0
    assert res.output.count("    test:") == sum(len(e.tests) for e in built)
    assert "|mean(Reflex 6L 4-2-2 - nanoGPT 6L)| < 0.03 (TOST" in res.output


def _stored(tmp_path, per_seed):
    d = tmp_path / "garg-linear"
    d.mkdir(parents=True)
    rec = {
        "name": "garg-linear",
        "scale": "tiny",
        "seeds": 5,
        "passed": True,
        "summary": "at k=6: ...",
        "numbers": {},
        "details": [],
        "train_wall_s": 60.0,
    }
    if per_seed is not None:
        rec["per_seed"] = per_seed
    (d / "result.json").write_text(json.dumps(rec))
    return d / "result.json"


def test_recheck_decides_again_from_the_stored_per_seed_values(tmp_path):
    per = {"model": [0.012, 0.029, 0.015, 0.011, 0.018], "least squares": [0.0] * 5, "3-NN": [0.627] * 5}
    path = _stored(tmp_path, per)
    res = CliRunner().invoke(app, ["reproduce", "garg-linear", "--recheck", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "SUPPORTED garg-linear" in res.output and "model - least squares = +0.017" in res.output
    rec = json.loads(path.read_text())
    assert rec["verdict"] == SUPPORTED and "passed" not in rec and len(rec["tests"]) == 2
    assert (path.parent / "verdict.png").stat().st_size > 0
    res = CliRunner().invoke(app, ["reproduce", "--summary", "--out", str(tmp_path)])
    assert "| garg-linear | tiny | 5 | **SUPPORTED** | model - least squares < 0.05: +0.017" in res.output


def test_recheck_without_per_seed_values_is_a_one_line_error_and_writes_nothing(tmp_path):
    path = _stored(tmp_path, None)
    before = path.read_text()
    res = CliRunner().invoke(app, ["reproduce", "garg-linear", "--recheck", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "has no per_seed section" in res.output
    assert path.read_text() == before and not (path.parent / "verdict.png").exists()
    res = CliRunner().invoke(app, ["reproduce", "garg-trees", "--recheck", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no result.json of 'garg-trees'" in res.output


def test_small_scales_plan_valid_configs_with_their_overrides(tmp_path):
    from iclab.reproduce.runner import plan

    small = [e for n in REPRODUCTIONS.names() if (e := REPRODUCTIONS.get(n)).built and "small" in e.configs]
    assert {e.name for e in small} >= {"seed001-reuse", "seed002-reflex", "garg-curriculum", "garg-sparse"}
    for e in small:
        runs = plan(e, "small", None, tmp_path)  # loads every config with the scale's overrides (raises if invalid)
        assert all(len(rs) == e.seeds["small"] >= 3 for rs in runs.values()), e.name
        assert e.minutes["small"] / (e.seeds["small"] * len(runs)) <= 30  # the budget: 30 min per run on 2 cores
    reuse = plan(REPRODUCTIONS.get("seed001-reuse"), "small", 1, tmp_path)["6 layers"][0].cfg
    assert reuse.training.batch_size == 128 and reuse.training.steps == 6000


def test_next_seeds_asks_for_what_the_spread_needs_up_to_the_maximum():
    from iclab.reproduce.recheck import next_seeds

    res = {"verdict": INCONCLUSIVE, "seeds": 5, "tests": [{"status": INCONCLUSIVE, "seeds_needed": 9, "n": 5}]}
    assert next_seeds(res, 15) == 9 and next_seeds(res, 7) == 7 and next_seeds(res, 5) is None
    # the plateau left 2 of 5 seeds usable: 9 usable ones need ~23 seeds
    res["tests"][0]["n"] = 2
    assert next_seeds(res, 30) == 23
    assert next_seeds({**res, "verdict": SUPPORTED}, 30) is None
    hopeless = {"verdict": INCONCLUSIVE, "seeds": 5, "tests": [{"status": INCONCLUSIVE, "seeds_needed": None, "n": 5}]}
    assert next_seeds(hopeless, 30) is None


def test_adaptive_seeds_add_runs_while_inconclusive(tmp_path):
    from iclab.reproduce.base import Command, Entry

    calls = []

    def run_noisy(out, seed=0):
        calls.append(seed)
        out.mkdir(parents=True, exist_ok=True)
        (out / "v.json").write_text(json.dumps({"value": 1.0 + (0.3 if seed % 2 else -0.3) + 0.01 * seed}))

    entry = Entry(
        name="toy-adaptive",
        source="a test",
        claim="the value is below 1.4",
        criterion="mean below 1.4",
        configs={"tiny": {"noisy": Command(run_noisy)}},
        check=lambda runs: Verdict("v", per_seed={"value": [r.json("v.json")["value"] for r in runs["noisy"]]}),
        figure=lambda runs, path: path.write_bytes(b"png"),
        seeds={"tiny": 3},
        max_seeds={"tiny": 12},
        tests=[less("value", 1.4)],
    )
    REPRODUCTIONS.register(entry.name)(entry)
    try:
        res = CliRunner().invoke(app, ["reproduce", entry.name, "--adaptive", "--out", str(tmp_path)])
        assert res.exit_code == 0, res.output
        assert "INCONCLUSIVE at 3 seeds; running" in res.output
        rec = json.loads((tmp_path / entry.name / "tiny" / "result.json").read_text())
        assert rec["verdict"] == SUPPORTED and 3 < rec["seeds"] <= 12
        assert sorted(calls) == list(range(rec["seeds"]))  # every seed ran once: the first ones were reused
    finally:
        REPRODUCTIONS._items.pop(entry.name)
        REPRODUCTIONS._help.pop(entry.name)


def test_seeds_with_equal_or_close_values_share_one_label():
    """verdict.png: dots closer than the tolerance, equal ones included, get one label ("0,1", left to right);
    distant ones keep their own."""
    from iclab.reproduce.plots import label_groups

    assert label_groups([0.0, 0.0, 1.0], tol=0.1) == [[0, 1], [2]]
    assert label_groups([0.58, 0.5, 2.0, 0.52], tol=0.05) == [[1, 3], [0], [2]]
    assert label_groups([0.5, 0.54, 0.58], tol=0.05) == [[0, 1, 2]]  # a chain of close dots stays one group
    assert label_groups([], tol=0.1) == []


def test_a_log_axis_band_is_the_geometric_interval_and_stays_above_zero():
    from iclab.plotting import plt
    from iclab.reproduce.plots import seed_band

    curves = [[1.0, 1e-3], [1e-2, 1e-3], [1.0, 1e-1]]  # seeds three orders of magnitude apart at step 0
    for log in (False, True):
        fig, ax = plt.subplots()
        seed_band(ax, [0, 1], curves, "model", "tab:blue", log=log)
        mean_line = ax.lines[0].get_ydata()
        lower = ax.collections[0].get_paths()[0].vertices[:, 1].min()
        plt.close(fig)
        if log:  # 10 ** (mean - t * se) of the log10 values, by hand, lowest of the two steps
            logs = [[math.log10(c[i]) for c in curves] for i in (0, 1)]
            assert mean_line[0] == pytest.approx(10 ** statistics.fmean(logs[0]))  # 10 ** ((0 - 2 + 0) / 3)
            t = sps.t.ppf(0.975, 2)
            ends = [10 ** (statistics.fmean(v) - t * statistics.stdev(v) / math.sqrt(3)) for v in logs]
            assert lower == pytest.approx(min(ends), rel=1e-6)
            assert lower > 0
        else:  # the arithmetic band goes below zero: what a log axis cannot show
            assert mean_line[0] == pytest.approx(statistics.fmean(c[0] for c in curves))
            assert lower < 0


def test_a_panel_says_no_seed_was_usable_rather_than_not_recorded():
    """verdict.png: a test whose per-seed values exist but whose seeds all stayed on the plateau is not
    described as unrecorded (seed000-curriculum-shapes: cos learned on 0 of 3 seeds)."""
    from iclab.reproduce.plots import panel_note

    per = {"a": [0.02, 0.03, 0.025], "b": [0.9, 0.95, 0.8]}
    none_learned = decide(less("a", "b", learned_below=0.2), per)
    assert panel_note(none_learned) == "difference; 0 of 3 seeds usable"
    assert panel_note(decide(less("a", "b"), per)) == "difference; 3 of 3 seeds"
    assert panel_note(decide(less("a", "c"), per)) == "per-seed values not recorded"


def test_the_published_table_is_what_the_published_records_say():
    """results/reproduce/README.md shows `iclab reproduce --summary` of the result.json files beside it, and each
    record's verdict is what its own tests decide (a hand-edited table or record fails here)."""
    from _faultkit import REPO

    from iclab.reproduce.recheck import summary_table

    out = REPO / "results" / "reproduce"
    assert summary_table(out) in (out / "README.md").read_text()
    for path in sorted(out.glob("*/result.json")):
        r = json.loads(path.read_text())
        statuses = {t["status"] for t in r["tests"]}
        expected = CONTRADICTED if CONTRADICTED in statuses else SUPPORTED if statuses == {SUPPORTED} else INCONCLUSIVE
        assert r["verdict"] == expected, path
