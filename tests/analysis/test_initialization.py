"""Initialization of deep MLPs (iclab/analysis/initialization.py): the init laws' variances, signal propagation
at init, and that Kaiming trains a deep ReLU net where naive small init does not."""

import math

import pytest
import torch
from typer.testing import CliRunner

from iclab.analysis.initialization import InitError, initialize, make_mlp, run_initialization
from iclab.cli import app


@pytest.mark.parametrize(
    "init, act, var",
    [
        ("kaiming", "relu", 2 / 256),
        ("kaiming", "tanh", (5 / 3) ** 2 / 256),
        ("xavier", "relu", 2 / 512),
        ("naive(0.01)", "relu", 1e-4),
    ],
)
def test_weight_variances(init, act, var):
    torch.manual_seed(0)
    mlp = make_mlp(4, 256, act)
    initialize(mlp, init, act)
    w = mlp[2].weight  # a hidden 256 x 256 layer
    assert w.var().item() == pytest.approx(var, rel=0.05)
    assert torch.count_nonzero(mlp[2].bias) == 0


def test_kaiming_keeps_relu_signals_and_trains_where_naive_does_not(tmp_path):
    rec = run_initialization(
        tmp_path, depths=[20], width=32, steps=80, lr=0.02, inits=("naive(0.01)", "kaiming"), activations=("relu",)
    )
    runs = {r["init"]: r for r in rec["runs"]}
    k, n = runs["kaiming"], runs["naive(0.01)"]
    assert len(k["act_rms"]) == 19 and len(k["grad_norms"]) == 20
    assert 0.1 < k["act_rms"][-1] / k["act_rms"][0] < 10  # Kaiming preserves the scale through 19 ReLUs
    assert n["act_rms"][-1] < 1e-20 * n["act_rms"][0]  # N(0, 0.01^2) shrinks it ~ (0.01^2 * 32 / 2)^(1/2) per layer
    assert k["loss"][-1] < k["loss"][0] - 0.25
    assert k["loss"][-1] < n["loss"][-1] - 0.1
    assert n["loss"][-1] > math.log(10) - 0.1  # stuck near chance (the labels' marginal: ~2.25)
    assert (tmp_path / "initialization.png").is_file()


def test_bad_depth_and_init(tmp_path):
    with pytest.raises(InitError, match="--depth 1"):
        run_initialization(tmp_path, depths=[1])
    with pytest.raises(InitError, match="unknown init"):
        initialize(make_mlp(3, 4, "relu"), "orthogonal", "relu")
    res = CliRunner().invoke(app, ["dynamics", "init", "--out", str(tmp_path), "--depth", "1"])
    assert res.exit_code == 2 and "--depth 1" in res.output
