"""Samplers of every function class: shapes, dtype, device, determinism, and the statistics each promises."""

import math

import numpy as np
import pytest
import torch

from iclab.config import ConfigError, validate
from iclab.registry import FUNCTIONS, TASKS
from iclab.workloads.base import Workload
from iclab.workloads.regression.functions import make_task

ALL = [
    "linear_regression",
    "sparse_linear_regression",
    "noisy_linear_regression",
    "decision_tree",
    "relu_2nn_regression",
    "quadratic_regression",
]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ALL)
def test_shapes_dtype_device_determinism(name):
    task = make_task(name, 6)
    xs, ys = task.sample(5, 9, 6, gen(1), "cpu")
    assert xs.shape == (5, 9, 6) and ys.shape == (5, 9)
    assert xs.dtype == ys.dtype == torch.float32 and xs.device.type == ys.device.type == "cpu"
    xs2, ys2 = task.sample(5, 9, 6, gen(1), "cpu")
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2)
    xs3, ys3 = task.sample(5, 9, 6, gen(2), "cpu")
    assert not torch.equal(ys, ys3)
    assert torch.isfinite(ys).all()


@pytest.mark.parametrize("name", ALL)
def test_truncated_dims_are_ignored(name):
    """With the dims curriculum at 3 of 6, x is zero beyond 3 and f does not depend on those coordinates."""
    task = make_task(name, 6)
    g = gen(3)
    xs = task.sample_xs(4, 7, 3, g, "cpu")
    assert (xs[..., 3:] == 0).all()
    params = task.sample_params(4, 3, g, "cpu")
    noise = torch.randn(4, 7, 3, generator=g)
    xs_other = torch.cat([xs[..., :3], noise], -1)
    assert torch.allclose(task.evaluate(params, xs), task.evaluate(params, xs_other))


@pytest.mark.parametrize(
    "name,opts,d",
    [
        ("linear_regression", {}, 5),
        ("linear_regression", {"scale": 2.0}, 4),
        ("sparse_linear_regression", {"sparsity": 2}, 6),
        ("noisy_linear_regression", {"noise_std": 1.5}, 4),
        ("decision_tree", {}, 5),
        ("relu_2nn_regression", {"hidden_size": 20}, 4),
        ("quadratic_regression", {}, 4),
        ("quadratic_regression", {"form": "sum_square"}, 4),
    ],
)
def test_zero_error_matches_monte_carlo(name, opts, d):
    """zero_error is E[y^2], computed exactly; a Monte Carlo estimate agrees to a few standard errors."""
    task = make_task(name, d + 2, opts)
    xs, ys = task.sample(20000, 8, d, gen(4), "cpu")
    sq = ys.double().pow(2).flatten()
    est, se = sq.mean().item(), sq.std().item() / math.sqrt(20000)  # points within a prompt are correlated: rough
    assert abs(est - task.zero_error(d)) < 6 * se + 0.02 * task.zero_error(d), (est, task.zero_error(d))


def test_sparse_has_exactly_s_nonzeros_among_current_dims():
    task = make_task("sparse_linear_regression", 10, {"sparsity": 3})
    w = task.sample_params(2000, 7, gen(5), "cpu")
    nz = w != 0
    assert (nz.sum(1) == 3).all()
    assert not nz[:, 7:].any()
    freq = nz[:, :7].float().mean(0)  # uniform subset: each current coordinate with probability 3/7
    assert torch.allclose(freq, torch.full((7,), 3 / 7), atol=0.05)
    # while the dims curriculum is below s, every current coordinate is used
    assert ((task.sample_params(10, 2, gen(6), "cpu") != 0).sum(1) == 2).all()


def test_sparse_rejects_sparsity_above_n_dims():
    with pytest.raises(ConfigError, match="sparsity=9 exceeds n_dims=5"):
        validate(
            {"task": {"name": "sparse_linear_regression", "n_dims": 5, "n_points": 11, "options": {"sparsity": 9}}}
        )


def test_noisy_label_noise_std():
    task = make_task("noisy_linear_regression", 4, {"noise_std": 0.7})
    g = gen(7)
    xs = task.sample_xs(4000, 10, 4, g, "cpu")
    w = task.sample_params(4000, 4, g, "cpu")
    clean = task.evaluate(w, xs)
    noisy = task.add_noise(clean, g)
    resid = (noisy - clean).flatten()
    assert abs(resid.std().item() - 0.7) < 0.01 and abs(resid.mean().item()) < 0.01
    # the noiseless linear task draws no noise at all (and stays bit-identical to before)
    lin = make_task("linear_regression", 4)
    assert lin.add_noise(clean, g) is clean


def slow_tree(coords, leaves, x, depth):
    node = 0
    for _ in range(depth):
        node = 2 * node + (2 if x[coords[node]] > 0 else 1)
    return leaves[node - (2**depth - 1)]


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_tree_matches_slow_traversal(depth):
    task = make_task("decision_tree", 5, {"depth": depth})
    g = gen(8)
    coords, leaves = task.sample_params(6, 4, g, "cpu")
    assert coords.shape == (6, 2**depth - 1) and leaves.shape == (6, 2**depth)
    assert coords.min() >= 0 and coords.max() < 4  # split coordinates among the current dims
    xs = task.sample_xs(6, 11, 4, g, "cpu")
    ys = task.evaluate((coords, leaves), xs)
    for b in range(6):
        for i in range(11):
            assert ys[b, i].item() == slow_tree(coords[b].tolist(), leaves[b].tolist(), xs[b, i].tolist(), depth)


def test_tree_outputs_are_leaf_values():
    task = make_task("decision_tree", 6)
    xs, ys = task.sample(50, 40, 6, gen(9), "cpu")
    # each prompt's y values come from at most 16 leaves
    assert max(len(set(ys[b].tolist())) for b in range(50)) <= 16


def test_relu_net_matches_numpy():
    task = make_task("relu_2nn_regression", 5, {"hidden_size": 7})
    g = gen(10)
    w1, w2 = task.sample_params(3, 5, g, "cpu")
    assert w1.shape == (3, 5, 7) and w2.shape == (3, 7)
    xs = task.sample_xs(3, 4, 5, g, "cpu")
    ys = task.evaluate((w1, w2), xs).numpy()
    X, W1, W2 = xs.double().numpy(), w1.double().numpy(), w2.double().numpy()
    for b in range(3):
        ref = np.maximum(X[b] @ W1[b], 0) @ W2[b] * np.sqrt(2 / 7)
        np.testing.assert_allclose(ys[b], ref, rtol=1e-5, atol=1e-5)


def test_quadratic_matches_formula():
    for form in ("dot_square", "sum_square"):
        task = make_task("quadratic_regression", 5, {"form": form})
        g = gen(11)
        w, c = task.sample_params(3, 4, g, "cpu")
        xs = task.sample_xs(3, 6, 4, g, "cpu")
        X, W = xs.double().numpy(), w.double().numpy()
        if form == "dot_square":
            ref = (X @ W[:, :, None])[..., 0] ** 2 / np.sqrt(3 * (4 + 2))
        else:
            ref = (X**2 @ W[:, :, None])[..., 0] / np.sqrt(3)
        np.testing.assert_allclose(task.evaluate((w, c), xs).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_unknown_task_option_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="task.options.depht"):
        validate({"task": {"name": "decision_tree", "n_dims": 5, "n_points": 11, "options": {"depht": 3}}})


def test_every_task_is_registered_with_defaults():
    assert set(ALL) <= set(FUNCTIONS.names()) and set(ALL) <= set(TASKS.names())
    for name in ALL:
        assert "least_squares" in FUNCTIONS.get(name).default_baselines


def test_every_task_is_a_workload_and_each_function_class_has_its_own():
    for name in TASKS.names():
        assert issubclass(TASKS.get(name), Workload), name
    for name in FUNCTIONS.names():
        wl = TASKS.get(name)
        assert wl.family == "regression" and wl.function_class is FUNCTIONS.get(name)
        assert wl.Options is FUNCTIONS.get(name).Options


def test_shipped_garg_configs_validate_and_match_the_paper():
    from pathlib import Path

    from iclab.config import load_config

    root = Path(__file__).resolve().parents[3] / "configs" / "garg"
    for task in ALL:
        paper, tiny = load_config(root / f"{task}.yaml"), load_config(root / "tiny" / f"{task}.yaml")
        assert paper.task.name == tiny.task.name == task
        assert (paper.task.n_dims, paper.model.n_layer, paper.model.n_embd, paper.model.n_head) == (20, 12, 256, 8)
        assert paper.task.n_points == (101 if task in ("decision_tree", "relu_2nn_regression") else 41)
        assert paper.curriculum.dims.start == 5 and paper.curriculum.points.end == paper.task.n_points
        assert paper.eval.baselines is None  # the task's defaults
        assert tiny.training.device == "cpu" and tiny.training.steps <= 5000
    assert load_config(root / "linear_regression_pool1k.yaml").task.options["pool_size"] == 1000
    assert load_config(root / "linear_regression_prompts100k.yaml").task.options["prompt_pool_size"] == 100000


def test_memorization_is_a_valid_eval_baseline_name():
    cfg = validate(
        {"task": {"n_dims": 3, "n_points": 7, "options": {"pool_size": 4}}, "eval": {"baselines": ["memorization"]}}
    )
    assert cfg.eval.baselines == ["memorization"]
    assert validate({}).eval.baselines is None
