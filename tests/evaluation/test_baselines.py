import warnings

import numpy as np
import pytest
import torch

from iclab.evaluation.baselines import (
    averaging,
    decision_tree,
    init_relu_nets,
    knn,
    lasso,
    least_squares,
    least_squares_pinv,
    relu_net_gd,
    ridge,
    xgboost,
)
from iclab.registry import BASELINES


def _data(seed=0, b=3, n=8, d=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, d, generator=g, dtype=torch.float64), torch.randn(b, n, generator=g, dtype=torch.float64)


def _linear_data(seed=0, b=4, n=12, d=5, sparse=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(b, n, d, generator=g, dtype=dtype)
    w = torch.randn(b, d, generator=g, dtype=dtype)
    if sparse is not None:
        w[:, sparse:] = 0
    return xs, torch.einsum("bnd,bd->bn", xs, w) + 0.1 * torch.randn(b, n, generator=g, dtype=dtype)


def _numpy_lstsq_preds(X, Y):
    out = np.zeros(Y.shape)
    for b in range(X.shape[0]):
        for i in range(1, X.shape[1]):
            w, *_ = np.linalg.lstsq(X[b, :i], Y[b, :i], rcond=None)  # min-norm for i < d
            out[b, i] = X[b, i] @ w
    return out


# ------------------------------------------------------------------ least squares


def test_least_squares_matches_numpy_min_norm():
    xs, ys = _data()
    pred = least_squares(xs, ys).numpy()
    assert (pred[:, 0] == 0).all()
    np.testing.assert_allclose(pred, _numpy_lstsq_preds(xs.numpy(), ys.numpy()), rtol=1e-6, atol=1e-8)


def test_least_squares_matches_numpy_before_and_after_d_points():
    xs, ys = _linear_data(1, b=6, n=14, d=5)
    np.testing.assert_allclose(
        least_squares(xs, ys).numpy(), _numpy_lstsq_preds(xs.numpy(), ys.numpy()), rtol=1e-7, atol=1e-9
    )


@pytest.mark.parametrize("case", ["zero_columns", "duplicate_points", "subspace"])
def test_least_squares_rank_deficient_prompts_give_min_norm(case):
    xs, ys = _linear_data(2, b=4, n=12, d=5)
    if case == "zero_columns":  # dims cut by the curriculum: zero in every prompt
        xs[..., 3:] = 0
    elif case == "duplicate_points":  # one prompt repeats its first point, another its third
        xs[0, 1] = xs[0, 0]
        xs[2, 4] = xs[2, 2]
    else:  # one prompt's points span a 3-dim subspace of R^5 (not aligned with the axes)
        q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
        xs[1] = xs[1, :, :3] @ q[:, :3].T
    np.testing.assert_allclose(
        least_squares(xs, ys).numpy(), _numpy_lstsq_preds(xs.numpy(), ys.numpy()), rtol=1e-6, atol=1e-8
    )


def test_least_squares_float32_points_in_a_subspace_treat_rounding_as_rank_deficiency():
    """float32 points spanning a 3-dim subspace of R^5 (rotated): their tiny singular values are rounding, so
    the answer is numpy's min-norm lstsq with float32's cutoff rcond = eps32 * max(i, d), as pinv would use."""
    xs, ys = _linear_data(14, b=3, n=12, d=5)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    xs = (xs[..., :3] @ q[:, :3].T).float()
    ys = ys.float()
    X, Y = xs.double().numpy(), ys.double().numpy()
    ref = np.zeros(Y.shape)
    for b in range(3):
        for i in range(1, 12):
            w, *_ = np.linalg.lstsq(X[b, :i], Y[b, :i], rcond=np.finfo(np.float32).eps * 12)
            ref[b, i] = X[b, i] @ w
    np.testing.assert_allclose(least_squares(xs, ys).double().numpy(), ref, rtol=1e-4, atol=1e-4)


def test_least_squares_float32_prompts_agree_with_float64_reference():
    xs, ys = _linear_data(4, b=20, n=21, d=10, dtype=torch.float32)
    pred = least_squares(xs, ys)
    assert pred.dtype == torch.float32
    ref = least_squares_pinv(xs.double(), ys.double())
    np.testing.assert_allclose(pred.double().numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)


def test_least_squares_recovers_noiseless_linear_function():
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(4, 12, 5, generator=g)
    w = torch.randn(4, 5, generator=g)
    ys = torch.einsum("bnd,bd->bn", xs, w)
    err = (least_squares(xs, ys) - ys)[:, 6:].abs().max()
    assert err < 1e-3


# ------------------------------------------------------------------ ridge, averaging, knn


@pytest.mark.parametrize("alpha", [1e-3, 0.5, 10.0])
def test_ridge_matches_numpy_closed_form(alpha):
    xs, ys = _linear_data(5, b=3, n=10, d=4)
    pred = ridge(xs, ys, alpha=alpha).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(X.shape[0]):
        assert pred[b, 0] == 0
        for i in range(1, X.shape[1]):
            w = np.linalg.solve(X[b, :i].T @ X[b, :i] + alpha * np.eye(4), X[b, :i].T @ Y[b, :i])
            np.testing.assert_allclose(pred[b, i], X[b, i] @ w, rtol=1e-8, atol=1e-10)


def test_averaging_matches_numpy():
    xs, ys = _data(2)
    pred = averaging(xs, ys).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(X.shape[0]):
        assert pred[b, 0] == 0
        for i in range(1, X.shape[1]):
            w = (Y[b, :i, None] * X[b, :i]).mean(0)
            np.testing.assert_allclose(pred[b, i], X[b, i] @ w, rtol=1e-9)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_matches_brute_force(k):
    xs, ys = _data(3, n=9)
    pred = knn(xs, ys, k=k).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(X.shape[0]):
        assert pred[b, 0] == 0
        for i in range(1, X.shape[1]):
            d = np.linalg.norm(X[b, :i] - X[b, i], axis=1)
            nn = np.argsort(d)[: min(k, i)]
            np.testing.assert_allclose(pred[b, i], Y[b, nn].mean(), rtol=1e-9)


# ------------------------------------------------------------------ lasso


@pytest.mark.parametrize("alpha", [1.0, 0.1, 0.01, 1e-4])
def test_lasso_is_the_exact_sklearn_lasso_solution(alpha):
    from sklearn.linear_model import Lasso, LassoLars

    xs, ys = _linear_data(6, b=3, n=12, d=6, sparse=2)
    xs[..., 5] = 0  # a dimension cut by the curriculum
    pred = lasso(xs, ys, alpha=alpha).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(3):
        assert pred[b, 0] == 0
        for i in range(1, 12):  # fewer and more points than dimensions
            w = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=1_000_000).fit(X[b, :i], Y[b, :i]).coef_
            np.testing.assert_allclose(pred[b, i], X[b, i] @ w, rtol=1e-6, atol=1e-7, err_msg=f"b={b} i={i}")
            w = LassoLars(alpha=alpha, fit_intercept=False).fit(X[b, :i], Y[b, :i]).coef_
            np.testing.assert_allclose(pred[b, i], X[b, i] @ w, rtol=1e-6, atol=1e-7, err_msg=f"lars b={b} i={i}")


def test_lasso_batched_path_agrees_with_lassolars_on_many_prefixes():
    """Hundreds of problems in one batch (rounding along long paths is what the KKT check and fallback catch);
    the fallback route alone (every problem re-solved by LassoLars) gives the same predictions."""
    from sklearn.linear_model import LassoLars

    xs, ys = _linear_data(15, b=30, n=16, d=8, sparse=3, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the batched path itself solves (almost) all of them
        pred = lasso(xs, ys, alpha=1e-3).double().numpy()
    X, Y = xs.double().numpy(), ys.double().numpy()
    ref = np.zeros(Y.shape)
    for b in range(30):
        for i in range(1, 16):
            ref[b, i] = X[b, i] @ LassoLars(alpha=1e-3, fit_intercept=False).fit(X[b, :i], Y[b, :i]).coef_
    np.testing.assert_allclose(pred, ref, rtol=1e-4, atol=1e-5)
    with pytest.warns(RuntimeWarning, match="45 of 45 prefixes fell back"):
        fallback = lasso(xs[:3], ys[:3], alpha=1e-3, kkt_tol=-1.0).double().numpy()
    np.testing.assert_allclose(fallback, ref[:3], rtol=1e-4, atol=1e-5)


def test_lasso_sklearn_solver_is_sklearn_lasso_per_prefix():
    from sklearn.linear_model import Lasso

    xs, ys = _linear_data(7, b=2, n=8, d=4, sparse=1)
    pred = lasso(xs, ys, alpha=0.1, solver="sklearn", positions=[0, 3, 7]).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(2):
        for i in (3, 7):
            w = Lasso(alpha=0.1, fit_intercept=False, max_iter=100_000).fit(X[b, :i], Y[b, :i]).coef_
            assert pred[b, i] == pytest.approx(X[b, i] @ w, rel=1e-12, abs=1e-12)
    assert (pred[:, 0] == 0).all() and np.isnan(pred[:, [1, 2, 4, 5, 6]]).all()


# ------------------------------------------------------------------ trees


@pytest.mark.parametrize("max_depth", [None, 2])
def test_decision_tree_matches_sklearn_fitted_directly(max_depth):
    from sklearn.tree import DecisionTreeRegressor

    xs, ys = _data(8, b=3, n=10, d=3)
    xs, ys = xs.float(), ys.float()
    pred = decision_tree(xs, ys, max_depth=max_depth).numpy()
    X, Y = xs.numpy(), ys.numpy()
    for b in range(3):
        assert pred[b, 0] == 0
        for i in range(1, 10):
            t = DecisionTreeRegressor(max_depth=max_depth, random_state=0).fit(X[b, :i], Y[b, :i])
            assert pred[b, i] == pytest.approx(float(t.predict(X[b, i : i + 1])[0]), rel=1e-6)


def test_xgboost_matches_xgbregressor_with_its_defaults():
    import xgboost as xgb

    xs, ys = _data(9, b=2, n=7, d=3)
    xs, ys = xs.float(), ys.float()
    positions = [0, 2, 6]
    pred = xgboost(xs, ys, positions=positions).numpy()
    pred2 = xgboost(xs, ys, positions=positions, n_jobs=2).numpy()
    np.testing.assert_array_equal(pred, pred2)  # parallel threads: same fits
    X, Y = xs.numpy(), ys.numpy()
    for b in range(2):
        assert pred[b, 0] == 0
        for i in (2, 6):
            m = xgb.XGBRegressor().fit(X[b, :i], Y[b, :i])  # Garg et al.'s call: the library's defaults
            assert pred[b, i] == pytest.approx(float(m.predict(X[b, i : i + 1])[0]), rel=1e-6)
        assert np.isnan(pred[b, [1, 3, 4, 5]]).all()


# ------------------------------------------------------------------ 2-layer ReLU net by gradient descent


def _plain_relu_net_loop(xs, ys, b, i, init, hidden, steps, lr, optimizer):
    """One torch.nn network trained alone on prompt b's first i points (MSE, full batch); its prediction at x_i."""
    W1, b1, W2, b2 = init
    d = xs.shape[-1]
    net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(W1), net[0].bias.copy_(b1)
        net[2].weight.copy_(W2[None]), net[2].bias.copy_(b2[None])
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(xs[b, :i]).squeeze(-1), ys[b, :i]).backward()
        opt.step()
    with torch.no_grad():
        return net(xs[b, i : i + 1]).item()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_relu_net_gd_matches_a_plain_per_prompt_training_loop(optimizer):
    xs, ys = _data(10, b=2, n=6, d=3)
    hidden, steps, lr, seed = 7, 15, 0.02, 3
    positions = [0, 1, 3, 5]
    pred = relu_net_gd(xs, ys, hidden=hidden, steps=steps, lr=lr, optimizer=optimizer, seed=seed, positions=positions)
    # the same initial networks: one (prompt, position) grid, drawn from the same seed
    init = init_relu_nets((2, 3), 3, hidden, torch.Generator().manual_seed(seed), torch.float64, "cpu")
    for b in range(2):
        assert pred[b, 0] == 0
        for k, i in enumerate([1, 3, 5]):
            ref = _plain_relu_net_loop(xs, ys, b, i, [p[b, k] for p in init], hidden, steps, lr, optimizer)
            assert pred[b, i].item() == pytest.approx(ref, rel=1e-9, abs=1e-12), (b, i)
    assert torch.isnan(pred[:, [2, 4]]).all()


def test_relu_net_gd_trains_groups_of_positions_like_single_networks():
    """Many positions are trained in groups padded to their longest prefix; padding must not leak in."""
    xs, ys = _data(16, b=2, n=14, d=3)
    pred = relu_net_gd(xs, ys, hidden=5, steps=8, lr=0.05, seed=1)  # 13 positions: two groups
    init = init_relu_nets((2, 13), 3, 5, torch.Generator().manual_seed(1), torch.float64, "cpu")
    for b, i in [(0, 2), (1, 10), (0, 11), (1, 13)]:
        ref = _plain_relu_net_loop(xs, ys, b, i, [p[b, i - 1] for p in init], 5, 8, 0.05, "adam")
        assert pred[b, i].item() == pytest.approx(ref, rel=1e-9, abs=1e-12), (b, i)


def test_relu_net_gd_fits_a_prefix():
    """With enough steps the net interpolates a handful of points (the training loop really trains)."""
    xs, ys = _data(11, b=2, n=6, d=3)
    pred_train = relu_net_gd(xs, ys, hidden=32, steps=400, lr=0.02, positions=[5])
    pred_lazy = relu_net_gd(xs, ys, hidden=32, steps=1, lr=0.02, positions=[5])
    assert torch.isfinite(pred_train[:, 5]).all() and not torch.allclose(pred_train[:, 5], pred_lazy[:, 5])


# ------------------------------------------------------------------ every baseline: positions and causality

_FAST = {"xgboost": {"n_estimators": 5}, "relu_net_gd": {"hidden": 6, "steps": 5}, "lasso": {"alpha": 0.05}}


@pytest.mark.parametrize("name", BASELINES.names())
def test_causality_prediction_at_i_ignores_y_i_and_later_points(name):
    fn = BASELINES.get(name)
    opts = _FAST.get(name, {})
    xs, ys = _data(12, b=2, n=7, d=3)
    if getattr(fn, "needs_task", False):  # memorization: give it a task with a pool of 5 functions
        from iclab.workloads.regression.functions import make_task

        opts = {"task": make_task("linear_regression", 3, {"pool_size": 5})}
    base = fn(xs, ys, **opts)
    assert base.shape == ys.shape and (base[:, 0] == 0).all()
    g = torch.Generator().manual_seed(99)
    for i in range(7):
        xs2, ys2 = xs.clone(), ys.clone()
        ys2[:, i:] += torch.randn(2, 7 - i, generator=g, dtype=ys.dtype) * 3
        xs2[:, i + 1 :] += torch.randn(2, 6 - i, 3, generator=g, dtype=xs.dtype) * 3
        out = fn(xs2, ys2, **opts)
        torch.testing.assert_close(
            out[:, : i + 1], base[:, : i + 1], rtol=1e-7, atol=1e-9, msg=f"{name}: position <= {i}"
        )


@pytest.mark.parametrize("name", ["lasso", "decision_tree", "xgboost", "relu_net_gd"])
def test_positions_compute_only_there_and_agree_with_all_positions(name):
    fn = BASELINES.get(name)
    opts = _FAST.get(name, {})
    xs, ys = _data(13, b=2, n=6, d=3)
    some = fn(xs, ys, positions=[2, 5], **opts)
    assert torch.isnan(some[:, [0, 1, 3, 4]]).all() and torch.isfinite(some[:, [2, 5]]).all()
    if name != "relu_net_gd":  # its initial networks are drawn per (prompt, position) grid
        torch.testing.assert_close(some[:, [2, 5]], fn(xs, ys, **opts)[:, [2, 5]])
    with pytest.raises(ValueError, match="positions"):
        fn(xs, ys, positions=[6], **opts)
