"""Probe targets for in-context linear regression: what an algorithm run on the prompt so far would hold.

For a prompt (x_1, y_1, ..., x_n, y_n) and a prefix of i examples (those before the query x_{i+1};
i = 0 .. n-1, indexed by the query's 0-based position), every target below depends on the prefix only
through the sufficient statistics

    S_i = sum_{j<=i} x_j x_j^T = X^T X  (d, d)        b_i = sum_{j<=i} x_j y_j = X^T y  (d,)

which are exclusive cumulative sums over the prompt: one batched op for every prompt and prefix at once
(tensors (B, n, d, d) and (B, n, d), all in float64). The targets, each (B, n, d):

    true_w         the task's w (the same at every prefix)
    least_squares  the min-norm least-squares solution X^+ y = S^+ b   (pinv; 0 for the empty prefix)
    ridge          argmin (1/2)||X w - y||^2 + (lam/2)||w||^2 = (S + lam I)^{-1} b
    gd_k           k steps of gradient descent on L(w) = (1/2i)||X w - y||^2 from w_0 = 0:
                   w_{t+1} = w_t - eta (S w_t - b) / i, with eta = 1 / lambda_max(S / i) per prefix
                   (the largest stable-and-fast step: w_1 = b / lambda_max(S)), or a fixed eta
    newton_k       k iterations of Iterative Newton for the pseudo-inverse (Fu et al. 2023):
                   M_0 = alpha S^T, alpha = c / ||S S^T||_2 (= c / lambda_max(S)^2), M_{t+1} = 2 M_t - M_t S M_t,
                   w_k = M_k b. In an eigendirection of S with eigenvalue l, e_t = 1 - l m_t obeys e_{t+1} = e_t^2,
                   e_0 = 1 - c (l / lambda_max)^2: it converges iff |e_0| < 1, then quadratically, so newton_k ->
                   least_squares. Default c = 1. Fu et al.'s c = 2 puts the top direction on the boundary, e_0 = -1:
                   it never converges in exact arithmetic and diverges in floating point (NaN after ~60
                   iterations in float64); c = 2 is available (newton_c=2) for the first few iterates.
and `<target>_pred` = <w, x_{i+1}> (B, n), the method's prediction for the query. The empty prefix (i = 0)
has S = 0: every method's w is 0 there (true_w excepted).
"""

from __future__ import annotations

import re

import torch

from iclab.errors import IclabError

METHODS = ("true_w", "least_squares", "ridge")
ITERATIVE = ("gd", "newton")
VALID_HELP = "true_w, least_squares, ridge, gd_<k>, newton_<k> (k >= 1), each also as <target>_pred"
_NAME = re.compile(r"^(true_w|least_squares|ridge|gd_(\d+)|newton_(\d+))(_pred)?$")


class TargetError(IclabError, ValueError):
    pass


def parse_target(name: str) -> tuple[str, int, bool]:
    """'gd_3_pred' -> ('gd', 3, True); 'least_squares' -> ('least_squares', 0, False)."""
    m = _NAME.match(name)
    k = int(m.group(2) or m.group(3) or 0) if m else 0
    if m is None or (m.group(2) or m.group(3)) and k < 1:
        raise TargetError(f"unknown probe target {name!r}; valid: {VALID_HELP}")
    return (m.group(1).split("_")[0] if k else m.group(1)), k, bool(m.group(4))


def prefix_stats(xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n, d), (B, n) -> S (B, n, d, d), b (B, n, d): the sums over the examples before each query."""
    xs, ys = xs.double(), ys.double()
    outer = torch.cumsum(xs.unsqueeze(-1) * xs.unsqueeze(-2), dim=1)
    xy = torch.cumsum(xs * ys.unsqueeze(-1), dim=1)
    S = torch.cat([torch.zeros_like(outer[:, :1]), outer[:, :-1]], dim=1)
    b = torch.cat([torch.zeros_like(xy[:, :1]), xy[:, :-1]], dim=1)
    return S, b


def _mv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def least_squares(S: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _mv(torch.linalg.pinv(S, hermitian=True), b)


def ridge(S: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    return torch.linalg.solve(S + lam * eye, b.unsqueeze(-1)).squeeze(-1)


def _lambda_max(S: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigvalsh(S)[..., -1].clamp_min(0)


def gd_iterates(S: torch.Tensor, b: torch.Tensor, K: int, eta: float | None = None) -> list[torch.Tensor]:
    """[w_1, ..., w_K] of gradient descent on (1/2i)||Xw - y||^2 from 0 (see the module docstring)."""
    i = torch.arange(S.shape[1], dtype=S.dtype, device=S.device).view(1, -1, 1)
    if eta is None:
        lmax = _lambda_max(S).unsqueeze(-1)  # eta / i = 1 / lambda_max(S)
        step = torch.where(lmax > 0, 1 / lmax.clamp_min(1e-300), torch.zeros_like(lmax))
    else:
        step = torch.where(i > 0, eta / i.clamp_min(1), torch.zeros_like(i))
    w, out = torch.zeros_like(b), []
    for _ in range(K):
        w = w - step * (_mv(S, w) - b)
        out.append(w)
    return out


def newton_iterates(S: torch.Tensor, b: torch.Tensor, K: int, c: float = 1.0) -> list[torch.Tensor]:
    """[w_1, ..., w_K] of Iterative Newton with alpha = c / lambda_max(S)^2 (see the module docstring)."""
    lmax = _lambda_max(S)[..., None, None]
    alpha = torch.where(lmax > 0, c / lmax.clamp_min(1e-300) ** 2, torch.zeros_like(lmax))
    M, out = alpha * S.transpose(-1, -2), []
    for _ in range(K):
        M = 2 * M - M @ S @ M
        out.append(_mv(M, b))
    return out


def compute_targets(
    names: list[str],
    xs: torch.Tensor,
    ys: torch.Tensor,
    w: torch.Tensor | None = None,
    ridge_lam: float = 0.1,
    eta: float | None = None,
    newton_c: float = 1.0,
) -> dict[str, torch.Tensor]:
    """{name: (B, n, d) weights or (B, n) query predictions} for every prompt and prefix (float64)."""
    parsed = {name: parse_target(name) for name in names}
    S, b = prefix_stats(xs, ys)
    ws: dict[tuple[str, int], torch.Tensor] = {}
    for method, k, _ in parsed.values():
        if (method, k) in ws:
            continue
        if method == "true_w":
            if w is None:
                raise TargetError("target true_w needs the task's weights w")
            ws[method, 0] = w.double().unsqueeze(1).expand(-1, xs.shape[1], -1)
        elif method == "least_squares":
            ws[method, 0] = least_squares(S, b)
        elif method == "ridge":
            ws[method, 0] = ridge(S, b, ridge_lam)
        else:
            K = max(kk for m, kk, _ in parsed.values() if m == method)
            its = gd_iterates(S, b, K, eta) if method == "gd" else newton_iterates(S, b, K, newton_c)
            ws.update({(method, kk + 1): it for kk, it in enumerate(its)})
    xq = xs.double()
    return {name: (ws[m, k] * xq).sum(-1) if pred else ws[m, k] for name, (m, k, pred) in parsed.items()}
