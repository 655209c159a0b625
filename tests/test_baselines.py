import numpy as np
import torch

from iclab.baselines import averaging, knn, least_squares


def _data(seed=0, b=3, n=8, d=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, d, generator=g, dtype=torch.float64), torch.randn(b, n, generator=g, dtype=torch.float64)


def test_least_squares_matches_numpy_min_norm():
    xs, ys = _data()
    pred = least_squares(xs, ys).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(X.shape[0]):
        assert pred[b, 0] == 0
        for i in range(1, X.shape[1]):
            w, *_ = np.linalg.lstsq(X[b, :i], Y[b, :i], rcond=None)  # min-norm for i < d
            np.testing.assert_allclose(pred[b, i], X[b, i] @ w, rtol=1e-6, atol=1e-8)


def test_least_squares_recovers_noiseless_linear_function():
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(4, 12, 5, generator=g)
    w = torch.randn(4, 5, generator=g)
    ys = torch.einsum("bnd,bd->bn", xs, w)
    err = (least_squares(xs, ys) - ys)[:, 6:].abs().max()
    assert err < 1e-3


def test_averaging_matches_numpy():
    xs, ys = _data(2)
    pred = averaging(xs, ys).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(X.shape[0]):
        assert pred[b, 0] == 0
        for i in range(1, X.shape[1]):
            w = (Y[b, :i, None] * X[b, :i]).mean(0)
            np.testing.assert_allclose(pred[b, i], X[b, i] @ w, rtol=1e-9)


def test_knn_matches_brute_force():
    xs, ys = _data(3, n=9)
    pred = knn(xs, ys, k=3).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(X.shape[0]):
        assert pred[b, 0] == 0
        for i in range(1, X.shape[1]):
            d = np.linalg.norm(X[b, :i] - X[b, i], axis=1)
            nn = np.argsort(d)[: min(3, i)]
            np.testing.assert_allclose(pred[b, i], Y[b, nn].mean(), rtol=1e-9)
