"""Evaluation-time shifts: each sampler's promise, checked on tiny batches."""

import pytest
import torch

from iclab.evaluation.shifts import DEFAULT_SHIFTS, SHIFTS, make_shift, random_rotation
from iclab.workloads.regression.functions import make_task


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", SHIFTS.names())
@pytest.mark.parametrize("task_name", ["linear_regression", "decision_tree"])
def test_shapes_determinism_and_truncation(name, task_name):
    task = make_task(task_name, 6, {"pool_size": 3})
    sh = make_shift(name)
    n = sh.n_points(9, 4)
    p = sh.sample(task, 5, n, 4, gen(1), "cpu")
    q = sh.sample(task, 5, n, 4, gen(1), "cpu")
    assert p.xs.shape == (5, n, 6) and p.ys.shape == (5, n) and p.xs.dtype == torch.float32
    assert torch.equal(p.xs, q.xs) and torch.equal(p.ys, q.ys)
    assert (p.xs[..., 4:] == 0).all()  # shifts act on the current dims only
    if sh.query:
        assert p.xq.shape == p.xs.shape and p.yq.shape == p.ys.shape and (p.xq[..., 4:] == 0).all()
    else:
        assert p.xq is None


def test_standard_is_the_task_distribution():
    task = make_task("relu_2nn_regression", 4)
    p = make_shift("standard").sample(task, 3, 5, 4, gen(2), "cpu")
    xs, ys = task.sample(3, 5, 4, gen(2), "cpu")
    assert torch.equal(p.xs, xs) and torch.equal(p.ys, ys)


def test_random_rotation_is_orthogonal():
    u = random_rotation(4, 5, gen(3), "cpu")
    assert torch.allclose(u @ u.transpose(1, 2), torch.eye(5).expand(4, 5, 5), atol=1e-5)


def sample_cov(xs):
    x = xs.double()
    return torch.einsum("bni,bnj->bij", x, x) / x.shape[1]


def test_skewed_covariance_eigenvalues():
    """Per prompt, the x covariance has eigenvalues proportional to 1/i^2 with trace d."""
    d = 4
    task = make_task("linear_regression", d)
    p = make_shift("skewed").sample(task, 3, 40000, d, gen(4), "cpu")
    lam = 1 / torch.arange(1, d + 1, dtype=torch.float64) ** 2
    lam = lam * d / lam.sum()
    for c in sample_cov(p.xs):
        ev = torch.linalg.eigvalsh(c).flip(0)
        assert torch.allclose(ev, lam, rtol=0.06, atol=0.01), (ev, lam)
    # the eigenvectors are rotated at random: the covariance is not diagonal
    assert sample_cov(p.xs)[0].triu(1).abs().max() > 0.05


def test_half_subspace():
    d = 6
    task = make_task("linear_regression", d)
    p = make_shift("half_subspace").sample(task, 2, 20000, d, gen(5), "cpu")
    for c in sample_cov(p.xs):
        ev = torch.linalg.eigvalsh(c)
        assert torch.allclose(ev[:3], torch.zeros(3, dtype=torch.float64), atol=1e-8)  # rank d/2
        assert torch.allclose(ev[3:], torch.full((3,), 2.0, dtype=torch.float64), rtol=0.05)  # trace d


def test_label_noise_std_and_scaled_y():
    task = make_task("linear_regression", 3)
    clean = make_shift("standard").sample(task, 2000, 10, 3, gen(6), "cpu")
    # same generator draws: xs and w identical, then noise added
    noisy = make_shift("label_noise", {"noise_std": 0.5}).sample(task, 2000, 10, 3, gen(6), "cpu")
    assert torch.equal(clean.xs, noisy.xs)
    r = (noisy.ys - clean.ys).flatten()
    assert abs(r.std().item() - 0.5) < 0.01
    scaled = make_shift("scaled_y", {"factor": 3.0}).sample(task, 2000, 10, 3, gen(6), "cpu")
    assert torch.allclose(scaled.ys, 3 * clean.ys)
    sx = make_shift("scaled_x", {"factor": 0.5}).sample(task, 2000, 10, 3, gen(6), "cpu")
    assert torch.allclose(sx.xs, 0.5 * clean.xs) and torch.allclose(sx.ys, 0.5 * clean.ys)


def test_orthants():
    task = make_task("linear_regression", 5)
    p = make_shift("orthants").sample(task, 50, 12, 5, gen(7), "cpu")
    signs = p.xs.sign()
    assert (signs == signs[:, :1]).all()  # every prompt point in one orthant per prompt
    assert (p.xq.sign() == -signs).all()  # queries in the opposite orthant
    assert len({tuple(s.tolist()) for s in signs[:, 0]}) > 10  # orthants differ between prompts


def test_orthogonal_query():
    task = make_task("linear_regression", 6)
    sh = make_shift("orthogonal_query")
    n = sh.n_points(20, 6)
    assert n == 6
    p = sh.sample(task, 4, n, 6, gen(8), "cpu")
    assert torch.allclose(p.xq[:, 0], p.xs[:, 0], atol=1e-5)
    assert torch.allclose(p.xq.norm(dim=-1), p.xs.norm(dim=-1), rtol=1e-4)
    dots = torch.einsum("bid,bjd->bij", p.xq, p.xs)  # query i against prompt point j
    assert dots.tril(-1).abs().max() < 1e-4  # orthogonal to every earlier point
    assert (torch.einsum("bid,bid->bi", p.xq, p.xs) > 0).all()  # x_i's own orthogonal part, not its negation
    # labels of the queries are the same function's
    w = torch.linalg.lstsq(p.xs.double(), p.ys.double().unsqueeze(-1)).solution
    assert torch.allclose((p.xq.double() @ w).squeeze(-1), p.yq.double(), atol=1e-3)


def test_overlapping_query_repeats_an_earlier_point():
    task = make_task("linear_regression", 3)
    p = make_shift("overlapping_query").sample(task, 200, 10, 3, gen(9), "cpu")
    assert torch.equal(p.xq[:, 0], p.xs[:, 0])
    eq = (p.xq.unsqueeze(2) == p.xs.unsqueeze(1)).all(-1).tril(-1)  # eq[b, i, j]: query i is point j < i
    assert eq[:, 1:].any(-1).all()  # query i equals some point before i
    first = eq.float().argmax(-1)  # which one
    assert torch.allclose(p.yq[:, 1:], torch.gather(p.ys, 1, first)[:, 1:])  # and has its label
    picked = eq[:, 9, :9].float().mean(0)  # at position 9: uniform over the 9 earlier points
    assert picked.min() > 0.04


def test_train_pool_shift_needs_a_pool():
    task = make_task("linear_regression", 3)
    assert make_shift("train_pool").applies_to(task)
    assert make_shift("train_pool").applies_to(make_task("linear_regression", 3, {"pool_size": 2})) is None
    assert set(DEFAULT_SHIFTS) <= set(SHIFTS.names())


def test_unknown_shift_option():
    with pytest.raises(ValueError, match="factr"):
        make_shift("scaled_x", {"factr": 2})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "task_name",
    [
        "linear_regression",
        "sparse_linear_regression",
        "noisy_linear_regression",
        "decision_tree",
        "relu_2nn_regression",
        "quadratic_regression",
    ],
)
def test_samplers_stay_on_cuda(task_name):
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    for opts in ({}, {"pool_size": 5}, {"prompt_pool_size": 5}):
        xs, ys = make_task(task_name, 6, opts).sample(4, 9, 5, g, dev)
        assert xs.device.type == ys.device.type == "cuda"
    for name in SHIFTS.names():
        p = make_shift(name).sample(make_task(task_name, 6, {"pool_size": 3}), 4, 5, 5, g, dev)
        assert all(t.device.type == "cuda" for t in p if t is not None)
