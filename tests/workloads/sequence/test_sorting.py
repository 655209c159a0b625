import json

import pytest
import torch
import torch.nn as nn

from iclab.config import ConfigError, validate
from iclab.runs import train_run
from iclab.workloads import make_workload
from iclab.workloads.base import step_generator
from iclab.workloads.sequence.base import IGNORE, batch_metrics, summarize_metrics
from iclab.workloads.sequence.sorting import sorting_batch


def cfg_of(seq_len=6, n_positions=64, **options):
    return validate(
        {
            "task": {"name": "sorting", "seq_len": seq_len, "options": options},
            "model": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": n_positions},
            "training": {"steps": 30, "batch_size": 16, "lr": 1e-3, "device": "cpu"},
            "eval": {"n_prompts": 64, "batch_size": 24},
            "logging": {"log_every": 10, "ckpt_every": 30, "tensorboard": False, "progress": False},
        }
    )


class Sorter(nn.Module):
    """A perfect sorter in closed form (one-hot logits); `wrong` corrupts the last output of every row."""

    def __init__(self, vocab: int, wrong: bool = False):
        super().__init__()
        self.vocab, self.wrong = vocab, wrong

    def logits(self, idx, loops=None):
        n = idx.shape[1] // 2
        pred = torch.zeros_like(idx)
        pred[:, n:] = idx[:, :n].sort(dim=1).values  # position n (SEP) predicts s_1, ..., 2n-1 predicts s_n
        if self.wrong:
            pred[:, -1] = (pred[:, -1] + 1) % self.vocab
        return torch.nn.functional.one_hot(pred, self.vocab + 1).float()


@pytest.mark.parametrize("repeats", [False, True])
def test_batches_are_sorted_permutations_with_a_mask_on_the_outputs(repeats):
    V, n, B = 10, 8, 200
    x, y = sorting_batch(B, n, V, repeats, step_generator(0, 3, "cpu"), "cpu")
    assert x.shape == y.shape == (B, 2 * n)
    assert (x[:, n] == V).all() and (x[:, :n] < V).all() and (x[:, :n] >= 0).all()
    out = y[:, n:]
    assert (y[:, :n] == IGNORE).all() and ((y != IGNORE).sum(1) == n).all()  # exactly the n outputs count
    assert (out[:, 1:] >= out[:, :-1]).all()  # ascending
    assert torch.equal(out, x[:, :n].sort(1).values)  # a permutation of the inputs
    assert torch.equal(x[:, n + 1 :], out[:, :-1])  # teacher forcing: the outputs are fed back
    n_distinct = torch.tensor([len(set(r.tolist())) for r in x[:, :n]])
    if repeats:
        assert (n_distinct < n).float().mean() > 0.5  # ties occur (8 draws from 10 values)
    else:
        assert (n_distinct == n).all()


def test_batches_are_deterministic_per_step_and_follow_the_curriculum_length():
    w = make_workload(cfg_of(seq_len=6, vocab=12))
    a, b = w.batch(5, {"seq_len": 4, "loops": 1}, "cpu"), w.batch(5, {"seq_len": 4, "loops": 1}, "cpu")
    assert torch.equal(a[0], b[0]) and a[0].shape == (16, 8)
    assert not torch.equal(a[0], w.batch(6, {"seq_len": 4, "loops": 1}, "cpu")[0])
    assert w.batch(0, {"seq_len": 0, "loops": 1}, "cpu")[0].shape == (16, 12)  # 0: the task's length
    assert w.vocab_size == 13 and w.tokens_per_step(16) == 16 * 12


def test_one_hot_targets_give_exact_match_one_and_a_corruption_less():
    x, y = sorting_batch(50, 5, 9, False, step_generator(1, 0, "cpu"), "cpu")
    perfect = torch.nn.functional.one_hot(y.clamp_min(0), 10).float()
    m = summarize_metrics([batch_metrics(perfect, y)])
    assert m["exact_match"] == 1.0 and m["token_accuracy"] == 1.0 and m["n_tokens"] == 250
    bad = perfect.clone()
    bad[:10, -1] = bad[:10, -1].roll(1, dims=-1)  # 10 rows get their last output wrong
    m = summarize_metrics([batch_metrics(bad, y)])
    assert m["exact_match"] == pytest.approx(0.8) and m["token_accuracy"] == pytest.approx(1 - 10 / 250)


def test_evaluate_a_perfect_and_a_corrupted_sorter(tmp_path):
    w = make_workload(cfg_of(seq_len=6, vocab=12))
    ev = w.evaluate(tmp_path, Sorter(12), "cpu", step=7, unknown_option=1)
    assert ev["trained_length"] == 6 and list(ev["lengths"]) == ["6", "12"]  # 2n, within vocab and positions
    assert all(m["exact_match"] == 1.0 and m["token_accuracy"] == 1.0 for m in ev["lengths"].values())
    assert ev["lengths"]["12"]["n_sequences"] == 64 and ev["per_position_accuracy"] == [1.0] * 6
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["task"] == "sorting" and saved["step"] == 7 and (tmp_path / "sorting.png").is_file()
    ev = w.evaluate(tmp_path, Sorter(12, wrong=True), "cpu", tag="bad", seq_len=4)
    assert list(ev["lengths"]) == ["4", "6"] and ev["lengths"]["4"]["exact_match"] == 0.0
    assert ev["lengths"]["6"]["token_accuracy"] == pytest.approx(5 / 6)
    assert ev["per_position_accuracy"] == [1.0] * 5 + [0.0]
    assert (tmp_path / "eval_bad.json").is_file() and (tmp_path / "sorting_bad.png").is_file()
    assert "n=6*" in w.summary(ev)


def test_evaluation_is_deterministic_in_the_seed(tmp_path):
    w = make_workload(cfg_of(seq_len=6, vocab=12))
    gen = lambda seed: torch.cat([x for x, _ in w.eval_batches(6, 50, seed, "cpu")])  # noqa: E731
    assert torch.equal(gen(3), gen(3)) and not torch.equal(gen(3), gen(4)) and len(gen(3)) == 50


def test_default_eval_lengths_are_capped():
    assert make_workload(cfg_of(seq_len=6, vocab=8)).eval_lengths() == [6, 8]  # distinct values: <= V
    assert make_workload(cfg_of(seq_len=6, vocab=8, repeats=True)).eval_lengths() == [6, 12]
    assert make_workload(cfg_of(seq_len=6, n_positions=16, vocab=64)).eval_lengths() == [6, 8]  # 2 * len <= positions
    assert make_workload(cfg_of(seq_len=6, vocab=64, eval_lengths=[3, 10])).eval_lengths() == [3, 6, 10]


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"seq_len": 20, "vocab": 16}, ["task.seq_len=20", "task.options.vocab=16"]),
        ({"seq_len": 6, "vocab": 64, "eval_lengths": [40]}, ["task.options.eval_lengths", "model.n_positions=64"]),
        ({"seq_len": 6, "vocab": 16, "eval_lengths": [17]}, ["task.options.eval_lengths", "17"]),
        ({"seq_len": 40, "vocab": 64, "repeats": True}, ["task.seq_len=40", "model.n_positions=64"]),
        ({"seq_len": 6, "vocab": 1}, ["task.options.vocab"]),
    ],
)
def test_config_errors_name_the_key(kw, words):
    with pytest.raises(ConfigError) as e:
        cfg_of(**kw)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_repeats_allow_more_numbers_than_values():
    assert make_workload(cfg_of(seq_len=20, vocab=16, repeats=True)).seq_len == 20


def test_train_run_end_to_end(tmp_path):
    result = train_run(cfg_of(seq_len=5, vocab=16), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "eval.json", "sorting.png"):
        assert (run / name).is_file(), name
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [10, 20, 30] and recs[-1]["curriculum/seq_len"] == 5
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["lengths"]) == {"5", "10"} and len(ev["per_position_accuracy"]) == 5 and ev["step"] == 30
    assert result["summary"].startswith("sorting exact match")
