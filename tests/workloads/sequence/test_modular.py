import json

import pytest
import torch
import torch.nn as nn

from iclab.config import ConfigError, validate
from iclab.runs import train_run
from iclab.workloads import make_workload
from iclab.workloads.sequence.base import IGNORE
from iclab.workloads.sequence.modular import equation_table, is_prime


def cfg_of(p=7, op="/", batch_size=16, steps=30, extra=None, **options):
    data = {
        "task": {"name": "modular_arithmetic", "options": {"p": p, "op": op, **options}},
        "model": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64},
        "training": {"steps": steps, "batch_size": batch_size, "lr": 1e-3, "device": "cpu"},
        "logging": {"log_every": 10, "ckpt_every": 30, "tensorboard": False, "progress": False},
    }
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    return validate(data)


REFERENCE = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: a * b % p,
    "/": lambda a, b, p: a * pow(b, -1, p) % p,
}


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@pytest.mark.parametrize("p", [5, 13])
def test_table_matches_a_python_reference(op, p):
    t = equation_table(p, op)
    pairs = [(a, b) for a in range(p) for b in range(p) if not (op == "/" and b == 0)]
    assert t.shape == (len(pairs), 5) and len(pairs) == (p * (p - 1) if op == "/" else p * p)
    assert [tuple(r) for r in t[:, [0, 2]].tolist()] == pairs
    assert t[:, 4].tolist() == [REFERENCE[op](a, b, p) for a, b in pairs]
    assert (t[:, 1] == p).all() and (t[:, 3] == p + 1).all()
    if op == "/":
        assert (t[:, 2] != 0).all()
        assert ((t[:, 4] * t[:, 2]) % p == t[:, 0]).all()  # c * b = a


def test_large_prime_division_is_exact():
    t = equation_table(97, "/")
    assert ((t[:, 4] * t[:, 2]) % 97 == t[:, 0]).all()


def test_split_is_disjoint_complete_deterministic_and_seeded():
    w = make_workload(cfg_of(p=11, train_fraction=0.3))
    rows = lambda t: {tuple(r) for r in t.tolist()}  # noqa: E731
    tr, ho = rows(w.train_eqs), rows(w.heldout_eqs)
    assert len(tr) == round(0.3 * 110) == len(w.train_eqs) and len(ho) == 110 - 33
    assert not tr & ho and tr | ho == rows(equation_table(11, "/"))
    again = make_workload(cfg_of(p=11, train_fraction=0.3))
    assert torch.equal(again.train_eqs, w.train_eqs) and torch.equal(again.heldout_eqs, w.heldout_eqs)
    other = make_workload(cfg_of(p=11, train_fraction=0.3, split_seed=1))
    assert rows(other.train_eqs) != tr and len(other.train_eqs) == 33


def test_batches_sample_the_training_set_or_take_all_of_it():
    w = make_workload(cfg_of(p=7, op="+", batch_size=16))  # 49 equations, 24 or 25 for training
    n_train = len(w.train_eqs)
    x, y = w.batch(3, {"loops": 1}, "cpu")
    assert x.shape == y.shape == (16, 4)
    assert (y[:, :3] == IGNORE).all() and (y[:, 3] != IGNORE).all()
    assert torch.equal(y[:, 3], (x[:, 0] + x[:, 2]) % 7)
    train_rows = {tuple(r) for r in w.train_eqs[:, :4].tolist()}
    assert all(tuple(r) in train_rows for r in x.tolist())
    assert torch.equal(x, w.batch(3, {"loops": 1}, "cpu")[0]) and not torch.equal(x, w.batch(4, {"loops": 1}, "cpu")[0])
    full = make_workload(cfg_of(p=7, op="+", batch_size=n_train))
    for step in (0, 1):
        x, y = full.batch(step, {"loops": 1}, "cpu")
        assert torch.equal(x, full.train_eqs[:, :4]) and torch.equal(y[:, 3], full.train_eqs[:, 4])
    big = make_workload(cfg_of(p=7, op="+", batch_size=512))
    assert len(big.batch(0, {"loops": 1}, "cpu")[0]) == n_train and big.tokens_per_step(512) == 4 * n_train


class Oracle(nn.Module):
    """Answers a + b mod p (optionally wrong when a == 0), as logits at every position."""

    def __init__(self, p: int, wrong_at_zero: bool = False):
        super().__init__()
        self.p, self.wrong = p, wrong_at_zero
        self.lin = nn.Linear(1, 1)  # so train()/eval() have something to flip

    def logits(self, idx, loops=None):
        c = (idx[:, 0] + idx[:, 2]) % self.p
        if self.wrong:
            c = torch.where(idx[:, 0] == 0, (c + 1) % self.p, c)
        out = torch.nn.functional.one_hot(c, self.p + 2).float() * 20
        return out[:, None].expand(-1, idx.shape[1], -1)


def test_log_metrics_score_the_whole_table_and_restore_the_mode(tmp_path):
    w = make_workload(cfg_of(p=7, op="+"))
    model = Oracle(7).train()
    m = w.log_metrics(model, "cpu")
    assert set(m) == {"train/loss", "train/accuracy", "heldout/loss", "heldout/accuracy"}
    assert m["train/accuracy"] == 1.0 and m["heldout/accuracy"] == 1.0 and m["heldout/loss"] < 1e-6
    assert model.training and all(isinstance(v, float) for v in m.values())
    bad = Oracle(7, wrong_at_zero=True)
    n_zero = lambda t: int((t[:, 0] == 0).sum())  # noqa: E731
    ev = w.evaluate(tmp_path, bad, "cpu", step=3, n_prompts=5, seed=1)
    assert ev["train"]["correct"] == len(w.train_eqs) - n_zero(w.train_eqs)
    assert ev["heldout"]["accuracy"] == pytest.approx(1 - n_zero(w.heldout_eqs) / len(w.heldout_eqs))
    assert ev["train"]["n"] + ev["heldout"]["n"] == 49 and ev["step"] == 3
    assert json.loads((tmp_path / "eval.json").read_text()) == ev
    assert not (tmp_path / "grokking.png").exists()  # no metrics.jsonl: no curve to draw
    assert "held-out accuracy" in w.summary(ev)


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"p": 9}, ["task.options.p=9", "prime"]),
        ({"p": 2}, ["task.options.p=2", "prime"]),
        ({"op": "^"}, ["task.options.op"]),
        ({"train_fraction": 1.0}, ["task.options.train_fraction"]),
        ({"p": 3, "train_fraction": 0.01}, ["task.options.train_fraction=0.01", "empty"]),
        ({"extra": {"task": {"seq_len": 5}}}, ["task.seq_len=5"]),
        ({"extra": {"curriculum": {"seq_len": {"start": 2, "end": 4}}}}, ["curriculum.seq_len"]),
    ],
)
def test_config_errors_name_the_key(kw, words):
    with pytest.raises(ConfigError) as e:
        cfg_of(**kw)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_is_prime():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert cfg_of(extra={"task": {"seq_len": 4}}).task.seq_len == 4


def test_train_run_end_to_end(tmp_path):
    result = train_run(cfg_of(p=7, op="*", batch_size=64, steps=30), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "eval.json", "grokking.png"):
        assert (run / name).is_file(), name
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [10, 20, 30]
    assert all(0 <= r[k] <= 1 for r in recs for k in ("train/accuracy", "heldout/accuracy"))
    ev = json.loads((run / "eval.json").read_text())
    assert ev["task"] == "modular_arithmetic" and ev["train"]["n"] == round(0.5 * 49)
    assert ev["train"]["accuracy"] == pytest.approx(recs[-1]["train/accuracy"])  # the same model, the same table
    assert "train accuracy" in result["summary"]


def test_embed_std_sets_the_token_embedding_only():
    torch.manual_seed(0)
    base = make_workload(cfg_of(p=97)).build_model()
    torch.manual_seed(0)
    big = make_workload(cfg_of(p=97, embed_std=0.5)).build_model()
    assert big.wte.weight.std().item() == pytest.approx(0.5, rel=0.05)
    assert base.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    for (n, a), (_, b) in zip(base.named_parameters(), big.named_parameters()):
        if n != "wte.weight":
            assert torch.equal(a, b), n
    with pytest.raises(ConfigError, match="embed_std"):
        cfg_of(embed_std=0.0)
