"""The seed004-grokking entry's criterion on hand-made metrics (iclab/reproduce/entries/seed004_grokking.py)."""

import json

from iclab.config import load_config
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Run
from iclab.reproduce.runner import REPO
from iclab.reproduce.verdicts import CONTRADICTED, INCONCLUSIVE, SUPPORTED, judge


def _runs(tmp_path, label, curves):
    runs = []
    for seed, curve in enumerate(curves):
        d = tmp_path / label.replace(" ", "_") / f"seed{seed}"
        d.mkdir(parents=True)
        d.joinpath("metrics.jsonl").write_text(
            "".join(
                json.dumps({"step": s, "loss": 1.0, "train/accuracy": tr, "heldout/accuracy": he}) + "\n"
                for s, tr, he in curve
            )
        )
        runs.append(Run(label, seed, d, load_config(REPO / "configs/grokking/p97.yaml")))
    return runs


def _late(step):
    return [(100, 0.5, 0.01), (1000, 0.995, 0.05), (2000, 1.0, 0.5), (step, 1.0, 0.97)]


def test_grokking_criterion(tmp_path):
    entry = REPRODUCTIONS.get("seed004-grokking")
    no_wd = _runs(tmp_path, "no weight decay", [[(100, 0.5, 0.01), (4000, 1.0, h)] for h in (0.03, 0.02, 0.04)])
    late = _runs(tmp_path, "late", [_late(s) for s in (3000, 3200, 3400)])
    early = _runs(tmp_path, "early", [[(100, 0.5, 0.01), (1000, 0.995, 0.96), (3000, 1.0, 0.99)]] * 3)
    v = judge(entry.tests, entry.check({"weight decay 1": late, "no weight decay": no_wd}))
    assert v.status == SUPPORTED and v.numbers["memorized_at"] == 1000 and v.numbers["grokked_at"] == 3000
    assert v.per_seed["held-out step / train step"] == [3.0, 3.2, 3.4]
    v = judge(entry.tests, entry.check({"weight decay 1": early, "no weight decay": no_wd}))
    assert v.status == CONTRADICTED  # no delay: not grokking
    v = judge(entry.tests, entry.check({"weight decay 1": late, "no weight decay": late}))
    assert v.status == CONTRADICTED  # generalizes without decay too
    one = {"weight decay 1": late[:1], "no weight decay": no_wd[:1]}
    assert judge(entry.tests, entry.check(one)).status == INCONCLUSIVE  # 1 seed: never a verdict
    # a seed that never generalizes is counted and shown, not dropped
    never = _runs(tmp_path, "never", [[(100, 0.5, 0.01), (1000, 0.995, 0.05), (4000, 1.0, 0.3)]])
    v = judge(entry.tests, entry.check({"weight decay 1": late + never, "no weight decay": no_wd + no_wd[:1]}))
    assert v.per_seed["held-out step / train step"][3] != v.per_seed["held-out step / train step"][3]  # NaN
    assert "seed(s) 3" in v.tests[0]["line"] and v.tests[0]["n"] == 3
    entry.figure({"weight decay 1": late, "no weight decay": no_wd}, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").is_file()


def test_grokking_fraction_counts_every_seed_and_draws_the_ones_that_miss(tmp_path):
    entry = REPRODUCTIONS.get("seed004-grokking-fraction")
    # per fraction: the step held-out accuracy reaches 0.97 on each of 3 seeds (None: not within the 5,000 budget)
    grok = {0.3: (4800, None, None), 0.4: (4000, 4200, 4500), 0.5: (3000, 3200, 3400), 0.6: (1100, 1200, 1000)}
    grok[0.7] = (900, 1000, 800)
    runs = {}
    for f, steps in grok.items():
        curves = [[(100, 0.5, 0.01), (500, 0.995, 0.05)] + ([(s, 1.0, 0.97)] if s else []) for s in steps]
        curves = [c + [(5000, 1.0, 0.99 if s else 0.3)] for c, s in zip(curves, steps)]
        runs[f"fraction {f:g}"] = _runs(tmp_path, f"f{f}", curves)
    v = judge(entry.tests, entry.check(runs))
    assert v.per_seed["fractions that generalize"] == [5, 4, 4]
    assert v.per_seed["steps at 0.3"][1] != v.per_seed["steps at 0.3"][1]  # NaN: not within the budget, kept
    assert v.per_seed["steps at 0.5"] == [3000, 3200, 3400]
    assert v.status == SUPPORTED  # 4 fractions on average; 0.5 takes 3.2-4.3x the steps of 0.7
    entry.figure(runs, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").is_file()
    small = entry.configs["small"]
    assert load_config(REPO / small["fraction 0.3"]).training.steps == 24000  # the longer budget small is for
    assert small["fraction 0.7"] == entry.configs["tiny"]["fraction 0.7"]  # reused runs
