"""Token-sequence workloads: next-token prediction with a loss mask.

A sequence workload samples token sequences and trains the language-model head (`GPTLanguageModel`:
token embedding, the shared trunk, an LM head tied to the embedding). A batch is

    inputs   (B, L) int64   token ids
    targets  (B, L) int64   the token that should follow each input position, IGNORE where the loss
                            does not count (e.g. the unsorted half of a sorting sequence)

and the loss is the mean cross-entropy over the counted positions, averaged over the last T loop
iterations (with token dropping, iteration t predicts the last L_t positions only). Metrics of a
batch: loss (nats per counted token), token accuracy (argmax under teacher forcing) and exact match
(every counted token of a row right; with teacher forcing this equals greedy decoding's exact match,
since greedy decoding follows the same path until its first error).

Subclasses define `Options`, `vocab_size`, `default_seq_len` and `sample`, and their evaluation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from iclab.models import make_model
from iclab.models.flops import lm_train_step_flops
from iclab.workloads.base import Workload, shard_batch, step_generator

IGNORE = -100  # targets that do not count (F.cross_entropy's ignore_index)


class SequenceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def sequence_loss(
    logits: list[torch.Tensor], targets: torch.Tensor, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over counted targets, averaged over iterations; logits[i] is (B, L_i, V) for the
    last L_i positions. `counts` (L,), when given, replaces this batch's number of counted targets per
    position as the divisor (data parallel: the global batch's counts / world, see `SequenceWorkload.shard`)."""
    total = 0.0
    for lg in logits:
        t = targets[:, targets.shape[1] - lg.shape[1] :]
        if counts is None:
            total = total + F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(), t.reshape(-1), ignore_index=IGNORE)
        else:
            ce = F.cross_entropy(
                lg.reshape(-1, lg.shape[-1]).float(), t.reshape(-1), ignore_index=IGNORE, reduction="sum"
            )
            total = total + ce / counts[counts.shape[0] - lg.shape[1] :].sum().clamp_min(1e-12)
    return total / len(logits)


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, L) cross-entropy of every position (IGNORE positions get the loss of token 0: mask them)."""
    return F.cross_entropy(logits.transpose(1, 2).float(), targets.clamp_min(0), reduction="none")


@torch.no_grad()
def batch_metrics(
    logits: torch.Tensor, targets: torch.Tensor, ce: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-row sums on the device: loss_sum, correct, counted (tokens) and exact (0/1) for (B, L, V) logits;
    `ce` (B, L), the per-token cross-entropy, when the caller already has it."""
    counted = targets != IGNORE
    if ce is None:
        ce = token_cross_entropy(logits, targets)
    ce = ce * counted
    right = (logits.argmax(-1) == targets) & counted
    return {
        "loss_sum": ce.sum(1),
        "correct": right.sum(1),
        "counted": counted.sum(1),
        "exact": (right.sum(1) == counted.sum(1)).long(),
    }


def summarize_metrics(parts: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Totals of `batch_metrics` -> loss (nats/token), bits, token accuracy, exact match (with a 95% CI)."""
    cat = {k: torch.cat([p[k] for p in parts]).double() for k in parts[0]}
    n_tok = cat["counted"].sum().item()
    n_seq = cat["exact"].numel()
    em = cat["exact"].mean().item()
    loss = cat["loss_sum"].sum().item() / max(n_tok, 1)
    return {
        "loss": loss,
        "bits": loss / math.log(2),
        "token_accuracy": cat["correct"].sum().item() / max(n_tok, 1),
        "exact_match": em,
        "exact_match_ci95": 1.96 * math.sqrt(em * (1 - em) / n_seq) if n_seq > 1 else 0.0,
        "n_sequences": n_seq,
        "n_tokens": int(n_tok),
    }


class SequenceWorkload(Workload):
    family = "sequence"
    Options: type[BaseModel] = SequenceOptions
    default_seq_len: int = 64
    vocab_size: int

    def __init__(self, cfg, run_dir=None):
        super().__init__(cfg)
        self.opts = self.Options(**cfg.task.options)
        self.run_dir = run_dir

    # --- config checks (called from the config schema) ---------------------------------------------------
    @classmethod
    def check(cls, opts, n_dims: int) -> None:
        """Options that cannot work together (raise ValueError)."""

    @classmethod
    def tokens_needed(cls, cfg, seq_len: int) -> int:
        """Positions a sequence of `seq_len` occupies (the model's input length)."""
        return seq_len

    @classmethod
    def check_config(cls, cfg) -> None:
        t, m, c = cfg.task, cfg.model, cfg.curriculum
        if c.dims is not None or c.points is not None:
            raise ValueError(
                f"curriculum.dims and curriculum.points are for regression tasks; {t.name} uses curriculum.seq_len"
            )
        L = t.seq_len or cls.default_seq_len
        if c.seq_len is not None and c.seq_len.end > L:
            raise ValueError(f"curriculum.seq_len.end={c.seq_len.end} exceeds task.seq_len={L}")
        if cls.tokens_needed(cfg, L) > m.n_positions:
            raise ValueError(
                f"task.seq_len={L} needs {cls.tokens_needed(cfg, L)} positions > model.n_positions={m.n_positions}"
            )

    # --- training ------------------------------------------------------------------------------------
    @property
    def seq_len(self) -> int:
        return self.cfg.task.seq_len or self.default_seq_len

    def build_model(self):
        return make_model(self.cfg.model, "lm", vocab_size=self.vocab_size)

    def sample(self, batch: int, seq_len: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch, tokens), drawn from `gen`."""
        raise NotImplementedError

    def batch(self, step, cur, device):
        gen = step_generator(self.cfg.seed, step, device)
        return self.sample(self.cfg.training.batch_size, cur.get("seq_len") or self.seq_len, gen, device)

    def loss(self, forward, batch, cur):
        inputs, targets, *counts = batch  # counts: from `shard` (data parallel)
        logits = forward(inputs, loops=cur["loops"], window=self.cfg.model.window, head_from=self.loss_from(inputs))
        return sequence_loss(logits[-1:] if self.cfg.model.loop_loss == "last" else logits, targets, *counts)

    def loss_from(self, inputs: torch.Tensor) -> int:
        """The first position whose target can count in the loss (a shape fact, no data read): the LM head
        runs from there on only. 0: every position (language modelling); sorting: the sorted half."""
        return 0

    def shard(self, batch, rank, world):
        """Data parallel: this rank's rows, plus the global batch's counted targets per position / world, so
        that each rank divides its summed cross-entropy by the global count and the mean over ranks (what
        DDP averages) is the global batch's mean even when ranks hold unequal numbers of counted tokens (or
        rows: modular arithmetic's full batch is the whole training set, whatever its size)."""
        inputs, targets = batch[:2]
        counts = (targets != IGNORE).sum(0).to(torch.float32) / world
        return (*shard_batch((inputs, targets), rank, world, even=False), counts)  # uneven rows are fine: counts weight

    def curriculum_keys(self):
        return ("seq_len", "loops")

    def identity(self):
        return {"vocab_size": self.vocab_size}

    def tokens_per_step(self, batch_size):
        return batch_size * self.tokens_needed(self.cfg, self.seq_len)

    def step_flops(self):
        return lm_train_step_flops(
            self.cfg.model,
            vocab_size=self.vocab_size,
            batch=self.cfg.training.batch_size,
            seq_len=self.tokens_needed(self.cfg, self.seq_len),
            head_from=self._loss_from_len(self.tokens_needed(self.cfg, self.seq_len)),
        )

    def _loss_from_len(self, n_tokens: int) -> int:
        return self.loss_from(torch.empty(1, n_tokens, device="meta"))

    # --- evaluation helpers ------------------------------------------------------------------------------
    def fixed_batches(self, n: int, seed: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """n (inputs, targets) sequences that analyses (layer surgery, the logit lens) measure every variant
        on, in batches of eval.batch_size: here n fresh sequences at the trained length from a generator
        seeded by `seed`; a workload with its own evaluation data overrides this."""
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        bs = self.cfg.eval.batch_size
        return [self.sample(min(bs, n - i), self.seq_len, gen, device) for i in range(0, n, bs)]

    @torch.no_grad()
    def metrics_of(self, model, batches, loops: int | None = None) -> dict[str, float]:
        """Loss, token accuracy and exact match of `model` (final iteration) over (inputs, targets) batches."""
        was = model.training
        model.eval()
        parts = [batch_metrics(model.logits(x, loops=loops), y) for x, y in batches]
        model.train(was)
        return summarize_metrics(parts)
