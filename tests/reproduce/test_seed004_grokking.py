"""The seed004-grokking entry's criterion on hand-made metrics (iclab/reproduce/entries/seed004_grokking.py)."""

import json

from iclab.config import load_config
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Run
from iclab.reproduce.runner import REPO


def _run(tmp_path, label, curve):
    d = tmp_path / label.replace(" ", "_")
    d.mkdir()
    d.joinpath("metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "loss": 1.0, "train/accuracy": tr, "heldout/accuracy": he}) + "\n"
            for s, tr, he in curve
        )
    )
    return [Run(label, 0, d, load_config(REPO / "configs/grokking/p97.yaml"))]


def test_grokking_criterion(tmp_path):
    entry = REPRODUCTIONS.get("seed004-grokking")
    no_wd = _run(tmp_path, "no weight decay", [(100, 0.5, 0.01), (1000, 1.0, 0.02), (4000, 1.0, 0.03)])
    late = _run(tmp_path, "late", [(100, 0.5, 0.01), (1000, 0.995, 0.05), (2000, 1.0, 0.5), (3000, 1.0, 0.97)])
    early = _run(tmp_path, "early", [(100, 0.5, 0.01), (1000, 0.995, 0.96), (3000, 1.0, 0.99)])
    v = entry.check({"weight decay 1": late, "no weight decay": no_wd})
    assert v.passed and v.numbers["memorized_at"] == 1000 and v.numbers["grokked_at"] == 3000
    assert not entry.check({"weight decay 1": early, "no weight decay": no_wd}).passed  # no delay: not grokking
    assert not entry.check({"weight decay 1": late, "no weight decay": late}).passed  # groks without decay too
    entry.figure({"weight decay 1": late, "no weight decay": no_wd}, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").is_file()
