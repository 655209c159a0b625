"""Sorting (seed 002): read n integers, a separator, then write the same integers in ascending order.

Token layout (V = task.options.vocab values, vocab_size = V + 1):

    ids       0 .. V-1 the values, V the separator SEP
    sequence  x_1 .. x_n  SEP  s_1 .. s_n            (2n + 1 tokens, s = sort(x))
    inputs    sequence[:-1]                            (2n tokens: tokens_needed(cfg, n) = 2n)
    targets   sequence[1:], IGNORE at the first n positions (they would predict x_2 .. x_n and SEP,
              which are unpredictable); the last n predict s_1 .. s_n, so the loss and the metrics count
              exactly the n sorted outputs.

n is task.seq_len (default 16); a seq_len curriculum varies it during training. With repeats=false the
x are n distinct values (a batched draw without replacement: the first n of a random permutation of the
V values, made by argsort of uniform noise on the device), so n <= V; with repeats=true they are drawn
with replacement, so ties occur (seed 002's model failed on those).

Evaluation: at the trained length and at the other lengths (task.options.eval_lengths, default 2n capped
by the model's positions and, without repeats, by V), token accuracy and exact match (teacher forcing,
which for exact match equals greedy decoding; see sequence/base.py) over eval.n_prompts fresh sequences,
and the accuracy of each output position at the trained length. eval.json:

    {"task": "sorting", "trained_length": n, "vocab": V, "repeats": bool, "loops": b, "seed": s,
     "n_prompts": N, "step": training step or null,
     "lengths": {"<len>": {"loss", "bits", "token_accuracy", "exact_match", "exact_match_ci95",
                           "n_sequences", "n_tokens"}, ...},      (iclab.workloads.sequence.base.summarize_metrics)
     "per_position_accuracy": [accuracy of s_1, ..., of s_n] at the trained length}

and sorting.png: exact match (with its 95% CI) and token accuracy vs length, the trained length marked,
beside the per-position accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from iclab.evaluation import EvalError
from iclab.files import write_json
from iclab.registry import TASKS
from iclab.workloads.sequence.base import IGNORE, SequenceOptions, SequenceWorkload


class SortingOptions(SequenceOptions):
    vocab: int = Field(64, ge=2, description="V: the values 0..V-1 (the separator is token V)")
    repeats: bool = Field(False, description="draw the n values with replacement (ties); false: n distinct values")
    eval_lengths: list[Annotated[int, Field(gt=0)]] | None = Field(
        None,
        description="lengths evaluated besides the trained one (default: 2n, capped by the model's positions "
        "and, without repeats, by vocab)",
    )


def eval_generator(seed: int, length: int, device) -> torch.Generator:
    """The generator of the evaluation sequences of one length: seeded from (seed, length) through a
    3-word seed, so it never coincides with a training step's 2-word `step_generator` seed."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, length, 1]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


def sorting_batch(
    batch: int, n: int, vocab: int, repeats: bool, gen: torch.Generator, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (batch, 2n), of sorting sequences (layout in the module docstring)."""
    if repeats:
        x = torch.randint(vocab, (batch, n), generator=gen, device=device)
    else:
        x = torch.rand(batch, vocab, generator=gen, device=device).argsort(dim=1)[:, :n]
    sep = torch.full((batch, 1), vocab, dtype=torch.long, device=device)
    seq = torch.cat([x, sep, x.sort(dim=1).values], dim=1)
    targets = seq[:, 1:].clone()
    targets[:, :n] = IGNORE
    return seq[:, :-1], targets


@TASKS.register("sorting")
class SortingWorkload(SequenceWorkload):
    """Sorting: n integers, a separator, then the integers in ascending order (loss on the sorted half)."""

    Options = SortingOptions
    default_seq_len = 16

    def __init__(self, cfg, run_dir=None):
        super().__init__(cfg, run_dir)
        self.vocab_size = self.opts.vocab + 1

    def loss_from(self, inputs):
        return inputs.shape[1] // 2  # the sorted half (targets IGNORE at the first n positions)

    # --- config checks -----------------------------------------------------------------------------------
    @classmethod
    def tokens_needed(cls, cfg, seq_len: int) -> int:
        return 2 * seq_len

    @classmethod
    def check(cls, opts, n_dims: int) -> None:
        if not opts.repeats:
            for k in opts.eval_lengths or []:
                if k > opts.vocab:
                    raise ValueError(
                        f"task.options.eval_lengths has {k} > task.options.vocab={opts.vocab}: "
                        f"{k} distinct values do not exist (set task.options.repeats=true)"
                    )

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        opts, n, P = cls.Options(**cfg.task.options), cfg.task.seq_len or cls.default_seq_len, cfg.model.n_positions
        if not opts.repeats and n > opts.vocab:
            raise ValueError(
                f"task.seq_len={n} exceeds task.options.vocab={opts.vocab}: {n} distinct values do not "
                f"exist (set task.options.repeats=true or a larger vocab)"
            )
        for k in opts.eval_lengths or []:
            if 2 * k > P:
                raise ValueError(
                    f"task.options.eval_lengths has {k}, which needs {2 * k} positions > model.n_positions={P}"
                )

    # --- training ------------------------------------------------------------------------------------
    def sample(self, batch, seq_len, gen, device):
        return sorting_batch(batch, seq_len, self.opts.vocab, self.opts.repeats, gen, device)

    # --- evaluation ------------------------------------------------------------------------------------
    def eval_lengths(self) -> list[int]:
        """The trained length and the task's other evaluation lengths (default 2n, capped), ascending."""
        n = self.seq_len
        if self.opts.eval_lengths is not None:
            return sorted({n, *self.opts.eval_lengths})
        cap = (
            self.cfg.model.n_positions // 2
            if self.opts.repeats
            else min(self.cfg.model.n_positions // 2, self.opts.vocab)
        )
        return sorted({n, min(2 * n, cap)})

    def eval_batches(self, n: int, n_prompts: int, seed: int, device):
        """eval.batch_size-sized batches of n_prompts fresh sequences of length n (deterministic in seed, n)."""
        gen, bs = eval_generator(seed, n, device), self.cfg.eval.batch_size
        for start in range(0, n_prompts, bs):
            yield self.sample(min(bs, n_prompts - start), n, gen, device)

    def fixed_batches(self, n, seed, device):
        return list(self.eval_batches(self.seq_len, n, seed, device))

    def log_metrics(self, model, device):
        """With logging.val_examples = N > 0: val/loss, val/token_accuracy, val/exact_match on N fixed fresh
        sequences at the trained length (eval.seed)."""
        n = self.cfg.logging.val_examples
        if n == 0:
            return {}
        if getattr(self, "_val_batches", None) is None:
            self._val_batches = self.fixed_batches(n, self.cfg.eval.seed, device)
        m = self.metrics_of(model, self._val_batches)
        return {"val/loss": m["loss"], "val/token_accuracy": m["token_accuracy"], "val/exact_match": m["exact_match"]}

    @torch.no_grad()
    def per_position_accuracy(self, model, batches, loops: int | None = None) -> list[float]:
        """Accuracy of each sorted output position (teacher forcing) over the batches."""
        was, right, count = model.training, 0, 0
        model.eval()
        for x, y in batches:
            n = y.shape[1] // 2
            right = right + (model.logits(x, loops=loops)[:, n:].argmax(-1) == y[:, n:]).sum(0)
            count += y.shape[0]
        model.train(was)
        return (right.double() / count).tolist()

    def evaluate(
        self,
        run_dir: Path,
        model,
        device,
        *,
        n_prompts=None,
        seed=None,
        tag=None,
        step=None,
        loops=None,
        seq_len=None,
        **_,
    ) -> dict:
        cfg, V = self.cfg, self.opts.vocab
        n = self.seq_len
        lengths = sorted({n, seq_len}) if seq_len else self.eval_lengths()
        for k in lengths:
            if 2 * k > cfg.model.n_positions:
                raise EvalError(
                    f"--seq-len {k} needs {2 * k} positions; the model has n_positions={cfg.model.n_positions}"
                )
            if k > V and not self.opts.repeats:
                raise EvalError(
                    f"--seq-len {k} exceeds task.options.vocab={V} distinct values (the run has repeats=false)"
                )
        n_prompts = n_prompts or cfg.eval.n_prompts
        seed = cfg.eval.seed if seed is None else seed
        loops = loops or cfg.eval.loops or cfg.model.loops
        ev = {
            "task": "sorting",
            "trained_length": n,
            "vocab": V,
            "repeats": self.opts.repeats,
            "loops": loops,
            "seed": seed,
            "n_prompts": n_prompts,
            "step": step,
            "lengths": {
                str(k): self.metrics_of(model, self.eval_batches(k, n_prompts, seed, device), loops) for k in lengths
            },
            "per_position_accuracy": self.per_position_accuracy(
                model, self.eval_batches(n, n_prompts, seed, device), loops
            ),
        }
        suffix = f"_{tag}" if tag else ""
        write_json(run_dir / f"eval{suffix}.json", ev)
        plot_sorting(ev, run_dir / f"sorting{suffix}.png", title=run_dir.name)
        return ev

    def headline(self, ev):
        n = ev["trained_length"]
        return f"exact match at n={n}", ev["lengths"][str(n)]["exact_match"], False

    def summary(self, ev):
        parts = [
            f"n={k}{'*' if int(k) == ev['trained_length'] else ''} {m['exact_match']:.3f} / {m['token_accuracy']:.3f}"
            for k, m in ev["lengths"].items()
        ]
        return "sorting exact match / token accuracy (* trained length): " + ", ".join(parts)


def plot_sorting(ev: dict, path: Path, title: str | None = None) -> Path:
    """Exact match (95% CI) and token accuracy vs length with the trained length marked; per-position
    accuracy at the trained length."""
    from iclab.plotting import plt

    ks = [int(k) for k in ev["lengths"]]
    ms = list(ev["lengths"].values())
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    ax.errorbar(
        ks,
        [m["exact_match"] for m in ms],
        yerr=[m["exact_match_ci95"] for m in ms],
        marker="o",
        lw=2,
        capsize=3,
        color="tab:blue",
        label="exact match",
    )
    ax.plot(ks, [m["token_accuracy"] for m in ms], marker="s", lw=2, ls="--", color="tab:red", label="token accuracy")
    ax.axvline(ev["trained_length"], color="gray", ls=":", lw=1.2, label=f"trained length {ev['trained_length']}")
    if len(ks) <= 4:
        ax.set_xticks(ks)
    ax.margins(x=0.08)  # the trained length often sits at the left end
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("numbers to sort (n)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title + ': ' if title else ''}sorting, V={ev['vocab']}{', repeats' if ev['repeats'] else ''}")
    ax.legend(fontsize=8, loc="best")
    acc = ev["per_position_accuracy"]
    bx.plot(range(1, len(acc) + 1), acc, marker=".", lw=2, color="tab:blue")
    bx.set_ylim(-0.05, 1.05)
    bx.set_xlabel("output position (i-th smallest)")
    bx.set_ylabel("token accuracy")
    bx.set_title(f"per position at n={ev['trained_length']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
