"""Tiny runs shared by the interop tests (trained in seconds; nothing is downloaded)."""

import random

import pytest

from iclab.config import validate
from iclab.runs import train_run

WORDS = ["def", "return", "self", "value", "for", "in", "range", "(x)", ":", "\n    ", "é", "naïve"]


def write_corpus(path, seed=0, n=3000):
    rng = random.Random(seed)
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(n)), encoding="utf-8")
    return path


def lm_config(tmp, corpus, tokenizer="char", **model):
    return {
        "seed": 0,
        "task": {
            "name": "language_model",
            "seq_len": 16,
            "options": {
                "corpus": str(corpus),
                "tokenizer": tokenizer,
                "data_dir": str(tmp / "data"),
                "log_val_windows": 4,
            },
        },
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 24, **model},
        "training": {"steps": 6, "batch_size": 4, "lr": 3e-3, "device": "cpu"},
        "logging": {"log_every": 3, "ckpt_every": 3, "tensorboard": False, "progress": False},
    }


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    corpus = write_corpus(tmp / "text.txt")
    run = tmp / "run"
    train_run(validate(lm_config(tmp, corpus, activation="gelu_tanh")), run)
    return run
