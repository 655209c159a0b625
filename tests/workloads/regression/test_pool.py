"""The finite training pool (pool_size / prompt_pool_size) and the memorization baseline."""

import numpy as np
import pytest
import torch

from iclab.evaluation.baselines import resolve, resolve_baselines
from iclab.evaluation.baselines.memorization import memorization
from iclab.workloads.base import step_generator
from iclab.workloads.regression.functions import make_task

CPU = torch.device("cpu")


def recovered_ws(xs, ys):
    """w of each noiseless linear prompt (more points than dims), rounded so equal ws compare equal."""
    w = torch.linalg.lstsq(xs.double(), ys.double().unsqueeze(-1)).solution.squeeze(-1)
    return {tuple(np.round(r, 4)) for r in w.numpy()}


def test_function_pool_reuses_exactly_pool_size_functions():
    task = make_task("linear_regression", 3, {"pool_size": 5, "pool_seed": 1})
    seen = set()
    for step in range(30):
        xs, ys = task.sample(8, 6, 3, step_generator(0, step, CPU), CPU)
        seen |= recovered_ws(xs, ys)
    assert len(seen) == 5
    pool = {tuple(np.round(r, 4)) for r in task.pool.functions(CPU).double().numpy()}
    assert seen == pool


def test_pool_is_a_function_of_its_seed_and_fresh_without_pool():
    a = make_task("relu_2nn_regression", 3, {"pool_size": 4, "pool_seed": 2})
    b = make_task("relu_2nn_regression", 3, {"pool_size": 4, "pool_seed": 2})
    c = make_task("relu_2nn_regression", 3, {"pool_size": 4, "pool_seed": 3})
    assert all(torch.equal(p, q) for p, q in zip(a.pool.functions(CPU), b.pool.functions(CPU)))
    assert not torch.equal(a.pool.functions(CPU)[0], c.pool.functions(CPU)[0])
    # evaluation samples fresh functions: linear prompts give more distinct ws than the pool holds
    lin = make_task("linear_regression", 3, {"pool_size": 2}).without_pool()
    xs, ys = lin.sample(20, 6, 3, step_generator(0, 0, CPU), CPU)
    assert len(recovered_ws(xs, ys)) == 20


def test_prompt_pool_repeats_whole_prompts_and_extends_them():
    task = make_task("noisy_linear_regression", 3, {"prompt_pool_size": 4, "noise_std": 0.5})
    prompts = set()
    for step in range(25):
        xs, ys = task.sample(6, 5, 3, step_generator(0, step, CPU), CPU)
        prompts |= {tuple(np.round(torch.cat([x.flatten(), y]).numpy(), 5)) for x, y in zip(xs, ys)}
    assert len(prompts) == 4  # noise included: the same prompt comes back identical
    # a longer prompt (points curriculum) extends the same sequences beyond a block boundary
    short = task.pool.prompt_xs(5, CPU)[0][:, :5].clone()
    long_xs, long_noise = task.pool.prompt_xs(40, CPU)
    assert long_xs.shape[1] >= 40 and torch.equal(long_xs[:, :5], short)
    fresh = make_task("noisy_linear_regression", 3, {"prompt_pool_size": 4, "noise_std": 0.5})
    assert torch.equal(fresh.pool.prompt_xs(40, CPU)[0], long_xs[:, : fresh.pool.prompt_xs(40, CPU)[0].shape[1]])
    # dims curriculum: pooled x's are truncated to the current dims
    xs, _ = task.sample(6, 5, 2, step_generator(0, 0, CPU), CPU)
    assert (xs[..., 2:] == 0).all()


def test_prompt_pool_with_fewer_functions():
    task = make_task("linear_regression", 3, {"prompt_pool_size": 6, "pool_size": 2})
    seen = set()
    for step in range(20):
        xs, ys = task.sample(8, 6, 3, step_generator(0, step, CPU), CPU)
        seen |= recovered_ws(xs, ys)
    assert len(seen) == 2


def test_pool_sampling_does_not_read_the_host(monkeypatch):
    task = make_task("decision_tree", 4, {"pool_size": 7})
    task.pool.functions(CPU)  # built once, before the steps
    for name in ("item", "tolist", "cpu", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, lambda *a, _n=name, **k: pytest.fail(f"host read {_n}"))
    xs, ys = task.sample(8, 6, 4, step_generator(0, 0, CPU), CPU)
    assert ys.shape == (8, 6)


def slow_memorization(pool_w, xs, ys):
    B, n, _ = xs.shape
    out = np.zeros((B, n))
    for b in range(B):
        for i in range(1, n):
            errs = [((xs[b, :i] @ w - ys[b, :i]) ** 2).sum() for w in pool_w]
            out[b, i] = xs[b, i] @ pool_w[int(np.argmin(errs))]
    return out


def test_memorization_picks_the_best_pool_function():
    task = make_task("linear_regression", 4, {"pool_size": 9})
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(5, 7, 4, generator=g, dtype=torch.float64)
    ys = torch.randn(5, 7, generator=g, dtype=torch.float64)
    pred = memorization(xs, ys, task=task).numpy()
    ref = slow_memorization(task.pool.functions(CPU).double().numpy(), xs.numpy(), ys.numpy())
    np.testing.assert_allclose(pred, ref, rtol=1e-5, atol=1e-6)


def test_memorization_is_exact_on_pool_functions_and_chunks(monkeypatch):
    """On prompts of the pool's own functions, memorization finds the function after one example
    (generic path: trees; small chunks)."""
    import iclab.evaluation.baselines.memorization as mem

    monkeypatch.setattr(mem, "MAX_ELEMENTS", 500)
    task = make_task("relu_2nn_regression", 3, {"pool_size": 6, "hidden_size": 5})
    xs, ys = task.sample(10, 8, 3, step_generator(0, 1, CPU), CPU)
    pred = resolve(["memorization"])[0](xs, ys, task.without_pool())
    assert pred[:, 0].abs().max() == 0
    assert torch.allclose(pred[:, 2:], ys[:, 2:], atol=1e-5)


def test_memorization_needs_a_pool():
    with pytest.raises(ValueError, match="training pool"):
        memorization(torch.zeros(1, 2, 3), torch.zeros(1, 2), task=make_task("linear_regression", 3))


def test_default_baselines_resolution():
    assert resolve_baselines(make_task("linear_regression", 3), None) == ["least_squares", "knn", "averaging"]
    assert resolve_baselines(make_task("linear_regression", 3, {"pool_size": 3}), None)[-1] == "memorization"
    assert resolve_baselines(make_task("decision_tree", 3), ["knn"]) == ["knn"]
    # names of baselines that are not registered (in this build) are skipped, registered ones kept in order
    from iclab.registry import BASELINES

    got = resolve_baselines(make_task("decision_tree", 3), None)
    assert got == [b for b in ("least_squares", "knn", "averaging", "decision_tree", "xgboost") if b in BASELINES]
