"""Task multiple_choice and the question generator: loss mask, config checks, tokenizers, a tiny run."""

import collections
import json
from pathlib import Path

import pytest
import torch

from iclab.config import ConfigError, validate
from iclab.evaluation.multiple_choice import MultipleChoiceError, read_questions
from iclab.runs import evaluate_multiple_choice, train_run
from iclab.workloads import make_workload
from iclab.workloads.base import step_generator
from iclab.workloads.sequence.base import IGNORE
from iclab.workloads.sequence.mc_generate import generate, write_jsonl

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "multiple_choice"


def cfg_of(file, n_positions=96, **options):
    return validate(
        {
            "task": {"name": "multiple_choice", "options": {"file": str(file), **options}},
            "model": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": n_positions},
            "training": {"steps": 20, "batch_size": 16, "lr": 1e-3, "device": "cpu"},
            "logging": {"log_every": 10, "ckpt_every": 20, "tensorboard": False, "progress": False},
        }
    )


@pytest.fixture
def qfile(tmp_path):
    path = tmp_path / "qs.jsonl"
    write_jsonl(path, generate(40, seed=3))
    return path


# --- generator ------------------------------------------------------------------------------------------


def test_generator_is_deterministic_and_valid(tmp_path):
    a, b = generate(200, seed=5), generate(200, seed=5)
    assert a == b and a != generate(200, seed=6)
    write_jsonl(tmp_path / "g.jsonl", a)
    qs = read_questions(tmp_path / "g.jsonl")
    assert len(qs) == 200 and len({q.stem for q in qs}) == 200
    assert all(len(q.texts) == 4 and len(set(q.texts)) == 4 for q in qs)
    excluded = generate(50, seed=7, exclude={q.stem for q in qs})
    assert not {r["question"]["stem"] for r in excluded} & {q.stem for q in qs}


def test_answer_positions_are_roughly_uniform():
    counts = collections.Counter(r["answerKey"] for r in generate(2000, seed=11))
    assert set(counts) == set("ABCD") and all(400 < c < 600 for c in counts.values())  # 500 +- ~4.5 sd


def test_shipped_sets_are_disjoint_and_readable():
    train, test = read_questions(EXAMPLES / "train.jsonl"), read_questions(EXAMPLES / "test.jsonl")
    assert len(train) == 2000 and len(test) == 300
    assert not {q.stem for q in train} & {q.stem for q in test}


# --- the task -------------------------------------------------------------------------------------------


def test_loss_mask_covers_exactly_the_answer(qfile):
    w = make_workload(cfg_of(qfile))
    tok, qs = w.tokenizer, read_questions(qfile)
    assert w.inputs.shape == w.targets.shape and w.inputs.dtype == torch.int64
    for q, x, y in zip(qs, w.inputs, w.targets):
        text = f"Question: {q.stem}\nAnswer: {q.texts[q.answer]}"
        n = len(text) - 1
        assert tok.decode(x[:n]) == text[:-1]
        counted = y != IGNORE
        assert tok.decode(y[counted]) == f" {q.texts[q.answer]}"
        assert counted.nonzero().flatten().tolist() == list(range(n - len(q.texts[q.answer]) - 1, n))
        assert tok.decode(y[:n].clamp_min(0))[-len(q.texts[q.answer]) - 1 :] == f" {q.texts[q.answer]}"
    x, y = w.sample(8, w.seq_len, step_generator(0, 0, "cpu"), "cpu")
    x2, _ = w.sample(8, w.seq_len, step_generator(0, 0, "cpu"), "cpu")
    assert x.shape == (8, w.seq_len) and torch.equal(x, x2)
    assert w.identity()["tokenizer"] == tok.fingerprint() and w.vocab_size == tok.vocab_size


def test_config_checks(qfile):
    with pytest.raises(
        MultipleChoiceError,
        match=r"qs\.jsonl:\d+: the longest question needs \d+ positions > "
        r"model\.n_positions=16",
    ):
        make_workload(cfg_of(qfile, n_positions=16))
    with pytest.raises(ConfigError, match="task.seq_len does not apply"):
        validate({"task": {"name": "multiple_choice", "seq_len": 8, "options": {"file": str(qfile)}}})
    with pytest.raises(ConfigError, match="file"):
        validate({"task": {"name": "multiple_choice"}})
    with pytest.raises(MultipleChoiceError, match="nope.jsonl: file not found"):
        make_workload(cfg_of(qfile.parent / "nope.jsonl"))


def test_tokenizers(qfile, tmp_path):
    assert make_workload(cfg_of(qfile, tokenizer="byte")).tokenizer.kind == "byte"
    other = tmp_path / "other.jsonl"
    write_jsonl(
        other,
        [
            {
                "id": "o",
                "question": {
                    "stem": "Is \u00df odd?",
                    "choices": [{"label": "A", "text": "yes"}, {"label": "B", "text": "no"}],
                },
                "answerKey": "B",
            }
        ],
    )
    w = make_workload(cfg_of(qfile, eval_file=str(other)))
    assert "\u00df" in w.tokenizer.chars and w.eval_questions[0].stem == "Is \u00df odd?"
    lm = tmp_path / "lm_run"
    lm.mkdir()
    (lm / "tokenizer.json").write_text(json.dumps(w.tokenizer.to_json()))
    assert make_workload(cfg_of(qfile, tokenizer_from=str(lm))).tokenizer == w.tokenizer
    no_qmark = "".join(sorted(set(w.tokenizer.chars) - {"?"}))
    (lm / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": no_qmark}))
    with pytest.raises(MultipleChoiceError, match=r"qs\.jsonl:1: tokenizer 'char': character '\?'"):
        make_workload(cfg_of(qfile, tokenizer_from=str(lm)))
    with pytest.raises(MultipleChoiceError, match="tokenizer_from: .*tokenizer.json not found"):
        make_workload(cfg_of(qfile, tokenizer_from=str(tmp_path)))


def test_tiny_run_end_to_end(qfile, tmp_path):
    run = tmp_path / "run"
    result = train_run(cfg_of(qfile), run)
    ev = json.loads((run / "eval.json").read_text())
    assert ev["n_questions"] == 40 and ev["chance"] == 0.25 and len(ev["predictions"]) == 40
    assert result["summary"].startswith(f"multiple choice ({qfile}): accuracy")
    tok = json.loads((run / "tokenizer.json").read_text())
    assert tok["kind"] == "char" and make_workload(cfg_of(qfile), run).tokenizer.to_json() == tok
    rec = evaluate_multiple_choice(run, qfile, tag="again")
    assert rec["chance"] == 0.25 and rec["n_questions"] == 40 and rec["predictions"] == ev["predictions"]
    saved = json.loads((run / "eval_mc_qs_again.json").read_text())
    assert saved["file"] == str(qfile) and len(saved["sha256"]) == 64 and saved["accuracy"] == ev["accuracy"]


def test_runs_without_a_text_tokenizer_are_refused(qfile, tmp_path):
    from iclab.config import dump_config

    run = tmp_path / "sorting_run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(validate({"task": {"name": "sorting", "seq_len": 6}})))
    with pytest.raises(
        MultipleChoiceError, match="^task sorting has no text tokenizer; multiple choice needs a language-model run$"
    ):
        evaluate_multiple_choice(run, qfile)
