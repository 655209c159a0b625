"""Probe targets against an independent numpy reference (one prompt and prefix at a time)."""

import numpy as np
import pytest
import torch

from iclab.analysis.targets import TargetError, compute_targets, parse_target


def ref_targets(x: np.ndarray, y: np.ndarray, K: int, lam: float, c: float):
    """Per prefix i: (ls, ridge, [gd_1..gd_K], [newton_1..newton_K]) from the prefix X = x[:i], y[:i]."""
    out = []
    d = x.shape[1]
    for i in range(len(x)):
        X, Y = x[:i], y[:i]
        if i == 0:
            z = np.zeros(d)
            out.append((z, z, [z] * K, [z] * K))
            continue
        ls = np.linalg.lstsq(X, Y, rcond=None)[0]
        rd = np.linalg.solve(X.T @ X + lam * np.eye(d), X.T @ Y)
        eta = 1 / np.linalg.eigvalsh(X.T @ X / i).max()
        w, gd = np.zeros(d), []
        for _ in range(K):
            w = w - eta * X.T @ (X @ w - Y) / i
            gd.append(w.copy())
        S = X.T @ X
        M, nt = c / np.linalg.norm(S @ S.T, 2) * S.T, []
        for _ in range(K):
            M = 2 * M - M @ S @ M
            nt.append(M @ X.T @ Y)
        out.append((ls, rd, gd, nt))
    return out


@pytest.mark.parametrize("c", [1.0, 2.0])
def test_targets_match_numpy_reference(c):
    g = torch.Generator().manual_seed(0)
    B, n, d, K, lam = 4, 9, 3, 4, 0.3
    xs, w = torch.randn(B, n, d, generator=g, dtype=torch.float64), torch.randn(B, d, generator=g, dtype=torch.float64)
    ys = torch.einsum("bnd,bd->bn", xs, w) + 0.1 * torch.randn(B, n, generator=g, dtype=torch.float64)
    names = (
        ["true_w", "least_squares", "ridge", "least_squares_pred"]
        + [f"gd_{k}" for k in range(1, K + 1)]
        + [f"newton_{k}" for k in range(1, K + 1)]
        + ["gd_2_pred", "newton_3_pred"]
    )
    T = compute_targets(names, xs, ys, w, ridge_lam=lam, newton_c=c)
    assert T["gd_1"].shape == (B, n, d) and T["gd_2_pred"].shape == (B, n)
    for b in range(B):
        ref = ref_targets(xs[b].numpy(), ys[b].numpy(), K, lam, c)
        for i, (ls, rd, gd, nt) in enumerate(ref):
            np.testing.assert_allclose(T["least_squares"][b, i], ls, atol=1e-8)
            np.testing.assert_allclose(T["ridge"][b, i], rd, atol=1e-10)
            np.testing.assert_allclose(T["true_w"][b, i], w[b], atol=0)
            for k in range(K):
                np.testing.assert_allclose(T[f"gd_{k + 1}"][b, i], gd[k], atol=1e-10)
                np.testing.assert_allclose(T[f"newton_{k + 1}"][b, i], nt[k], atol=1e-10)
            xq = xs[b, i].numpy()
            np.testing.assert_allclose(T["least_squares_pred"][b, i], ls @ xq, atol=1e-8)
            np.testing.assert_allclose(T["gd_2_pred"][b, i], gd[1] @ xq, atol=1e-10)
            np.testing.assert_allclose(T["newton_3_pred"][b, i], nt[2] @ xq, atol=1e-10)


def test_fixed_step_gd():
    xs = torch.randn(2, 6, 2, dtype=torch.float64)
    ys = xs.sum(-1)
    T = compute_targets(["gd_1"], xs, ys, eta=0.5)
    i = 4
    X, Y = xs[0, :i].numpy(), ys[0, :i].numpy()
    np.testing.assert_allclose(T["gd_1"][0, i], 0.5 * X.T @ Y / i, atol=1e-12)


def test_newton_converges_to_least_squares():
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(8, 40, 4, generator=g, dtype=torch.float64)  # 39 examples in 4 dims: well conditioned
    ys = torch.randn(8, 40, generator=g, dtype=torch.float64)
    T = compute_targets(["least_squares"] + [f"newton_{k}" for k in (1, 3, 6, 12)], xs, ys)
    errs = [(T[f"newton_{k}"][:, -1] - T["least_squares"][:, -1]).norm(dim=-1).max().item() for k in (1, 3, 6, 12)]
    assert errs[0] > 1e-2 and errs[-1] < 1e-10
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_parse_and_bad_names():
    assert parse_target("gd_3_pred") == ("gd", 3, True)
    assert parse_target("newton_10") == ("newton", 10, False)
    assert parse_target("least_squares") == ("least_squares", 0, False)
    for bad in ("gd", "gd_0", "newton_x", "lasso", "true_w_pred_pred"):
        with pytest.raises(TargetError, match="valid: true_w, least_squares"):
            parse_target(bad)
    with pytest.raises(TargetError, match="true_w needs"):
        compute_targets(["true_w"], torch.zeros(1, 2, 2), torch.zeros(1, 2))
