"""Language modelling on a text corpus (task `language_model`), char-, byte- or GPT-2-BPE-level.

The corpus (`task.options.corpus`: a UTF-8 file or the built-in `python_stdlib`) is prepared once into
memory-mapped train.bin/val.bin (iclab/workloads/sequence/corpus.py; `iclab data prepare CONFIG` does it
ahead of time, `iclab train` does it on first use and reuses it after). The batch of step s is
`batch_size` windows of `seq_len` + 1 tokens at offsets drawn from a CPU generator seeded by (seed, s):
a pure function of (seed, s), read with one fancy index into the memmap, so a corpus larger than RAM
trains. Every position is a target (no mask).

Recorded in the run: `data.json` (the corpus source with its SHA-256 / file list, the prepared
directory and the tokenizer's fingerprint) and `tokenizer.json`; the checkpoint identity includes the
tokenizer's fingerprint, so a run never loads weights trained on another vocabulary.

Logged at every log step: `val/loss` and `val/bits` on a fixed set of `log_val_windows` validation
windows (evenly spaced over the val split). Evaluation (eval.json): the loss over the whole val split
in consecutive windows of `seq_len` (each token predicted from the tokens before it in its window),
in nats and bits per token and bits per character, the loss at each context position, and the n-gram
baselines (iclab/evaluation/ngram.py) fit on train and scored on the same val tokens (each from its
previous n-1 tokens), with the first logged step at which the model's val loss passed each of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_serializer, model_validator

from iclab.evaluation import EvalError
from iclab.evaluation.ngram import ngram_baselines
from iclab.files import write_json
from iclab.registry import TASKS
from iclab.workloads.base import step_generator
from iclab.workloads.sequence.base import (
    SequenceOptions,
    SequenceWorkload,
    batch_metrics,
    summarize_metrics,
    token_cross_entropy,
)
from iclab.workloads.sequence.corpus import iter_windows, load_prepared, prepare, sample_windows, windows_at
from iclab.workloads.sequence.corpus_sources import HF_PREFIX
from iclab.workloads.sequence.tokenizers import tokenizer_from_json

NGRAM_ORDERS = (1, 2, 3, 5)


class LMOptions(SequenceOptions):
    corpus: str = Field(
        "python_stdlib",
        description="a UTF-8 text file, python_stdlib (the running Python's standard-library sources), or "
        "hf:NAME[:CONFIG], a Hugging Face dataset read offline (a local directory or the local cache)",
    )
    split: str | None = Field(None, description="hf: corpora: the split whose text is used (default train)")
    text_field: str | None = Field(None, description="hf: corpora: the column holding the text (default text)")
    tokenizer: Literal["char", "byte", "gpt2"] = "char"
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the last fraction of the token stream is validation")
    data_dir: str = Field("data", description="where prepared corpora live (relative to the working directory)")
    glob: str = Field("**/*.py", description="python_stdlib: the files taken (relative to the stdlib directory)")
    max_bytes: int | None = Field(None, gt=0, description="use only the first max_bytes of the corpus")
    log_val_windows: int = Field(32, ge=0, description="validation windows scored at every log step (0: none)")
    eval_batch_size: int = Field(64, gt=0)

    @model_validator(mode="after")
    def _hf_only(self):
        if (self.split is not None or self.text_field is not None) and not self.corpus.startswith(HF_PREFIX):
            raise ValueError(f"split and text_field apply to {HF_PREFIX}NAME[:CONFIG] corpora, not {self.corpus!r}")
        return self

    @model_serializer(mode="wrap")
    def _drop_unset_hf(self, handler):
        """split / text_field are left out of the stored options while unset, so the options (and the
        checkpoint identity) of runs made before they existed stay the same."""
        return {k: v for k, v in handler(self).items() if not (k in ("split", "text_field") and v is None)}


class VocabularyMismatch(EvalError):
    pass


@TASKS.register("language_model")
class LanguageModel(SequenceWorkload):
    """next-token prediction on a text corpus (char, byte or GPT-2 BPE); n-gram baselines"""

    Options = LMOptions
    eval_options = ("loops", "tag", "step", "seq_len")  # the whole val split: no prompts, no seed
    default_seq_len = 128

    def __init__(self, cfg, run_dir=None):
        super().__init__(cfg, run_dir)
        o = self.opts
        path, _ = prepare(
            o.corpus,
            o.tokenizer,
            val_fraction=o.val_fraction,
            data_root=Path(o.data_dir),
            glob=o.glob,
            max_bytes=o.max_bytes,
            split=o.split,
            text_field=o.text_field,
        )
        self.data = load_prepared(path, check_ids=False)
        self.tokenizer = self.data.tokenizer
        self.vocab_size = self.tokenizer.vocab_size
        if run_dir is not None and (Path(run_dir) / "tokenizer.json").is_file():
            saved = tokenizer_from_json(json.loads((Path(run_dir) / "tokenizer.json").read_text()))
            if saved.fingerprint() != self.tokenizer.fingerprint():
                raise VocabularyMismatch(
                    f"vocabulary mismatch: run {run_dir} was trained with tokenizer {saved.fingerprint()} "
                    f"({saved.kind}, {saved.vocab_size} tokens) but the data in {path} has "
                    f"{self.tokenizer.fingerprint()} "
                    f"({self.tokenizer.kind}, {self.vocab_size} tokens)"
                )
        for split, arr in (("train", self.data.train), ("val", self.data.val)):
            if len(arr) < self.seq_len + 1:
                raise EvalError(
                    f"task.seq_len={self.seq_len} needs at least {self.seq_len + 1} tokens; the {split} "
                    f"split of {path} has {len(arr)}"
                )
        self._log_batches = None

    def identity(self):
        return {"vocab_size": self.vocab_size, "tokenizer": self.tokenizer.fingerprint()}

    def start_run(self, run_dir):
        write_json(Path(run_dir) / "tokenizer.json", self.tokenizer.to_json())
        write_json(
            Path(run_dir) / "data.json",
            {
                "prepared": str(self.data.path),
                "source": self.data.meta["source"],
                "tokenizer_fingerprint": self.tokenizer.fingerprint(),
                "n_train": self.data.meta["n_train"],
                "n_val": self.data.meta["n_val"],
            },
        )

    # --- training ------------------------------------------------------------------------------------
    def batch(self, step, cur, device):
        gen = step_generator(self.cfg.seed, step, "cpu")  # offsets index a host memmap
        x, y = sample_windows(self.data.train, self.cfg.training.batch_size, cur.get("seq_len") or self.seq_len, gen)
        pin = device.type == "cuda"
        return (x.pin_memory() if pin else x).to(device, non_blocking=pin), (y.pin_memory() if pin else y).to(
            device, non_blocking=pin
        )

    def fixed_batches(self, n, seed, device):
        """n windows of seq_len evenly spaced over the val split (the same for every call; `seed` does not apply)."""
        x, y = windows_at(self.data.val, np.linspace(0, len(self.data.val) - self.seq_len - 1, n), self.seq_len)
        bs = self.opts.eval_batch_size
        return [(x[i : i + bs].to(device), y[i : i + bs].to(device)) for i in range(0, n, bs)]

    def log_metrics(self, model, device):
        n = self.opts.log_val_windows
        if n == 0:
            return {}
        if self._log_batches is None:
            self._log_batches = self.fixed_batches(n, 0, device)
        m = self.metrics_of(model, self._log_batches)
        return {"val/loss": m["loss"], "val/bits": m["bits"]}

    # --- evaluation ----------------------------------------------------------------------------------
    def ngram(self) -> dict:
        """The n-gram baselines of the prepared split (computed once, cached next to the data)."""
        path = self.data.path / "ngram.json"
        key = list(NGRAM_ORDERS)
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("orders") == key:
                return cached["baselines"]
        res = ngram_baselines(self.data.train, self.data.val, self.vocab_size, NGRAM_ORDERS)
        write_json(path, {"orders": key, "baselines": res})
        return res

    @torch.no_grad()
    def evaluate(self, run_dir, model, device, *, tag=None, step=None, loops=None, seq_len=None, **_):
        run_dir = Path(run_dir)
        L = seq_len or self.seq_len
        if L > self.cfg.model.n_positions:
            raise EvalError(f"--seq-len {L} exceeds the model's n_positions={self.cfg.model.n_positions}")
        was = model.training
        model.eval()
        parts, pos_sum, pos_n = [], torch.zeros(L, dtype=torch.float64), torch.zeros(L, dtype=torch.float64)
        for x, y in iter_windows(self.data.val, L, self.opts.eval_batch_size):
            x, y = x.to(device), y.to(device)
            logits = model.logits(x, loops=loops)
            ce = token_cross_entropy(logits, y)  # every position counts in a language model
            parts.append(batch_metrics(logits, y, ce))
            pos_sum[: x.shape[1]] += ce.sum(0).double().cpu()
            pos_n[: x.shape[1]] += x.shape[0]
        model.train(was)
        m = summarize_metrics(parts)
        chars_per_token = self._chars_per_token()
        baselines = self.ngram()
        for b in baselines.values():
            b["bits_per_char"] = b["bits"] / chars_per_token
        ev = {
            "task": "language_model",
            "corpus": self.data.meta["source"],
            "tokenizer": self.tokenizer.kind,
            "vocab_size": self.vocab_size,
            "seq_len": L,
            "val_tokens": m["n_tokens"],
            "loss": m["loss"],
            "bits": m["bits"],
            "bits_per_char": m["bits"] / chars_per_token,
            "chars_per_token": chars_per_token,
            "token_accuracy": m["token_accuracy"],
            "loss_per_position": (pos_sum / pos_n.clamp_min(1)).tolist(),
            "baselines": baselines,
            "steps_to_pass": self._steps_to_pass(run_dir, baselines),
            "loops": loops or self.cfg.model.loops,
            "step": step,
        }
        suffix = f"_{tag}" if tag else ""
        write_json(run_dir / f"eval{suffix}.json", ev)
        from iclab.evaluation.plots import plot_lm_eval

        plot_lm_eval(run_dir, ev, run_dir / f"lm_eval{suffix}.png")
        return ev

    def _chars_per_token(self) -> float:
        if self.tokenizer.kind == "char":
            return 1.0
        sample = np.asarray(self.data.val[:1_000_000])
        return len(self.tokenizer.decode(sample)) / max(len(sample), 1)

    @staticmethod
    def _steps_to_pass(run_dir: Path, baselines: dict) -> dict:
        """The first logged step whose val loss (log_val_windows) is below each baseline (null: never)."""
        path = run_dir / "metrics.jsonl"
        recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
        recs = [r for r in recs if "val/loss" in r]
        return {
            name: next((r["step"] for r in recs if r["val/loss"] < b["nats"]), None) for name, b in baselines.items()
        }

    def headline(self, ev):
        return f"val bits per {'char' if ev['tokenizer'] == 'char' else 'token'}", ev["bits"], True

    def summary(self, ev):
        unit = "char" if ev["tokenizer"] == "char" else "token"
        parts = [f"model {ev['bits']:.3f}"] + [f"{n} {b['bits']:.3f}" for n, b in ev["baselines"].items()]
        note = "" if unit == "char" else f" (model {ev['bits_per_char']:.3f} bits per character)"
        return f"validation bits per {unit}: " + ", ".join(parts) + note
