"""N-gram baselines for a language model: fit on the train split's ids, score the val split's.

Losses are in nats per token (mean of -ln p over every val token) and bits = nats / ln 2, so they
compare directly with a model's cross-entropy on the same tokens.

Unigram, add-one (Laplace) smoothing over the vocabulary V:

    p(w) = (c(w) + 1) / (N + |V|)

Interpolated Kneser-Ney of order n (Chen & Goodman 1998, one discount per level). With h a context
of m - 1 tokens, h' = h without its first token, and level 0 the uniform distribution:

    p_0(w)   = 1 / |V|
    p_m(w|h) = max(c_m(h w) - D_m, 0) / S_m(h)  +  D_m * T_m(h) / S_m(h) * p_{m-1}(w|h')   if S_m(h) > 0
    p_m(w|h) = p_{m-1}(w|h')                                                            if S_m(h) = 0

    S_m(h) = sum_w c_m(h w)              T_m(h) = |{w : c_m(h w) > 0}|
    D_m    = n1 / (n1 + 2 n2)            n_k = number of m-grams with c_m = k (0.5 if n1 = 0)

where c_m is the raw train count at the top level (the order being scored) and, at every level below,
the continuation count c_m(h w) = |{v : c(v h w) > 0}| (distinct tokens seen before the m-gram).
D_m is estimated from the count-of-counts of the counts that level actually uses (raw at the top,
continuation below), as Chen & Goodman and KenLM do. With 0 < D_m <= 1 each level sums to one over
the vocabulary and, through the uniform level 0, no token gets probability zero. (n1 = 0, possible
only on tiny data, would make D_m = 0 and give unseen tokens probability zero, hence the fallback.)

The val split is scored as one continuous stream: the context of position i is the previous
min(i, n - 1) tokens, and a position with a shorter context k < n - 1 (the first n - 1 tokens) is
scored by the order-(k + 1) model, i.e. with raw counts at level k + 1. Every val token is thus scored
exactly once by every order.

Implementation: an m-gram (context then token) is one int64 key, sum_j t_j * |V|^(m-1-j), so the
context of a key is key // |V| and its suffix (h' w) is key % |V|^(m-1); this needs |V|^n < 2^63.
Counts come from `np.unique(..., return_counts=True)` over the train keys, per-context totals from
`np.add.reduceat` over the sorted keys, and every lookup is a `np.searchsorted`; no Python loop runs
over tokens, so millions of train tokens fit in a second or so per order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

_NAMES = {1: "unigram", 2: "bigram_kn", 3: "trigram_kn"}
_FALLBACK_DISCOUNT = 0.5


def _name(order: int) -> str:
    return _NAMES.get(order, f"{order}gram_kn")


def _ids(arr: Any, what: str, vocab_size: int) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"n-gram {what} ids must be a non-empty 1-D array, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"n-gram {what} ids must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    bad = np.flatnonzero((a < 0) | (a >= vocab_size))
    if bad.size:
        raise ValueError(
            f"n-gram {what} id {int(a[bad[0]])} at position {int(bad[0])} is outside the vocabulary [0, {vocab_size})"
        )
    return a


def _check_order(order: int, vocab_size: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"n-gram order must be a positive integer, got {order!r}")
    if vocab_size**order >= 2**63:
        raise ValueError(
            f"n-gram order {order} with vocab_size {vocab_size}: keys of {vocab_size}^{order} "
            f"values do not fit in int64; use a lower order or a smaller vocabulary"
        )


def _check_vocab(vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"n-gram vocab_size must be a positive integer, got {vocab_size!r}")


@dataclass(frozen=True)
class _Level:
    """One KN level: sorted (context, token) keys with their counts, and per-context statistics."""

    keys: np.ndarray  # sorted int64 m-gram keys
    counts: np.ndarray  # c_m of each key (raw or continuation)
    ctx: np.ndarray  # sorted distinct contexts (key // V)
    ctx_total: np.ndarray  # S_m(h)
    ctx_types: np.ndarray  # T_m(h)
    discount: float  # D_m

    @classmethod
    def build(cls, keys: np.ndarray, counts: np.ndarray, vocab_size: int) -> _Level:
        ctx, start, types = np.unique(keys // vocab_size, return_index=True, return_counts=True)
        total = np.add.reduceat(counts, start) if counts.size else np.zeros(0, dtype=np.int64)
        n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
        discount = n1 / (n1 + 2 * n2) if n1 > 0 else _FALLBACK_DISCOUNT
        return cls(keys, counts, ctx, total, types, discount)

    def interpolate(self, q: np.ndarray, lower: np.ndarray, vocab_size: int) -> np.ndarray:
        """p_m(w|h) for the m-gram keys q, given p_{m-1}(w|h') in `lower`."""
        if not len(self.ctx):  # no train m-gram at all: every context is unseen
            return lower
        c = _lookup(self.keys, self.counts, q)
        ctx = q // vocab_size
        j = np.minimum(np.searchsorted(self.ctx, ctx), len(self.ctx) - 1)
        seen = self.ctx[j] == ctx
        total = np.where(seen, self.ctx_total[j], 1)
        types = np.where(seen, self.ctx_types[j], 0)
        p = (np.maximum(c - self.discount, 0.0) + self.discount * types * lower) / total
        return np.where(seen, p, lower)


def _lookup(keys: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    if not len(keys):
        return np.zeros(len(q), dtype=np.int64)
    k = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return np.where(keys[k] == q, counts[k], 0)


class _Counts:
    """Train m-gram tables, built on demand and shared between orders."""

    def __init__(self, train: np.ndarray, vocab_size: int):
        self.train, self.V = train, vocab_size
        self._unique: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._levels: dict[tuple[int, bool], _Level] = {}

    def unique(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct train m-gram keys and their raw counts."""
        if m not in self._unique:
            n = len(self.train) - m + 1
            if n <= 0:
                self._unique[m] = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
            else:
                keys = self.train[:n].copy()
                for j in range(1, m):
                    keys *= self.V
                    keys += self.train[j : j + n]
                self._unique[m] = np.unique(keys, return_counts=True)
        return self._unique[m]

    def level(self, m: int, raw: bool) -> _Level:
        if (m, raw) not in self._levels:
            if raw:
                keys, counts = self.unique(m)
            else:  # continuation: distinct left extensions v of each m-gram, from the (m+1)-grams
                keys, counts = np.unique(self.unique(m + 1)[0] % self.V**m, return_counts=True)
            self._levels[m, raw] = _Level.build(keys, counts.astype(np.int64), self.V)
        return self._levels[m, raw]


def _kn_logprobs(counts: _Counts, val: np.ndarray, order: int) -> np.ndarray:
    V, L = counts.V, len(val)
    p = np.full(L, 1.0 / V)
    q = val.copy()  # q[i]: key of the m-gram ending at i (valid for i >= m - 1)
    for m in range(1, min(order, L) + 1):  # a val shorter than the order has no longer contexts
        if m > 1:
            q[m - 1 :] += val[: L - m + 1] * V ** (m - 1)
        if m == order:  # the top level: raw counts for every full context
            p[m - 1 :] = counts.level(m, True).interpolate(q[m - 1 :], p[m - 1 :], V)
            continue
        # position m - 1 has only m - 1 tokens of context: level m is its top; later ones go higher
        p[m - 1 : m] = counts.level(m, True).interpolate(q[m - 1 : m], p[m - 1 : m], V)
        if m < L:
            p[m:] = counts.level(m, False).interpolate(q[m:], p[m:], V)
    return np.log(p)


def kneser_ney_logprobs(train: np.ndarray, val: np.ndarray, vocab_size: int, order: int) -> np.ndarray:
    """Natural-log probability of each val token under interpolated Kneser-Ney of `order` fit on train."""
    _check_vocab(vocab_size)
    _check_order(order, vocab_size)
    tr, va = _ids(train, "train", vocab_size), _ids(val, "val", vocab_size)
    return _kn_logprobs(_Counts(tr, vocab_size), va, order)


def unigram_logprobs(train: np.ndarray, val: np.ndarray, vocab_size: int) -> np.ndarray:
    """Natural-log probability of each val token under the add-one unigram fit on train."""
    _check_vocab(vocab_size)
    tr, va = _ids(train, "train", vocab_size), _ids(val, "val", vocab_size)
    c = np.bincount(tr, minlength=vocab_size)
    return np.log((c[va] + 1.0) / (len(tr) + vocab_size))


def ngram_baselines(
    train: np.ndarray, val: np.ndarray, vocab_size: int, orders: Iterable[int] = (1, 2, 3, 5)
) -> dict[str, dict[str, Any]]:
    """Val loss of each baseline: order 1 is the add-one unigram, order n >= 2 interpolated KN.

    Returns {name: {"nats", "bits", "order", "smoothing"}} with names "unigram", "bigram_kn",
    "trigram_kn", "<n>gram_kn"."""
    _check_vocab(vocab_size)
    orders = list(orders)
    for n in orders:
        _check_order(n, vocab_size)
    tr, va = _ids(train, "train", vocab_size), _ids(val, "val", vocab_size)
    counts = _Counts(tr, vocab_size)
    out: dict[str, dict[str, Any]] = {}
    for n in orders:
        if n == 1:
            lp, smoothing = unigram_logprobs(tr, va, vocab_size), "add-one"
        else:
            lp, smoothing = _kn_logprobs(counts, va, n), "interpolated Kneser-Ney"
        nats = float(-lp.mean())
        out[_name(n)] = {"nats": nats, "bits": nats / math.log(2), "order": n, "smoothing": smoothing}
    return out


__all__ = ["ngram_baselines", "kneser_ney_logprobs", "unigram_logprobs"]
