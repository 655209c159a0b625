"""The language_model workload end to end: artifacts, recorded corpus, bit-exact resume, bad input."""

import hashlib
import json
import random

import pytest
import torch
from _faultkit import assert_same_metrics, assert_same_weights, crash_after, write_yaml
from typer.testing import CliRunner

from iclab.cli import app
from iclab.config import validate
from iclab.runs import train_run
from iclab.workloads import make_workload


def _corpus(path, seed=0, n=4000):
    rng = random.Random(seed)
    words = ["def", "return", "self", "value", "for", "in", "range", "(x)", ":", "\n    "]
    path.write_text(" ".join(rng.choice(words) for _ in range(n)))
    return path


def _cfg(tmp_path, corpus, **training):
    return {
        "seed": 0,
        "task": {
            "name": "language_model",
            "seq_len": 16,
            "options": {"corpus": str(corpus), "data_dir": str(tmp_path / "data"), "log_val_windows": 4},
        },
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16},
        "training": {"steps": 20, "batch_size": 4, "lr": 3e-3, "device": "cpu", **training},
        "logging": {"log_every": 5, "ckpt_every": 10, "tensorboard": False, "progress": False},
    }


def test_train_writes_every_artifact_and_records_the_corpus(tmp_path):
    corpus = _corpus(tmp_path / "text.txt")
    run = tmp_path / "run"
    res = train_run(validate(_cfg(tmp_path, corpus)), run)
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "model.safetensors",
        "eval.json",
        "lm_eval.png",
        "tokenizer.json",
        "data.json",
    ):
        assert (run / name).is_file(), name
    data = json.loads((run / "data.json").read_text())
    assert data["source"]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [5, 10, 15, 20] and all("val/loss" in r for r in recs)
    ev = res["eval"]
    assert set(ev["baselines"]) == {"unigram", "bigram_kn", "trigram_kn", "5gram_kn"}
    assert len(ev["loss_per_position"]) == 16
    assert ev["loss"] < ev["baselines"]["unigram"]["nats"] + 1.0  # trained a little; sanity, not a target
    assert "validation bits per char" in res["summary"]


def test_batches_are_a_pure_function_of_seed_and_step(tmp_path):
    corpus = _corpus(tmp_path / "text.txt")
    w = make_workload(validate(_cfg(tmp_path, corpus)))
    cpu = torch.device("cpu")
    a, b, c = w.batch(3, {"seq_len": 16}, cpu), w.batch(3, {"seq_len": 16}, cpu), w.batch(4, {"seq_len": 16}, cpu)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert torch.equal(a[0][:, 1:], a[1][:, :-1])  # targets are the inputs shifted by one
    short = w.batch(3, {"seq_len": 8}, cpu)  # a seq_len curriculum shortens the windows
    assert short[0].shape == (4, 8)


def test_resume_of_a_token_run_is_bit_exact(tmp_path):
    corpus = _corpus(tmp_path / "text.txt")
    d = _cfg(tmp_path, corpus)
    ref, run = tmp_path / "ref", tmp_path / "run"
    train_run(validate(d), ref, evaluate_after=False)
    train_run(validate(d), run, evaluate_after=False)
    crash_after(run, 10)
    train_run(None, run, resume=True, evaluate_after=False)
    assert_same_weights(ref, run)
    assert_same_metrics(ref, run)


def test_sample_prints_a_continuation(tmp_path):
    corpus = _corpus(tmp_path / "text.txt")
    run = tmp_path / "run"
    train_run(validate(_cfg(tmp_path, corpus)), run, evaluate_after=False)
    args = ["sample", str(run), "--prompt", "def ", "--tokens", "30", "--seed", "1", "--top-k", "3"]
    r1, r2 = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert r1.exit_code == 0, r1.output
    assert r1.output == r2.output and r1.output.startswith("def ") and len(r1.output.rstrip("\n")) >= 4 + 30 - 5
    greedy = CliRunner().invoke(app, ["sample", str(run), "--prompt", "def ", "--tokens", "5", "--temperature", "0"])
    assert greedy.exit_code == 0


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_corpus_inputs_fail_in_one_line(tmp_path):
    missing = tmp_path / "nope.txt"
    cfg = write_yaml(tmp_path / "c.yaml", _cfg(tmp_path, missing))
    _one_line_error(CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r1")]), str(missing))
    assert not (tmp_path / "r1").exists()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    cfg = write_yaml(tmp_path / "c2.yaml", _cfg(tmp_path, bad))
    _one_line_error(CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r2")]), str(bad), "UTF-8")


def test_vocabulary_mismatch_between_run_and_data_is_refused(tmp_path):
    corpus = _corpus(tmp_path / "text.txt")
    run = tmp_path / "run"
    train_run(validate(_cfg(tmp_path, corpus)), run, evaluate_after=False)
    corpus.write_text(corpus.read_text() + " ~new characters~ ")  # same path, another vocabulary
    _one_line_error(CliRunner().invoke(app, ["eval", str(run)]), "vocabulary mismatch", str(run))


def test_seq_len_beyond_positions_is_a_config_error(tmp_path):
    d = _cfg(tmp_path, _corpus(tmp_path / "text.txt"))
    d["task"]["seq_len"] = 32
    with pytest.raises(Exception, match="task.seq_len=32 needs 32 positions > model.n_positions=16"):
        validate(d)


def test_init_from_loads_weights_and_refuses_another_vocabulary(tmp_path):
    from iclab.training.trainer import Trainer

    corpus = _corpus(tmp_path / "text.txt")
    src = tmp_path / "src"
    train_run(validate(_cfg(tmp_path, corpus)), src, evaluate_after=False)
    d = _cfg(tmp_path, corpus)
    d["training"]["init_from"] = str(src)
    tr = Trainer(validate(d), tmp_path / "ft")
    from safetensors.torch import load_file

    want = load_file(str(src / "model.safetensors"))
    assert all(torch.equal(v, want[k]) for k, v in tr.model.state_dict().items())
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text() + " {new} ")
    d2 = _cfg(tmp_path, other)
    d2["training"]["init_from"] = str(src)
    cfg = write_yaml(tmp_path / "ft.yaml", d2)
    _one_line_error(
        CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "ft2")]), "vocabulary mismatch", str(src)
    )


def test_a_seq_len_curriculum_lengthens_the_windows(tmp_path):
    d = _cfg(tmp_path, _corpus(tmp_path / "text.txt"))
    d["curriculum"] = {"seq_len": {"start": 8, "end": 16, "inc": 4, "interval": 10}}
    run = tmp_path / "run"
    train_run(validate(d), run, evaluate_after=False)
    lens = [json.loads(ln)["curriculum/seq_len"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert lens == [8, 8, 12, 12]  # logged at steps 5, 10, 15, 20 for the step before each
    d["curriculum"]["seq_len"]["end"] = 32
    with pytest.raises(Exception, match="curriculum.seq_len.end=32 exceeds task.seq_len=16"):
        validate(d)
