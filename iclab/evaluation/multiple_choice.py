"""Multiple-choice evaluation of a language model (ARC-style questions scored by log-likelihood).

File format: ARC-Easy's JSONL, one question per line (blank lines are skipped; `id` is optional and
defaults to `line<N>`):

    {"id": "q1", "question": {"stem": "What is 2 plus 2?",
                              "choices": [{"label": "A", "text": "3"}, {"label": "B", "text": "4"}]},
     "answerKey": "B"}

Hugging Face's ARC layout (allenai/ai2_arc; what `Dataset.to_json` writes, and its parquet files) is read too:

    {"id": "q1", "question": "What is 2 plus 2?", "choices": {"text": ["3", "4"], "label": ["A", "B"]},
     "answerKey": "B"}

one object per line in a .jsonl / .json file, or one row per question in a `.parquet` file (read with pyarrow,
from the [hf] extra).

`read_questions` checks every line and raises `MultipleChoiceError` with one line `FILE:LINE: problem`
(bad JSON, a missing key, fewer than 2 choices, an answerKey that is not a label, ...).

Scoring, as lm-evaluation-harness does for ARC: the context is `"Question: {stem}\\nAnswer:"` and
choice j is the continuation `" {text_j}"`. Its score is the model's summed log-likelihood of the
continuation tokens given the context (`accuracy` takes the argmax), and that sum divided by the number
of characters of the continuation, leading space included (`accuracy_norm`, lm-eval's acc_norm, which
removes the bias towards short answers). Ties go to the first choice (argmax's order).

Tokens: `tokenizer` is any object with `encode(text) -> ids` (iclab/workloads/sequence/tokenizers.py,
whose TokenizerError becomes a MultipleChoiceError naming the question). The concatenation context +
continuation is encoded once and the continuation is its suffix after as many tokens as the context
alone encodes to. For char and byte tokenizers this is exact; for
a BPE tokenizer a merge across the boundary (e.g. ":" + " 4") can shift the split by a token, a caveat
lm-eval shares. A sequence longer than the model's `n_positions` keeps its last n_positions tokens:
the start of the context is dropped, the continuation never is (a continuation that alone does not
fit is an error).

Batching: all (question, choice) pairs are sorted by length, cut into batches of `batch_size`, right-
padded to the batch's longest (a causal model's earlier positions never see the padding) and run in one
forward pass each; the continuation's log-probabilities are gathered with a position mask
(`logit[target] - logsumexp(logits)`, so no second (B, L, V) tensor is made).

Each accuracy comes with a 95% Wilson score interval, and `chance` is the mean over questions of
1 / (number of choices). Scoring a saved run (open it, load the model, write eval_mc_*.json):
`iclab.runs.evaluate_multiple_choice`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iclab.errors import IclabError
from iclab.evaluation import EvalError
from iclab.stats import wilson_interval


class MultipleChoiceError(EvalError):
    """A question file or a run that cannot be scored; one line naming the file (and line) and problem."""


@dataclass
class Question:
    id: str
    stem: str
    labels: list[str]
    texts: list[str]
    answer: int  # index into labels / texts
    source: str = ""  # file the question came from
    line: int = 0  # its 1-based line number

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def context_of(stem: str) -> str:
    return f"Question: {stem}\nAnswer:"


def continuation_of(text: str) -> str:
    return f" {text}"


TEMPLATE_TEXT = context_of("") + continuation_of("")  # the characters every scored sequence contains


# --- reading ------------------------------------------------------------------------------------------


def _parse(obj: Any, where: str, lineno: int, source: str) -> Question:
    def fail(msg: str) -> MultipleChoiceError:
        return MultipleChoiceError(f"{where}: {msg}")

    if not isinstance(obj, dict):
        raise fail(f"a question must be a JSON object, got {type(obj).__name__}")
    obj = _from_hf_layout(obj, fail)
    for key in ("question", "answerKey"):
        if key not in obj:
            raise fail(f"missing key {key!r}")
    q = obj["question"]
    if not isinstance(q, dict):
        raise fail(f"'question' must be an object with 'stem' and 'choices', got {type(q).__name__}")
    for key in ("stem", "choices"):
        if key not in q:
            raise fail(f"missing key 'question.{key}'")
    if not isinstance(q["stem"], str):
        raise fail(f"'question.stem' must be a string, got {type(q['stem']).__name__}")
    choices = q["choices"]
    if not isinstance(choices, list):
        raise fail(f"'question.choices' must be a list, got {type(choices).__name__}")
    if len(choices) < 2:
        raise fail(f"a question needs at least 2 choices, got {len(choices)}")
    labels, texts = [], []
    for i, c in enumerate(choices):
        if not isinstance(c, dict):
            raise fail(f"'question.choices[{i}]' must be an object with 'label' and 'text'")
        for key in ("label", "text"):
            if key not in c:
                raise fail(f"missing key 'question.choices[{i}].{key}'")
            if not isinstance(c[key], (str, int)) or isinstance(c[key], bool):
                raise fail(f"'question.choices[{i}].{key}' must be a string, got {type(c[key]).__name__}")
        labels.append(str(c["label"]))
        texts.append(str(c["text"]))
    if len(set(labels)) < len(labels):
        raise fail(f"choice labels repeat: {labels}")
    key = obj["answerKey"]
    if isinstance(key, bool) or str(key) not in labels:
        raise fail(f"answerKey {key!r} is not among the choice labels {labels}")
    qid = obj.get("id", f"line{lineno}")
    return Question(str(qid), q["stem"], labels, texts, labels.index(str(key)), source, lineno)


def _from_hf_layout(obj: dict, fail) -> dict:
    """A question in HF's ARC layout (question: str, choices: {text: [...], label: [...]}) in the JSONL layout."""
    if not isinstance(obj.get("question"), str):
        return obj
    ch = obj.get("choices")
    if not isinstance(ch, dict) or not isinstance(ch.get("text"), list) or not isinstance(ch.get("label"), list):
        raise fail("HF layout: 'choices' must be an object with lists 'text' and 'label'")
    if len(ch["text"]) != len(ch["label"]):
        raise fail(f"HF layout: {len(ch['text'])} choice texts but {len(ch['label'])} labels")
    choices = [{"label": lab, "text": t} for lab, t in zip(ch["label"], ch["text"])]
    return {**obj, "question": {"stem": obj["question"], "choices": choices}}


def _read_parquet(path: Path) -> list[Question]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MultipleChoiceError(f"{path}: reading parquet needs pyarrow: pip install 'iclab[hf]'") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's errors (ArrowInvalid, OSError) on a damaged or foreign file
        raise MultipleChoiceError(f"{path}: not a readable parquet file ({' '.join(str(e).split())[:160]})") from None
    out = [_parse(r, f"{path}:row {i}", i, str(path)) for i, r in enumerate(rows)]
    if not out:
        raise MultipleChoiceError(f"{path}: no questions (the file is empty)")
    return out


def read_questions(path: str | Path) -> list[Question]:
    """The questions of an ARC-format JSONL file or an HF ARC parquet file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MultipleChoiceError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    if path.suffix == ".parquet":
        return _read_parquet(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise MultipleChoiceError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x})") from None
    out = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise MultipleChoiceError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        out.append(_parse(obj, f"{path}:{lineno}", lineno, str(path)))
    if not out:
        raise MultipleChoiceError(f"{path}: no questions (the file is empty)")
    return out


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- tokens -------------------------------------------------------------------------------------------


def encode_pair(tokenizer, q: Question, context: str, continuation: str) -> tuple[np.ndarray, int]:
    """(ids of context + continuation, number of continuation tokens: the suffix after the context's)."""
    try:
        n_ctx = len(tokenizer.encode(context))
        ids = tokenizer.encode(context + continuation).astype(np.int64)
    except IclabError as e:  # the tokenizer's TokenizerError: a character it cannot encode
        raise MultipleChoiceError(f"{q.where}: {e}") from None
    return ids, min(max(len(ids) - n_ctx, 1), len(ids) - 1)


def encode_choices(tokenizer, questions: list[Question], n_positions: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Every (question, choice) pair, question-major: token ids (left-truncated to n_positions) and the
    number of continuation tokens of each."""
    seqs, n_cont = [], []
    for q in questions:
        ctx = context_of(q.stem)
        for label, text in zip(q.labels, q.texts):
            ids, k = encode_pair(tokenizer, q, ctx, continuation_of(text))
            if k > n_positions - 1:
                raise MultipleChoiceError(
                    f"{q.where}: choice {label} is {k} tokens; a model with n_positions="
                    f"{n_positions} scores at most {n_positions - 1}"
                )
            seqs.append(ids[-n_positions:])
            n_cont.append(k)
    return seqs, np.asarray(n_cont, dtype=np.int64)


@torch.no_grad()
def continuation_logprobs(
    model, seqs: list[np.ndarray], n_cont: np.ndarray, device, *, loops: int | None = None, batch_size: int = 64
) -> np.ndarray:
    """Summed log-probability of the last n_cont[i] tokens of seqs[i] given the tokens before them."""
    lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    out = np.zeros(len(seqs), dtype=np.float64)
    was = model.training
    model.eval()
    try:
        for start in range(0, len(seqs), batch_size):
            rows = order[start : start + batch_size]
            L = int(lengths[rows].max())
            idx = np.zeros((len(rows), L), dtype=np.int64)
            for r, i in enumerate(rows):  # copying the rows in; the scoring below is batched
                idx[r, : lengths[i]] = seqs[i]
            idx_t = torch.from_numpy(idx).to(device)
            logits = model.logits(idx_t, loops=loops)[:, :-1].float()  # position t predicts token t + 1
            target = idx_t[:, 1:]
            lp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
            t = torch.arange(L - 1, device=device)
            n = torch.from_numpy(lengths[rows]).to(device).unsqueeze(1)
            k = torch.from_numpy(n_cont[rows]).to(device).unsqueeze(1)
            mask = (t >= n - 1 - k) & (t < n - 1)  # the targets that are continuation tokens
            out[rows] = (lp * mask).sum(1).double().cpu().numpy()
    finally:
        model.train(was)
    return out


# --- scoring ------------------------------------------------------------------------------------------


def score_questions(
    model, tokenizer, questions: list[Question], device, *, loops: int | None = None, batch_size: int = 64
) -> dict:
    """Accuracy (summed log-likelihood) and length-normalized accuracy of `model` on `questions`, each with
    a 95% Wilson interval, the chance level and per-question predictions (see the module docstring)."""
    if not questions:
        raise MultipleChoiceError("no questions to score")
    seqs, n_cont = encode_choices(tokenizer, questions, model.cfg.n_positions)
    ll = continuation_logprobs(model, seqs, n_cont, device, loops=loops, batch_size=batch_size)
    preds, right, right_norm, at = [], 0, 0, 0
    for q in questions:
        k = len(q.texts)
        s = ll[at : at + k]
        s_norm = s / np.asarray([len(continuation_of(t)) for t in q.texts], dtype=np.float64)
        at += k
        p, pn = int(np.argmax(s)), int(np.argmax(s_norm))  # argmax: the first of equal scores wins
        right += p == q.answer
        right_norm += pn == q.answer
        preds.append(
            {
                "id": q.id,
                "answer": q.answer,
                "pred": p,
                "pred_norm": pn,
                "scores": s.tolist(),
                "scores_norm": s_norm.tolist(),
            }
        )
    n = len(questions)
    return {
        "n_questions": n,
        "accuracy": right / n,
        "accuracy_ci95": wilson_interval(right, n),
        "accuracy_norm": right_norm / n,
        "accuracy_norm_ci95": wilson_interval(right_norm, n),
        "chance": float(np.mean([1 / len(q.texts) for q in questions])),
        "predictions": preds,
    }


def summary_line(record: dict) -> str:
    """One line about a record of `score_questions` / `evaluate_multiple_choice`."""
    ci = lambda v: f"[{v[0]:.2f}, {v[1]:.2f}]"  # noqa: E731
    where = f" ({record['file']})" if record.get("file") else ""
    return (
        f"multiple choice{where}: accuracy {record['accuracy']:.3f} {ci(record['accuracy_ci95'])}, "
        f"length-normalized {record['accuracy_norm']:.3f} {ci(record['accuracy_norm_ci95'])}, "
        f"chance {record['chance']:.2f}, {record['n_questions']} questions"
    )


__all__ = [
    "MultipleChoiceError",
    "Question",
    "read_questions",
    "score_questions",
    "summary_line",
    "context_of",
    "continuation_of",
    "encode_choices",
    "file_sha256",
]
