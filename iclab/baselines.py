"""Classical in-context learners, computed batched on the same prompts as the model.

Every baseline maps xs (B, n, d), ys (B, n) to predictions (B, n), where the prediction at position i
uses only the points before i (position 0 predicts 0), mirroring what a causal model sees.
"""

from __future__ import annotations

from typing import Callable

import torch

from iclab.registry import Registry

Baseline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BASELINES: Registry[Baseline] = Registry("baseline")


def prefix_masked(xs: torch.Tensor, ys: torch.Tensor):
    """All prefixes at once: X[b, i] is xs[b] with rows >= i zeroed, Y likewise. (B, n, n, d), (B, n, n)."""
    n = xs.shape[1]
    keep = torch.ones(n, n, device=xs.device, dtype=xs.dtype).tril(-1)  # keep[i, j] = j < i
    return xs.unsqueeze(1) * keep[None, :, :, None], ys.unsqueeze(1) * keep[None]


@BASELINES.register("least_squares", help="ordinary least squares, min-norm when fewer points than dims")
def least_squares(xs, ys, chunk: int = 256):
    # Zero rows change neither the min-norm least-squares solution nor the fit, so every prefix is
    # solved in one batched pseudo-inverse of the zero-padded prompt.
    preds = []
    for s in range(0, xs.shape[0], chunk):
        x, y = xs[s : s + chunk], ys[s : s + chunk]
        X, Y = prefix_masked(x, y)
        w = torch.linalg.pinv(X) @ Y.unsqueeze(-1)  # (b, n, d, 1)
        preds.append((x.unsqueeze(-2) @ w).squeeze(-1).squeeze(-1))
    return torch.cat(preds)


@BASELINES.register("averaging", help="w = mean of y_i x_i over the prefix (one gradient step from 0)")
def averaging(xs, ys):
    n = xs.shape[1]
    csum = torch.cumsum(xs * ys.unsqueeze(-1), dim=1)
    prev = torch.cat([torch.zeros_like(csum[:, :1]), csum[:, :-1]], dim=1)
    count = torch.arange(n, device=xs.device, dtype=xs.dtype).clamp(min=1)
    return (xs * prev).sum(-1) / count


def knn(xs, ys, k: int = 3):
    """Mean y of the k nearest previous points (fewer while fewer exist)."""
    n = xs.shape[1]
    dist = torch.cdist(xs, xs)  # (B, n, n)
    future = torch.ones(n, n, dtype=torch.bool, device=xs.device).triu()  # j >= i is not visible
    dist = dist.masked_fill(future, float("inf"))
    kk = min(k, max(n - 1, 1))
    d, idx = dist.topk(kk, dim=-1, largest=False)
    valid = torch.isfinite(d).to(xs.dtype)
    yn = torch.gather(ys.unsqueeze(1).expand(-1, n, -1), 2, idx)
    return (yn * valid).sum(-1) / valid.sum(-1).clamp(min=1)


BASELINES.register("knn", help="3-nearest-neighbours, uniform weights")(knn)
