"""Quadratic regression.

form=dot_square (default, as in follow-ups of Garg et al.): f(x) = c * (w.x)^2 with c = 1/sqrt(3 (d+2)),
  d the current dims: E[(w.x)^4] = 3 E[|w|^4] = 3 d (d+2), so E[y^2] = d exactly.
form=sum_square (Garg et al.'s code): f(x) = sum_i w_i x_i^2 / sqrt(3): E[y^2] = sum_i E[w_i^2] E[x_i^4] / 3 = d.
Either way w ~ N(0, I_d) and the zero predictor's error is d (times scale^2); note y has mean c*d != 0
under dot_square, so predicting the mean already reaches (2d+6)/(3d+6) of it, about 2/3.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from iclab.registry import FUNCTIONS
from iclab.workloads.regression.functions.base import Task, TaskOptions


class QuadraticOptions(TaskOptions):
    form: Literal["dot_square", "sum_square"] = Field("dot_square", description="(w.x)^2 or sum_i w_i x_i^2")
    scale: float = Field(1.0, gt=0, description="multiplies y")


@FUNCTIONS.register("quadratic_regression")
class QuadraticRegression(Task):
    """(w.x)^2 scaled so that E[y^2] = d (or Garg's sum_i w_i x_i^2 / sqrt 3); normalized by d."""

    Options = QuadraticOptions
    default_baselines = ("least_squares", "knn", "averaging")

    def sample_params(self, batch, n_dims_truncated, gen, device):
        """(w, c): w (B, n_dims) zero beyond the current dims; c (B,) the output scale of each function."""
        w = torch.randn(batch, self.n_dims, generator=gen, device=device)
        w[:, n_dims_truncated:] = 0
        if self.opts.form == "dot_square":
            c = self.opts.scale / math.sqrt(3.0 * (n_dims_truncated + 2))
        else:
            c = self.opts.scale / math.sqrt(3.0)
        return w, torch.full((batch,), c, device=device)

    def evaluate(self, params, xs):
        w, c = params
        if self.opts.form == "dot_square":
            y = torch.einsum("bnd,bd->bn", xs, w).square()
        else:
            y = torch.einsum("bnd,bd->bn", xs.square(), w)
        return y * c.unsqueeze(1)

    def zero_error(self, n_dims_truncated):
        return float(n_dims_truncated) * self.opts.scale**2
