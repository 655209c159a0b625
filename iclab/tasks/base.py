"""The task interface.

A task is a class of functions f. A prompt is `x_1, f(x_1), ..., x_n, f(x_n)` with f fresh per prompt.
Everything is sampled batched on the requested device from an explicit `torch.Generator`, so that the
data of a training step is a pure function of (seed, step).

Curriculum on dimensions: `n_dims_truncated` <= `n_dims`; coordinates beyond it are zero in x (and the
function ignores them), exactly as in Garg et al.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from iclab.registry import Registry


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task:
    """Base class. Subclasses set `Options` (a pydantic model) and implement `sample_params`/`evaluate`."""

    Options: type[BaseModel] = NoOptions

    def __init__(self, n_dims: int, **options: Any):
        self.n_dims = n_dims
        self.opts = self.Options(**options)

    # --- x sampling -------------------------------------------------------------------------------
    def sample_xs(self, batch: int, n_points: int, n_dims_truncated: int, gen: torch.Generator, device) -> torch.Tensor:
        xs = torch.randn(batch, n_points, self.n_dims, generator=gen, device=device)
        if n_dims_truncated < self.n_dims:
            xs[..., n_dims_truncated:] = 0
        return xs

    # --- functions ------------------------------------------------------------------------------
    def sample_params(self, batch: int, n_dims_truncated: int, gen: torch.Generator, device) -> Any:
        raise NotImplementedError

    def evaluate(self, params: Any, xs: torch.Tensor) -> torch.Tensor:
        """(batch, n_points, n_dims) -> (batch, n_points)"""
        raise NotImplementedError

    def sample(self, batch: int, n_points: int, n_dims_truncated: int, gen: torch.Generator, device):
        """One batch of prompts: xs (batch, n_points, n_dims), ys (batch, n_points)."""
        xs = self.sample_xs(batch, n_points, n_dims_truncated, gen, device)
        params = self.sample_params(batch, n_dims_truncated, gen, device)
        return xs, self.evaluate(params, xs)

    def zero_error(self, n_dims_truncated: int) -> float:
        """E[f(x)^2]: the squared error of predicting 0, used to normalize errors (1.0 = predicting zero)."""
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task")


def make_task(name: str, n_dims: int, options: dict | None = None) -> Task:
    return TASKS.get(name)(n_dims, **(options or {}))
