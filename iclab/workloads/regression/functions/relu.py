"""2-layer ReLU networks (Garg et al. 2022): f(x) = sqrt(2/h) * sum_j W2_j relu(W1_j . x), W1, W2 ~ N(0, 1)."""

from __future__ import annotations

import math

import torch
from pydantic import Field

from iclab.registry import FUNCTIONS
from iclab.workloads.regression.functions.base import Task, TaskOptions


class ReluOptions(TaskOptions):
    hidden_size: int = Field(100, gt=0, description="hidden units h")
    scale: float = Field(1.0, gt=0, description="multiplies y")


@FUNCTIONS.register("relu_2nn_regression")
class Relu2NNRegression(Task):
    """Random 2-layer ReLU nets, h=100, output scaled by sqrt(2/h) so that E[y^2] = d; normalized by d."""

    Options = ReluOptions
    default_baselines = ("least_squares", "knn", "averaging", "relu_net_gd")

    def sample_params(self, batch, n_dims_truncated, gen, device):
        h = self.opts.hidden_size
        w1 = torch.randn(batch, self.n_dims, h, generator=gen, device=device)
        w1[:, n_dims_truncated:] = 0
        w2 = torch.randn(batch, h, generator=gen, device=device)
        return w1, w2

    def evaluate(self, params, xs):
        w1, w2 = params
        hidden = torch.relu(torch.bmm(xs, w1))  # (B, n, h)
        return torch.einsum("bnh,bh->bn", hidden, w2) * (math.sqrt(2.0 / self.opts.hidden_size) * self.opts.scale)

    def zero_error(self, n_dims_truncated):
        # E[y^2] = (2/h) * h * E[W2^2] * E[relu(z)^2] with z = W1_j.x, E[z^2] = d; relu(z)^2 has half of z^2's
        # mean by symmetry, so E[y^2] = d exactly (cross terms vanish since the W2_j are independent, mean 0).
        return float(n_dims_truncated) * self.opts.scale**2
