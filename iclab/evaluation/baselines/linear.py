"""Linear in-context learners: least squares, ridge, averaging, k-nearest neighbours.

All prefixes of all prompts are solved together. Least squares and ridge work in float64 (the prompts are
usually float32) and return the input dtype:

- least squares, i < d points: the min-norm interpolant predicts k_i^T K_i^-1 y_<i with K = X X^T; the
  leading i x i block of K has the leading block of K's Cholesky factor L as its own, so every such prefix
  is read off one Cholesky per prompt: pred_i = sum_{j<i} L[i, j] z_j with z = L^-1 y.
- least squares, i >= d: w_d = G_d^-1 c_d from one Cholesky of the Gram matrix G_d = X_d^T X_d, then
  recursive least squares (Sherman-Morrison rank-one updates of G^-1) for i = d+1 .. n-1.
- ridge: the same recursion from G_0^-1 = I / alpha.
- a prompt whose factorizations look singular or ill-conditioned (a pivot ratio below
  max(eps(dtype) * max(n, d), 1e-5)) is solved by a float64 pseudo-inverse of every prefix instead, with
  the rtol that torch.linalg.pinv would use in the input dtype (so duplicated points or points in a subspace
  give the min-norm solution).
Coordinates that are zero in every prompt of the batch (dims cut by the curriculum) are dropped first: they
change neither the min-norm solution nor any prediction.
"""

from __future__ import annotations

import torch
from pydantic import Field

from iclab.evaluation.baselines.base import NoOptions, register

_F64 = torch.float64


def prefix_masked(xs: torch.Tensor, ys: torch.Tensor):
    """All prefixes at once: X[b, i] is xs[b] with rows >= i zeroed, Y likewise. (B, n, n, d), (B, n, n)."""
    n = xs.shape[1]
    keep = torch.ones(n, n, device=xs.device, dtype=xs.dtype).tril(-1)  # keep[i, j] = j < i
    return xs.unsqueeze(1) * keep[None, :, :, None], ys.unsqueeze(1) * keep[None]


def _drop_zero_columns(xs: torch.Tensor) -> torch.Tensor:
    keep = xs.ne(0).any(dim=1).any(dim=0)
    return xs if bool(keep.all()) else xs[..., keep]


def least_squares_pinv(xs: torch.Tensor, ys: torch.Tensor, rtol: float | None = None, chunk: int = 256) -> torch.Tensor:
    """Reference route: one batched pseudo-inverse of every zero-padded prefix (zero rows change neither
    the min-norm solution nor the fit). Slow (an SVD per prefix) but exact for any rank."""
    preds = []
    for s in range(0, xs.shape[0], chunk):
        x, y = xs[s : s + chunk], ys[s : s + chunk]
        X, Y = prefix_masked(x, y)
        w = torch.linalg.pinv(X, rtol=rtol) @ Y.unsqueeze(-1)  # (b, n, d, 1)
        preds.append((x.unsqueeze(-2) @ w).squeeze(-1).squeeze(-1))
    return torch.cat(preds) if preds else ys.new_zeros(ys.shape)


def _pivot_ratio(L: torch.Tensor) -> torch.Tensor:
    """min / max of the Cholesky diagonal (the |R_jj| of the data's QR): a cheap conditioning estimate."""
    diag = L.diagonal(dim1=-2, dim2=-1).abs()
    return diag.min(-1).values / diag.max(-1).values.clamp_min(torch.finfo(L.dtype).tiny)


def _rank_one_steps(P, w, x, y, start: int, pred: torch.Tensor) -> None:
    """Recursive least squares: for i = start .. n-1 predict x_i . w, then add point i to (P = G^-1, w)."""
    n = x.shape[1]
    for i in range(start, n):
        xi = x[:, i]
        pred[:, i] = (xi * w).sum(-1)
        if i == n - 1:
            break
        k = (P @ xi.unsqueeze(-1)).squeeze(-1)  # (B, d)
        s = 1.0 + (xi * k).sum(-1, keepdim=True)
        w = w + k * ((y[:, i : i + 1] - pred[:, i : i + 1]) / s)
        P = P - k.unsqueeze(-1) * (k / s).unsqueeze(-2)


@register("least_squares", help="ordinary least squares, min-norm when fewer points than dims")
def least_squares(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    in_dtype = xs.dtype
    B, n, _ = xs.shape
    x = _drop_zero_columns(xs).to(_F64)
    y = ys.to(_F64)
    d = x.shape[-1]
    pred = torch.zeros(B, n, dtype=_F64, device=xs.device)
    if d == 0 or B == 0:
        return pred.to(in_dtype)
    rtol = torch.finfo(in_dtype).eps * max(n, d)
    tau = max(rtol, 1e-5)
    ok = torch.ones(B, dtype=torch.bool, device=xs.device)

    m = min(d, n)  # positions 1 .. m-1: fewer points than dims
    if m > 1:
        xm = x[:, :m]
        L, info = torch.linalg.cholesky_ex(xm @ xm.mT)
        ok &= (info == 0) & (_pivot_ratio(L) >= tau)
        L = torch.where(ok[:, None, None], L, torch.eye(m, dtype=_F64, device=xs.device))
        z = torch.linalg.solve_triangular(L, y[:, :m, None], upper=False)
        pred[:, :m] = (L.tril(-1) @ z).squeeze(-1)

    if d < n:  # positions d .. n-1: at least as many points as dims
        xd = x[:, :d]
        C, info = torch.linalg.cholesky_ex(xd.mT @ xd)
        ok &= (info == 0) & (_pivot_ratio(C) >= tau)
        C = torch.where(ok[:, None, None], C, torch.eye(d, dtype=_F64, device=xs.device))
        P = torch.cholesky_inverse(C)
        w = (P @ (xd.mT @ y[:, :d, None])).squeeze(-1)
        _rank_one_steps(P, w, x, y, d, pred)

    bad = (~ok).nonzero().flatten()
    if bad.numel():
        pred[bad] = least_squares_pinv(x[bad], y[bad], rtol=rtol)
    return pred.to(in_dtype)


class RidgeOptions(NoOptions):
    alpha: float = Field(
        1.0, gt=0, description="penalty on |w|^2 added to the (unnormalized) squared error, as in sklearn Ridge"
    )


@register("ridge", RidgeOptions, help="ridge regression: argmin |y - Xw|^2 + alpha |w|^2 on the prefix")
def ridge(xs: torch.Tensor, ys: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    B, n, d = xs.shape
    x, y = xs.to(_F64), ys.to(_F64)
    pred = torch.zeros(B, n, dtype=_F64, device=xs.device)
    P = torch.eye(d, dtype=_F64, device=xs.device).expand(B, d, d) / alpha
    w = torch.zeros(B, d, dtype=_F64, device=xs.device)
    _rank_one_steps(P, w, x, y, 0, pred)
    return pred.to(xs.dtype)


@register("averaging", help="w = mean of y_i x_i over the prefix (one gradient step from 0)")
def averaging(xs, ys):
    n = xs.shape[1]
    csum = torch.cumsum(xs * ys.unsqueeze(-1), dim=1)
    prev = torch.cat([torch.zeros_like(csum[:, :1]), csum[:, :-1]], dim=1)
    count = torch.arange(n, device=xs.device, dtype=xs.dtype).clamp(min=1)
    return (xs * prev).sum(-1) / count


class KnnOptions(NoOptions):
    k: int = Field(3, gt=0, description="neighbours averaged (fewer while fewer points exist)")


@register("knn", KnnOptions, help="k-nearest neighbours (k=3), uniform weights")
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
