"""Modular arithmetic (grokking; Power et al. 2022): learn the table of a o b = c (mod p) from half of it.

Token layout (p = task.options.p, a prime > 2; vocab_size = p + 2):

    ids       0 .. p-1 the numbers, p the operation token (one op per task), p + 1 "="
    equation  a  op  b  =  c                            (5 tokens)
    inputs    a  op  b  =                               (4 tokens: default_seq_len = tokens_needed = 4)
    targets   IGNORE IGNORE IGNORE c                    (only the "=" position predicts, c)

Operations (task.options.op): "+" a + b, "-" a - b, "*" a * b, "/" a * b^(p-2) = a / b (Fermat's little
theorem; the p pairs with b = 0 are left out, so the table has p(p-1) equations, else p^2).

The split: every valid pair (a, b), permuted by a CPU generator seeded with task.options.split_seed; the
first round(train_fraction * N) equations are the training set, the rest are held out. It is built once
(vectorized) in __init__, is deterministic and disjoint, and moves to the device on first use.

Training batches draw training.batch_size equations uniformly with replacement from the training set
(the step's generator). If batch_size >= the number of training equations, every batch is the whole
training set (full-batch gradient descent, as in the grokking papers), without resampling.

At every log step the workload adds the loss and accuracy on ALL training and ALL held-out equations
(train/loss, train/accuracy, heldout/loss, heldout/accuracy: the grokking curve, at the model's full
loops); the evaluation writes them (with exact counts) to eval.json:

    {"task": "modular_arithmetic", "p", "op", "train_fraction", "split_seed", "loops", "step", "chance": 1/p,
     "train": {"loss", "accuracy", "correct", "n"}, "heldout": {"loss", "accuracy", "correct", "n"}}

and draws grokking.png from the run's metrics.jsonl: train and held-out accuracy (and loss) vs step, log x.
The evaluation is exhaustive, so eval's n_prompts and seed options do not apply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from iclab.evaluation import EvalError
from iclab.files import write_json
from iclab.models.flops import lm_train_step_flops
from iclab.registry import TASKS
from iclab.workloads.base import step_generator
from iclab.workloads.sequence.base import IGNORE, SequenceOptions, SequenceWorkload

CHUNK = 8192  # equations per forward pass when the whole table is scored


class ModularOptions(SequenceOptions):
    p: int = Field(97, description="the prime modulus (> 2)")
    op: Literal["+", "-", "*", "/"] = Field("/", description="the operation; '/' multiplies by the inverse of b != 0")
    train_fraction: float = Field(
        0.5, gt=0.0, lt=1.0, description="share of the table trained on; the rest is held out"
    )
    split_seed: int = Field(0, ge=0, description="seed of the permutation that splits the table")
    embed_std: float | None = Field(
        None,
        gt=0,
        description="if set, the token embedding (tied to the LM head) starts "
        "from N(0, embed_std^2) instead of GPT-2's N(0, 0.02^2): a larger start delays "
        "generalization past memorization (Liu et al. 2023, Omnigrok)",
    )


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def mod_pow(base: torch.Tensor, exp: int, p: int) -> torch.Tensor:
    """base^exp mod p elementwise (square and multiply over the bits of exp; int64, exact for p < 3e9)."""
    out, base = torch.ones_like(base), base % p
    while exp:
        if exp & 1:
            out = out * base % p
        base, exp = base * base % p, exp >> 1
    return out


def equation_table(p: int, op: str) -> torch.Tensor:
    """All valid equations (N, 5) int64: rows (a, OP, b, EQ, c) in a-major order, b = 0 left out for '/'."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    if op == "/":
        a, b = a[b != 0], b[b != 0]
    c = {
        "+": lambda: (a + b) % p,
        "-": lambda: (a - b) % p,
        "*": lambda: a * b % p,
        "/": lambda: a * mod_pow(b, p - 2, p) % p,
    }[op]()
    return torch.stack([a, torch.full_like(a, p), b, torch.full_like(a, p + 1), c], dim=1)


def split_table(table: torch.Tensor, train_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) rows of `table`: a permutation seeded by split_seed, cut at round(fraction * N)."""
    perm = torch.randperm(len(table), generator=torch.Generator().manual_seed(split_seed))
    n_train = round(train_fraction * len(table))
    return table[perm[:n_train]], table[perm[n_train:]]


def to_batch(eqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, 4), targets (B, 4)) of equations (B, 5): only the last input position counts."""
    targets = torch.full_like(eqs[:, :4], IGNORE)
    targets[:, 3] = eqs[:, 4]
    return eqs[:, :4], targets


@TASKS.register("modular_arithmetic")
class ModularArithmeticWorkload(SequenceWorkload):
    """Modular arithmetic a o b = c (mod p) with a held-out half of the table (grokking)."""

    Options = ModularOptions
    eval_options = ("loops", "tag", "step", "seq_len")  # exhaustive: no prompts, no seed
    default_seq_len = 4

    def __init__(self, cfg, run_dir=None):
        super().__init__(cfg, run_dir)
        o = self.opts
        self.vocab_size = o.p + 2
        self.train_eqs, self.heldout_eqs = split_table(equation_table(o.p, o.op), o.train_fraction, o.split_seed)
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # --- config checks -----------------------------------------------------------------------------------
    @classmethod
    def tokens_needed(cls, cfg, seq_len: int) -> int:
        return 4

    @classmethod
    def check(cls, opts, n_dims: int) -> None:
        if opts.p <= 2 or not is_prime(opts.p):
            raise ValueError(f"task.options.p={opts.p} must be a prime > 2")
        n = opts.p * (opts.p - 1 if opts.op == "/" else opts.p)
        if not 0 < round(opts.train_fraction * n) < n:
            raise ValueError(
                f"task.options.train_fraction={opts.train_fraction} leaves the training or held-out set "
                f"of the {n} equations empty"
            )

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.task.seq_len is not None and cfg.task.seq_len != 4:
            raise ValueError(
                f"task.seq_len={cfg.task.seq_len}: modular_arithmetic reads 4 tokens (a op b =); "
                f"leave task.seq_len unset or set it to 4"
            )
        if cfg.curriculum.seq_len is not None:
            raise ValueError("curriculum.seq_len: modular_arithmetic has a fixed length (4 tokens); remove it")
        super().check_config(cfg)

    # --- training ------------------------------------------------------------------------------------
    def build_model(self):
        model = super().build_model()
        if self.opts.embed_std is not None:
            torch.nn.init.normal_(model.wte.weight, mean=0.0, std=self.opts.embed_std)
        return model

    def splits(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, held-out) equations on `device` (copied there once)."""
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = (self.train_eqs.to(device), self.heldout_eqs.to(device))
        return self._on_device[key]

    def fixed_batches(self, n, seed, device):
        """The held-out equations (all of them: `n` and `seed` do not apply)."""
        return [to_batch(c) for c in self.splits(device)[1].split(self.cfg.eval.batch_size)]

    def batch(self, step, cur, device):
        train = self.splits(device)[0]
        B = self.cfg.training.batch_size
        if B >= len(train):  # full batch: the whole training set every step
            return to_batch(train)
        gen = step_generator(self.cfg.seed, step, device)
        return to_batch(train[torch.randint(len(train), (B,), generator=gen, device=device)])

    def curriculum_keys(self):
        return ("loops",)

    def tokens_per_step(self, batch_size):
        return min(batch_size, len(self.train_eqs)) * 4

    def step_flops(self):
        return lm_train_step_flops(
            self.cfg.model,
            vocab_size=self.vocab_size,
            seq_len=4,
            batch=min(self.cfg.training.batch_size, len(self.train_eqs)),
            head_from=3,
        )

    def loss_from(self, inputs):
        return inputs.shape[1] - 1  # only the "=" position predicts (the LM head runs there only)

    # --- metrics ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def split_stats(self, model, eqs: torch.Tensor, loops: int | None = None) -> torch.Tensor:
        """[loss sum, correct] of `model` (final iteration, eval mode) over all equations `eqs`, on the device."""
        was, out = model.training, torch.zeros(2, dtype=torch.float64, device=eqs.device)
        model.eval()
        for chunk in eqs.split(CHUNK):
            x, c = chunk[:, :4], chunk[:, 4]
            logits = model.logits(x, loops=loops)[:, -1].float()
            out += torch.stack([F.cross_entropy(logits, c, reduction="sum"), (logits.argmax(-1) == c).sum()]).double()
        model.train(was)
        return out

    def table_metrics(self, model, device, loops: int | None = None) -> dict[str, float]:
        """Loss, accuracy and correct counts on the whole training and held-out sets (one host sync)."""
        train, held = self.splits(device)
        stats = torch.stack([self.split_stats(model, train, loops), self.split_stats(model, held, loops)])
        (tl, tc), (hl, hc) = stats.tolist()
        return {
            "train/loss": tl / len(train),
            "train/accuracy": tc / len(train),
            "heldout/loss": hl / len(held),
            "heldout/accuracy": hc / len(held),
            "train/correct": int(tc),
            "heldout/correct": int(hc),
        }

    def log_metrics(self, model, device):
        m = self.table_metrics(model, device)
        return {k: m[k] for k in ("train/loss", "train/accuracy", "heldout/loss", "heldout/accuracy")}

    # --- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, run_dir: Path, model, device, *, tag=None, step=None, loops=None, seq_len=None, **_) -> dict:
        if seq_len not in (None, 4):
            raise EvalError(f"--seq-len {seq_len}: modular_arithmetic has a fixed length of 4 tokens")
        cfg, o = self.cfg, self.opts
        loops = loops or cfg.eval.loops or cfg.model.loops
        m = self.table_metrics(model, device, loops)
        ev = {
            "task": "modular_arithmetic",
            "p": o.p,
            "op": o.op,
            "train_fraction": o.train_fraction,
            "split_seed": o.split_seed,
            "loops": loops,
            "step": step,
            "chance": 1 / o.p,
            **{
                s: {"loss": m[f"{s}/loss"], "accuracy": m[f"{s}/accuracy"], "correct": m[f"{s}/correct"], "n": len(eqs)}
                for s, eqs in (("train", self.train_eqs), ("heldout", self.heldout_eqs))
            },
        }
        suffix = f"_{tag}" if tag else ""
        write_json(run_dir / f"eval{suffix}.json", ev)
        records = read_metrics(run_dir / "metrics.jsonl")
        if records:
            plot_grokking(
                records,
                run_dir / f"grokking{suffix}.png",
                chance=1 / o.p,
                title=f"{run_dir.name}: a {o.op} b mod {o.p}, train fraction {o.train_fraction}",
            )
        return ev

    def headline(self, ev):
        return "held-out accuracy", ev["heldout"]["accuracy"], False

    def summary(self, ev):
        t, h = ev["train"], ev["heldout"]
        return (
            f"a {ev['op']} b mod {ev['p']}: train accuracy {t['accuracy']:.4f} ({t['correct']}/{t['n']}), "
            f"held-out accuracy {h['accuracy']:.4f} ({h['correct']}/{h['n']}), chance {ev['chance']:.4f}"
        )


def read_metrics(path: Path) -> list[dict]:
    """The metrics.jsonl records that hold the table metrics (none if the file is missing)."""
    if not Path(path).is_file():
        return []
    recs = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
    return [r for r in recs if "train/accuracy" in r and "heldout/accuracy" in r]


def plot_grokking(records: list[dict], path: Path, chance: float | None = None, title: str | None = None) -> Path:
    """Train and held-out accuracy (left) and loss (right) vs step, log x axis."""
    from iclab.plotting import plt

    steps = [r["step"] for r in records]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for split, color in (("train", "tab:blue"), ("heldout", "tab:red")):
        label = "train" if split == "train" else "held-out"
        ax.plot(steps, [r[f"{split}/accuracy"] for r in records], color=color, lw=2, label=label)
        bx.plot(steps, [r[f"{split}/loss"] for r in records], color=color, lw=2, label=label)
    if chance is not None:
        ax.axhline(chance, color="gray", ls=":", lw=1, label="chance")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accuracy")
    bx.set_ylabel("loss (nats)")
    bx.set_yscale("log")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xlabel("training step")
        a.legend(fontsize=8)
    fig.suptitle(title or "grokking", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
