"""LASSO on every prefix of every prompt (Garg et al.'s sparse-regression baseline).

Each prefix (b, i) is the problem of scikit-learn's `Lasso(alpha, fit_intercept=False)`:
    min_w  1/(2i) |y_<i - X_<i w|^2 + alpha |w|_1.

`solver: lars` (default) solves all problems exactly and at once: the LARS-lasso homotopy (Efron et al. 2004)
from w = 0 at lambda = max|X^T y| / i down to lambda = alpha, batched over every (prompt, prefix) on the
prompts' device in float64. Each step moves every problem to its next kink of the path (a variable enters or
leaves the active set) and updates the inverse of the active Gram block by a rank-one border/deletion (with one
step of iterative refinement per step against drift), so a step is a handful of (P, d, d) tensor operations.
The result is checked against the Lasso optimality (KKT) conditions; a problem that fails (rounding took its
path astray: well under 1% of prefixes, at small alpha and about d points) is re-solved by scikit-learn's
LassoLars, so every returned solution is exact.

`solver: sklearn` fits `sklearn.linear_model.Lasso(alpha, fit_intercept=False, max_iter, tol)` per prompt and
prefix: Garg et al.'s literal computation (max_iter 100000, tol 1e-4). Its duality-gap stopping rule
(gap <= tol |y|^2) is loose for small alpha on short prefixes, so its predictions there can differ visibly from
the exact solution that `lars` returns.
Garg et al. report alpha in {1, 0.1, 0.01, 0.001, 0.0001}: list one entry `{name: lasso, options: {alpha: ...}}`
per alpha in eval.baselines.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from iclab.evaluation.baselines.base import PositionsOptions, positions_or_all, register

_F64 = torch.float64


class LassoOptions(PositionsOptions):
    alpha: float = Field(0.01, gt=0, description="l1 penalty (scikit-learn's alpha)")
    solver: Literal["lars", "sklearn"] = Field("lars", description="lars: exact, batched; sklearn: per-prefix Lasso")
    max_iter: int = Field(100_000, gt=0, description="solver=sklearn: coordinate-descent iterations (as Garg et al.)")
    tol: float = Field(1e-4, gt=0, description="solver=sklearn: scikit-learn's duality-gap tolerance")


def _bmv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def kkt_violation(G: torch.Tensor, c: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Largest violation of the Lasso optimality conditions of min 1/2 w'Gw - c'w + alpha|w|_1, relative to
    alpha: r = c - Gw must equal alpha*sign(w_j) where w_j != 0 and lie in [-alpha, alpha] elsewhere."""
    r = c - _bmv(G, w)
    on = w != 0
    active = torch.where(on, (r - alpha * torch.sign(w)).abs(), torch.zeros_like(r))
    inactive = torch.where(on, torch.zeros_like(r), (r.abs() - alpha).clamp_min(0))
    return torch.maximum(active, inactive).amax(-1) / alpha


def lasso_lars(
    G: torch.Tensor, c: torch.Tensor, alpha: float, max_active: torch.Tensor | None = None, max_steps: int | None = None
):
    """Exact Lasso solutions of many problems min 1/2 w'Gw - c'w + alpha |w|_1 by the LARS-lasso homotopy,
    batched. G (P, d, d) positive semi-definite, c (P, d); max_active (P,): the rank of G (the sample count of
    a Gram matrix of fewer points than dims): no variable enters a full active set (where, exactly, all
    inactive correlations vanish and only rounding could let one in). Returns (w (P, d), finished (P,) bool).

    Length: the LARS-lasso homotopy is one loop whose steps (direction, step to the next event, drop or add a
    variable) share every batched tensor; it reads as the algorithm does.
    """
    P, d = c.shape
    dev, dt = c.device, c.dtype
    max_steps = max_steps or 8 * d + 8
    w = torch.zeros_like(c)
    finished = torch.zeros(P, dtype=torch.bool, device=dev)
    idx = torch.arange(P, device=dev)  # the problems still on their path
    Ga, ca = G, c
    H = torch.zeros_like(G)  # inverse of the active block of G, zero outside it
    act = torch.zeros(P, d, dtype=torch.bool, device=dev)
    s = torch.zeros_like(c)  # signs of the active variables
    lam = torch.full((P,), float("inf"), dtype=dt, device=dev)
    running = torch.ones(P, dtype=torch.bool, device=dev)  # among idx: not yet finished
    ninf = torch.tensor(-float("inf"), dtype=dt, device=dev)
    fresh = torch.zeros(P, d, dtype=torch.bool, device=dev)  # dropped at the last step (see `room`)
    cap = torch.full((P,), d, device=dev) if max_active is None else max_active.clamp(max=d).to(dev)
    for _ in range(max_steps):
        # On the current segment w_A(l) = u - l v, and the inactive correlations are a + l b.
        cs = torch.stack([ca, s], -1)  # (p, d, 2)
        uv = H @ cs
        ab = Ga @ uv
        # one step of iterative refinement on the active block: H drifts over many rank-one updates
        fix = H @ ((cs - ab) * act.unsqueeze(-1).to(dt))
        uv, ab = uv + fix, ab + Ga @ fix
        u, v = uv[..., 0], uv[..., 1]
        a, b = ca - ab[..., 0], ab[..., 1]
        # Events lie strictly below the current lambda; a variable dropped at the last step is kept out for a
        # relative 1e-6 more: exactly its correlation only leaves the bound there, rounding could re-admit it.
        below = lam.unsqueeze(-1) * (1 - 1e-10 - fresh.to(dt) * 1e-6)
        l_plus, l_minus = a / (1 - b), a / (-1 - b)  # where a + l b reaches +l, -l
        room = (act.sum(-1) < cap).unsqueeze(-1) & ~act
        ok_p = room & (l_plus > 0) & (l_plus < below)
        ok_m = room & (l_minus > 0) & (l_minus < below)
        enter_l = torch.maximum(torch.where(ok_p, l_plus, ninf), torch.where(ok_m, l_minus, ninf))
        l_drop = u / v  # where an active coefficient crosses zero
        drop_l = torch.where(act & (l_drop > 0) & (l_drop < below), l_drop, ninf)
        best_enter, j = enter_l.max(-1)
        best_drop, k = drop_l.max(-1)
        nxt = torch.maximum(best_enter, best_drop)
        done = running & (nxt <= alpha)
        if bool(done.any()):
            w[idx[done]] = u[done] - alpha * v[done]
            finished[idx[done]] = True
            running &= ~done
        n_run = int(running.sum())
        if n_run == 0:
            break
        if n_run < 0.6 * idx.numel():  # drop finished problems from the batch (amortized copies)
            keep = running
            idx, Ga, ca, H, act, s, lam, cap = (
                idx[keep],
                Ga[keep],
                ca[keep],
                H[keep],
                act[keep],
                s[keep],
                lam[keep],
                cap[keep],
            )
            fresh = fresh[keep]
            running = running[keep]
            a, b, nxt, best_enter, best_drop, j, k = (
                a[keep],
                b[keep],
                nxt[keep],
                best_enter[keep],
                best_drop[keep],
                j[keep],
                k[keep],
            )
        rows = torch.arange(idx.numel(), device=dev)
        entering = running & (best_enter >= best_drop)
        leaving = running & ~entering
        fresh.zero_()
        if bool(entering.any()):  # enter j: border the inverse, H += e e^T / schur with e = H g_A - e_j
            g = Ga[rows, :, j] * act.to(dt)
            e = _bmv(H, g)
            schur = Ga[rows, j, j] - (g * e).sum(-1)
            e[rows, j] = -1.0
            coef = torch.where(entering, 1.0 / schur, torch.zeros_like(schur))
            H += e.unsqueeze(-1) * (e * coef.unsqueeze(-1)).unsqueeze(-2)
            act[rows, j] |= entering
            s[rows, j] = torch.where(entering, torch.sign(a[rows, j] + nxt * b[rows, j]), s[rows, j])
        if bool(leaving.any()):  # drop k: H -= H[:, k] H[k, :] / H[k, k], then clear row and column k
            fl = leaving.to(dt)
            hk = H[rows, :, k]
            hkk = hk[rows, k]
            coef = torch.where(leaving, 1.0 / torch.where(leaving, hkk, torch.ones_like(hkk)), torch.zeros_like(hkk))
            H -= hk.unsqueeze(-1) * (hk * coef.unsqueeze(-1)).unsqueeze(-2)
            keep_k = 1.0 - fl.unsqueeze(-1) * torch.nn.functional.one_hot(k, d).to(dt)  # 0 at k for leaving rows
            H *= keep_k.unsqueeze(-1) * keep_k.unsqueeze(-2)
            act[rows, k] &= ~leaving
            fresh[rows, k] = leaving
            s[rows, k] *= 1.0 - fl
        lam = torch.where(running, nxt, lam)
    return w, finished


def _sklearn_lasso(X: np.ndarray, y: np.ndarray, alpha: float, max_iter: int, tol: float) -> np.ndarray:
    from sklearn.linear_model import Lasso

    return Lasso(alpha=alpha, fit_intercept=False, max_iter=max_iter, tol=tol).fit(X, y).coef_


def _sklearn_lasso_lars(X: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    from sklearn.linear_model import LassoLars

    return LassoLars(alpha=alpha, fit_intercept=False).fit(X, y).coef_


@register(
    "lasso", LassoOptions, help="LASSO (l1-penalized least squares, no intercept), exact per prefix; alpha option"
)
def lasso(
    xs: torch.Tensor,
    ys: torch.Tensor,
    alpha: float = 0.01,
    solver: str = "lars",
    max_iter: int = 100_000,
    tol: float = 1e-4,
    positions: list[int] | None = None,
    kkt_tol: float = 1e-6,
) -> torch.Tensor:
    B, n, d = xs.shape
    req = positions_or_all(positions, n)
    pos = [i for i in req if i > 0]
    pred = torch.full((B, n), float("nan"), dtype=_F64, device=xs.device)
    if 0 in req:
        pred[:, 0] = 0.0
    if not pos or B == 0:
        return pred.to(xs.dtype)
    x, y = xs.to(_F64), ys.to(_F64)
    q = torch.tensor(pos, device=xs.device)
    Q = len(pos)

    if solver == "sklearn":
        X, Y = x.cpu().numpy(), y.cpu().numpy()
        out = np.array(
            [[X[b, i] @ _sklearn_lasso(X[b, :i], Y[b, :i], alpha, max_iter, tol) for i in pos] for b in range(B)]
        )
        pred[:, q] = torch.from_numpy(out).to(pred.device)
        return pred.to(xs.dtype)

    # Gram quantities of every requested prefix (prefix sums over j < i), divided by the prefix length i.
    m = q.to(_F64)
    G = (torch.cumsum(x.unsqueeze(-1) * x.unsqueeze(-2), dim=1)[:, q - 1] / m[None, :, None, None]).reshape(-1, d, d)
    c = (torch.cumsum(x * y.unsqueeze(-1), dim=1)[:, q - 1] / m[None, :, None]).reshape(-1, d)
    w, finished = lasso_lars(G, c, alpha, max_active=q.repeat(B))
    bad = ~finished | ~(kkt_violation(G, c, w, alpha) <= kkt_tol)
    if bool(bad.any()):
        X, Y = x.cpu().numpy(), y.cpu().numpy()
        for p in bad.nonzero().flatten().tolist():
            b, k = divmod(p, Q)
            w[p] = torch.from_numpy(_sklearn_lasso_lars(X[b, : pos[k]], Y[b, : pos[k]], alpha)).to(w.device)
        if bad.sum() > max(10, 0.01 * bad.numel()):
            warnings.warn(
                f"lasso(alpha={alpha:g}): {int(bad.sum())} of {bad.numel()} prefixes fell back to sklearn LassoLars",
                RuntimeWarning,
                stacklevel=2,
            )
    pred[:, q] = (x[:, q] * w.view(B, Q, d)).sum(-1)
    return pred.to(xs.dtype)
