"""Sparse linear regression: w has exactly `sparsity` non-zero N(0,1) entries among the current dims."""

from __future__ import annotations

import torch
from pydantic import Field

from iclab.registry import FUNCTIONS
from iclab.workloads.regression.functions.linear import LinearOptions, LinearRegression


class SparseOptions(LinearOptions):
    sparsity: int = Field(3, gt=0, description="non-zero coordinates of w (s)")


@FUNCTIONS.register("sparse_linear_regression")
class SparseLinearRegression(LinearRegression):
    """f(x) = scale * w.x, w with s non-zero N(0,1) coordinates chosen uniformly; error normalized by s."""

    Options = SparseOptions
    default_baselines = ("least_squares", "lasso", "knn", "averaging")

    @classmethod
    def check(cls, opts, n_dims):
        if opts.sparsity > n_dims:
            raise ValueError(f"sparsity={opts.sparsity} exceeds n_dims={n_dims}")

    def sample_params(self, batch, n_dims_truncated, gen, device):
        s = min(self.opts.sparsity, n_dims_truncated)  # while the dims curriculum is below s: all current dims
        w = torch.randn(batch, self.n_dims, generator=gen, device=device)
        # a uniformly random s-subset of the current dims: the s smallest of iid uniform scores
        scores = torch.rand(batch, self.n_dims, generator=gen, device=device)
        scores[:, n_dims_truncated:] = 2.0
        keep = torch.zeros_like(w, dtype=torch.bool).scatter_(1, scores.topk(s, dim=1, largest=False).indices, True)
        return torch.where(keep, w, torch.zeros_like(w)) * self.opts.scale

    def zero_error(self, n_dims_truncated):
        return float(min(self.opts.sparsity, n_dims_truncated)) * self.opts.scale**2
