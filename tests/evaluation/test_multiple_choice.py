"""The multiple-choice harness: file checks, log-likelihood scoring (against hand computations), Wilson CIs."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from iclab.config import ModelConfig
from iclab.evaluation.multiple_choice import (
    MultipleChoiceError,
    Question,
    read_questions,
    score_questions,
    summary_line,
)
from iclab.models.transformer import GPTLanguageModel
from iclab.stats import wilson_interval
from iclab.workloads.sequence.tokenizers import CharTokenizer

ALPHABET = "".join(sorted(set("Question: \nAnswer: abcdenorstuwxyz")))  # the template and the questions below


def row(stem, texts, answer, qid="q"):
    labels = "ABCDEFGH"[: len(texts)]
    return {
        "id": qid,
        "question": {"stem": stem, "choices": [{"label": lab, "text": t} for lab, t in zip(labels, texts)]},
        "answerKey": labels[answer],
    }


def q(stem, texts, answer, qid="q"):
    return Question(qid, stem, list("ABCDEFGH"[: len(texts)]), list(texts), answer)


class BiasModel(nn.Module):
    """Position-independent logits: the same bias vector at every position."""

    def __init__(self, bias: torch.Tensor, n_positions: int = 128):
        super().__init__()
        self.bias = bias.float()
        self.cfg = SimpleNamespace(n_positions=n_positions)

    def logits(self, idx, loops=None):
        return self.bias.expand(*idx.shape, -1).clone()


def bias_towards(tok, char, strength):
    b = torch.zeros(tok.vocab_size)
    b[int(tok.encode(char)[0])] = strength
    return b


def test_picks_the_most_likely_choice():
    tok = CharTokenizer(ALPHABET)
    model = BiasModel(bias_towards(tok, "b", 8.0))
    rec = score_questions(model, tok, [q("xyz", ["a", "b", "c"], 1)], "cpu")
    p = rec["predictions"][0]
    assert p["pred"] == 1 and p["pred_norm"] == 1 and rec["accuracy"] == 1.0 and rec["accuracy_norm"] == 1.0
    assert p["scores"][0] == pytest.approx(p["scores"][2])  # " a" and " c" are equally unlikely
    assert rec["chance"] == pytest.approx(1 / 3)


def test_summed_and_normalized_can_disagree():
    """A long answer of likely characters loses on the sum (more terms) but wins per character."""
    tok = CharTokenizer(ALPHABET)
    bias = bias_towards(tok, "b", 2.0)
    model = BiasModel(bias)
    rec = score_questions(model, tok, [q("xyz", ["a", "bbbbbbbb"], 0)], "cpu")
    p = rec["predictions"][0]
    lp = torch.log_softmax(bias, -1)
    i = lambda c: int(tok.encode(c)[0])  # noqa: E731
    want = [lp[i(" ")] + lp[i("a")], lp[i(" ")] + 8 * lp[i("b")]]
    assert p["scores"] == pytest.approx([float(w) for w in want], abs=1e-5)
    assert p["scores_norm"] == pytest.approx([float(want[0]) / 2, float(want[1]) / 9], abs=1e-5)
    assert p["pred"] == 0 and p["pred_norm"] == 1
    assert rec["accuracy"] == 1.0 and rec["accuracy_norm"] == 0.0


def test_ties_go_to_the_first_choice():
    tok = CharTokenizer(ALPHABET)
    rec = score_questions(BiasModel(torch.zeros(tok.vocab_size)), tok, [q("xyz", ["a", "b", "c"], 2)], "cpu")
    assert rec["predictions"][0]["pred"] == 0 and rec["predictions"][0]["pred_norm"] == 0


@torch.no_grad()
def _manual_sum(model, tok, stem, text, n_positions):
    ctx, cont = f"Question: {stem}\nAnswer:", f" {text}"
    ids = torch.from_numpy(tok.encode(ctx + cont).astype(np.int64))
    k = len(cont)
    ids = ids[-n_positions:]
    lp = torch.log_softmax(model.logits(ids[None])[0].double(), -1)
    return sum(float(lp[t - 1, ids[t]]) for t in range(len(ids) - k, len(ids)))


@pytest.mark.parametrize("n_positions", [64, 24])  # 24: the long contexts are left-truncated
def test_summed_loglik_matches_a_direct_computation(n_positions):
    torch.manual_seed(0)
    tok = CharTokenizer(ALPHABET)
    model = GPTLanguageModel(ModelConfig(n_embd=16, n_layer=1, n_head=2, n_positions=n_positions), tok.vocab_size)
    qs = [q("wax", ["a", "bcd", "tuxyz"], 0), q("nor star dust", ["bb", "c"], 1), q("z", ["dense ear", "x"], 0)]
    rec = score_questions(model, tok, qs, "cpu", batch_size=3)  # mixed lengths: padding inside batches
    for qq, p in zip(qs, rec["predictions"]):
        want = [_manual_sum(model, tok, qq.stem, t, n_positions) for t in qq.texts]
        assert p["scores"] == pytest.approx(want, abs=1e-4)
        assert p["scores_norm"] == pytest.approx([w / (len(t) + 1) for w, t in zip(want, qq.texts)], abs=1e-4)
    assert model.training  # the harness restores the mode


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.96: center (0.8 + z^2/20) / (1 + z^2/10), half z sqrt(0.016 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    d = 1 + z * z / 10
    c, h = (0.8 + z * z / 20) / d, z * math.sqrt(0.016 + z * z / 400) / d
    assert wilson_interval(8, 10) == pytest.approx([c - h, c + h])
    assert wilson_interval(8, 10) == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_chance_with_mixed_choice_counts_and_summary():
    tok = CharTokenizer(ALPHABET)
    rec = score_questions(
        BiasModel(torch.zeros(tok.vocab_size)), tok, [q("x", ["a", "b"], 0), q("y", ["a", "b", "c", "d"], 3)], "cpu"
    )
    assert rec["chance"] == pytest.approx(0.375)
    assert rec["accuracy"] == 0.5 and rec["accuracy_ci95"] == pytest.approx(wilson_interval(1, 2))
    line = summary_line({**rec, "file": "t.jsonl"})
    assert line.startswith("multiple choice (t.jsonl): accuracy 0.500 [") and "chance 0.38, 2 questions" in line


def _write(tmp_path, lines):
    path = tmp_path / "qs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_arc_format_and_skips_blank_lines(tmp_path):
    path = _write(
        tmp_path,
        [
            json.dumps(row("s1", ["a", "b"], 1, "x1")),
            "",
            "  ",
            json.dumps(
                {
                    "question": {"stem": "s2", "choices": [{"label": "1", "text": "a"}, {"label": "2", "text": "b"}]},
                    "answerKey": "1",
                }
            ),
        ],
    )
    qs = read_questions(path)
    assert [(x.id, x.stem, x.labels, x.texts, x.answer) for x in qs] == [
        ("x1", "s1", ["A", "B"], ["a", "b"], 1),
        ("line4", "s2", ["1", "2"], ["a", "b"], 0),
    ]
    assert qs[1].where == f"{path}:4"


GOOD = json.dumps(row("stem", ["a", "b"], 0))


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"question": {"stem": "s", "choices": []}}), "missing key 'answerKey'"),
        (json.dumps({"answerKey": "A"}), "missing key 'question'"),
        (json.dumps({"question": {"choices": []}, "answerKey": "A"}), "missing key 'question.stem'"),
        (json.dumps({**row("s", ["a", "b"], 0), "answerKey": "E"}), "answerKey 'E' is not among the choice labels"),
        (json.dumps(row("s", ["a"], 0)), "at least 2 choices, got 1"),
        (
            json.dumps(
                {"question": {"stem": "s", "choices": [{"label": "A"}, {"label": "B", "text": "b"}]}, "answerKey": "A"}
            ),
            "missing key 'question.choices[0].text'",
        ),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad, problem):
    path = _write(tmp_path, [GOOD, "", bad, GOOD])
    with pytest.raises(MultipleChoiceError) as e:
        read_questions(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: ") and problem in msg and "\n" not in msg


def test_unreadable_files(tmp_path):
    with pytest.raises(MultipleChoiceError, match="file not found"):
        read_questions(tmp_path / "nope.jsonl")
    with pytest.raises(MultipleChoiceError, match="no questions"):
        read_questions(_write(tmp_path, ["", " "]))
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + '{"x": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(MultipleChoiceError, match=r"latin1\.jsonl:2: not UTF-8"):
        read_questions(path)


def test_unknown_character_names_file_line_and_character(tmp_path):
    path = _write(tmp_path, [GOOD, json.dumps(row("stem", ["a", "b\u00e9"], 0))])
    tok = CharTokenizer(ALPHABET + "m")
    with pytest.raises(MultipleChoiceError) as e:
        score_questions(BiasModel(torch.zeros(tok.vocab_size)), tok, read_questions(path), "cpu")
    assert str(e.value).startswith(f"{path}:2: ") and "'\u00e9'" in str(e.value)
