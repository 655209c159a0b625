"""The heads-induction entry's criterion against hand-made heads_reproduce.json / heads_over_training.json."""

import json

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Run
from iclab.reproduce.entries.heads_induction import TESTS, gap_intervals, seed_values
from iclab.reproduce.verdicts import judge


def _files(induction=0.6, rand_init=0.02, top_late=0.3, rand_late=0.05, icl_half=300, score_half=300):
    heads = [{"label": "1.2", "induction": induction}, {"label": "0.0", "induction": 0.01}]
    ab = {"mean": {"late_loss": {"delta": rand_late}}}
    res = {
        "heads": heads,
        "top_set": {"heads": ["1.2", "0.0"], "mean": {"late_loss": {"delta": top_late}}},
        "random_sets": [ab, ab],
        "controls": {"random_init": {"induction": rand_init}},
        "headline": {"values": {"in_context": {"mean": -0.4}}},
    }
    ot = {
        "steps": [100, 200, 300, 400],
        "best": [0.01, 0.02, induction, induction],
        "in_context": [0.0, -0.1, -0.4, -0.4],
        "score_half_step": score_half,
        "in_context_half_step": icl_half,
    }
    return {"heads_reproduce.json": res, "heads_over_training.json": ot}


def _runs(tmp_path, **kw):
    runs = []
    for s in range(4):  # 4 seeds, each value jittered a little so the intervals have a width
        d = tmp_path / json.dumps(kw).replace('"', "").replace(" ", "") / f"seed{s}"
        d.mkdir(parents=True, exist_ok=True)
        jit = {k: v * (1 + 0.02 * (s - 1.5)) if isinstance(v, float) else v for k, v in kw.items()}
        for name, obj in _files(**jit).items():
            (d / name).write_text(json.dumps(obj))
        runs.append(Run("char LM", s, d, None))
    return {"char LM": runs}


def _status(entry, runs):
    return judge(entry.tests, entry.check(runs)).status


def test_each_part_of_the_claim_can_fail(tmp_path):
    entry = REPRODUCTIONS.get("heads-induction")
    assert _status(entry, _runs(tmp_path, induction=0.6)) == "SUPPORTED"
    assert _status(entry, _runs(tmp_path, induction=0.1)) == "CONTRADICTED"  # no induction head formed
    assert _status(entry, _runs(tmp_path, induction=0.3, rand_init=0.1)) == "CONTRADICTED"  # not 5x random init
    assert _status(entry, _runs(tmp_path, icl_half=800, score_half=100)) == "CONTRADICTED"  # far apart in time
    assert _status(entry, _runs(tmp_path, top_late=0.01)) == "CONTRADICTED"  # other heads matter more
    v = seed_values(_runs(tmp_path)["char LM"][0])
    assert v["interval"] == 100 and gap_intervals(v) == 0.0
    assert len(TESTS) == 4
    entry.figure(_runs(tmp_path), tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


def test_scales_plan_the_char_induction_runs(tmp_path):
    """tiny and small both train configs/lm/char_induction.yaml with checkpoints kept every 250 steps (the
    interval the coincidence test counts in), small twice as long; nothing is trained."""
    from iclab.reproduce.runner import plan

    entry = REPRODUCTIONS.get("heads-induction")
    steps = {}
    for scale in ("tiny", "small"):
        runs = plan(entry, scale, None, tmp_path)["char LM"]
        assert [r.seed for r in runs] == [0, 1, 2]
        cfg = runs[0].cfg
        assert cfg.task.name == "language_model" and cfg.model.n_layer == 2 and cfg.task.seq_len == 256
        assert cfg.logging.milestone_every == 250 and cfg.logging.ckpt_every == 250
        steps[scale] = cfg.training.steps
    assert steps == {"tiny": 4500, "small": 9000}
