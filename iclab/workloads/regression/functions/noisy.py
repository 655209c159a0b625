"""Noisy linear regression: y = w.x + eps, eps ~ N(0, noise_std^2) independent per point."""

from __future__ import annotations

from pydantic import Field

from iclab.registry import FUNCTIONS
from iclab.workloads.regression.functions.linear import LinearOptions, LinearRegression


class NoisyOptions(LinearOptions):
    noise_std: float = Field(1.0, ge=0, description="std of the label noise (Garg et al.'s noisy-LR evaluation uses 1)")


@FUNCTIONS.register("noisy_linear_regression")
class NoisyLinearRegression(LinearRegression):
    """y = scale * w.x + N(0, noise_std^2); errors are against the noisy label, normalized by d + noise_std^2."""

    Options = NoisyOptions
    default_baselines = ("least_squares", "ridge", "knn", "averaging")

    @property
    def label_noise_std(self):
        return self.opts.noise_std

    def zero_error(self, n_dims_truncated):
        return float(n_dims_truncated) * self.opts.scale**2 + self.opts.noise_std**2
