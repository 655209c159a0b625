"""Linear regression: f(x) = w . x with w ~ N(0, I_d)."""

from __future__ import annotations

import torch
from pydantic import Field

from iclab.registry import FUNCTIONS
from iclab.workloads.regression.functions.base import Task, TaskOptions


class LinearOptions(TaskOptions):
    scale: float = Field(1.0, gt=0, description="multiplies w (and so y)")


@FUNCTIONS.register("linear_regression")
class LinearRegression(Task):
    """f(x) = scale * w.x, w ~ N(0, I_d); error normalized by d (Garg et al. 2022)."""

    Options = LinearOptions
    default_baselines = ("least_squares", "knn", "averaging")

    def sample_params(self, batch, n_dims_truncated, gen, device):
        w = torch.randn(batch, self.n_dims, generator=gen, device=device)
        if n_dims_truncated < self.n_dims:
            w[:, n_dims_truncated:] = 0
        return w * self.opts.scale

    def evaluate(self, w, xs):
        return torch.einsum("bnd,bd->bn", xs, w)

    def zero_error(self, n_dims_truncated):
        return float(n_dims_truncated) * self.opts.scale**2
