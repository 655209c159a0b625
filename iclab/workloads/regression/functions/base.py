"""The task interface.

A task is a class of functions f. A prompt is `x_1, f(x_1), ..., x_n, f(x_n)` with f fresh per prompt.
Everything is sampled batched on the requested device from an explicit `torch.Generator`, so that the
data of a training step is a pure function of (seed, step).

Curriculum on dimensions: `n_dims_truncated` <= `n_dims`; coordinates beyond it are zero in x (and the
function ignores them), exactly as in Garg et al.

Every task accepts the options of `TaskOptions`: a finite training pool (`pool_size` distinct functions
and/or `prompt_pool_size` distinct prompts), see iclab/workloads/regression/functions/pool.py. The pool
is used only for training; evaluation samples fresh functions (`Task.without_pool()`), except under the
`train_pool` shift.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from iclab.registry import FUNCTIONS
from iclab.workloads.regression.functions.params import index_params


class TaskOptions(BaseModel):
    """Options every task accepts. A task's own Options subclass this."""

    model_config = ConfigDict(extra="forbid")
    pool_size: int | None = Field(
        None, gt=0, description="train on only this many distinct functions, sampled once from pool_seed"
    )
    prompt_pool_size: int | None = Field(
        None,
        gt=0,
        description="train on only this many distinct prompts (x's, label noise and function fixed per prompt)",
    )
    pool_seed: int = Field(
        0, ge=0, description="seed of the training pool (sampled on the CPU, so it is the same on every device)"
    )


NoOptions = TaskOptions  # a task without options of its own


class Task:
    """Base class. Subclasses set `Options` (a pydantic model deriving from TaskOptions) and implement
    `sample_params`, `evaluate` and `zero_error`."""

    Options: type[TaskOptions] = TaskOptions
    #: baselines evaluated when `eval.baselines` is not set (names not registered are skipped)
    default_baselines: tuple[str, ...] = ("least_squares", "knn", "averaging")

    def __init__(self, n_dims: int, **options: Any):
        self.n_dims = n_dims
        self.opts = self.Options(**options)
        self.check(self.opts, n_dims)
        self.use_pool = True
        self._pool = None

    @staticmethod
    def select(params: Any, idx: torch.Tensor) -> Any:
        """Functions `idx` of a batch of parameters (a tensor or a tuple of tensors, batch first)."""
        return index_params(params, idx)

    @classmethod
    def check(cls, opts, n_dims: int) -> None:
        """Raise ValueError when options and n_dims do not fit together (called from config validation)."""

    # --- x sampling -------------------------------------------------------------------------------
    def sample_xs(self, batch: int, n_points: int, n_dims_truncated: int, gen: torch.Generator, device) -> torch.Tensor:
        xs = torch.randn(batch, n_points, self.n_dims, generator=gen, device=device)
        if n_dims_truncated < self.n_dims:
            xs[..., n_dims_truncated:] = 0
        return xs

    # --- functions ------------------------------------------------------------------------------
    def sample_params(self, batch: int, n_dims_truncated: int, gen: torch.Generator, device) -> Any:
        """Parameters of `batch` functions: a tensor, or a tuple of tensors, each with the batch first."""
        raise NotImplementedError

    def evaluate(self, params: Any, xs: torch.Tensor) -> torch.Tensor:
        """Noiseless f(x): (batch, n_points, n_dims) -> (batch, n_points)"""
        raise NotImplementedError

    label_noise_std: float = 0.0  # tasks with noisy labels override this

    def add_noise(self, ys: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Label noise N(0, label_noise_std^2), drawn from `gen` (nothing is drawn when the std is 0)."""
        if not self.label_noise_std:
            return ys
        return ys + self.label_noise_std * torch.randn(ys.shape, generator=gen, device=ys.device, dtype=ys.dtype)

    def sample(self, batch: int, n_points: int, n_dims_truncated: int, gen: torch.Generator, device):
        """One batch of prompts: xs (batch, n_points, n_dims), ys (batch, n_points)."""
        if self.pooled:
            return self.pool.sample(batch, n_points, n_dims_truncated, gen, device)
        xs = self.sample_xs(batch, n_points, n_dims_truncated, gen, device)
        params = self.sample_params(batch, n_dims_truncated, gen, device)
        return xs, self.add_noise(self.evaluate(params, xs), gen)

    def zero_error(self, n_dims_truncated: int) -> float:
        """E[y^2]: the squared error of predicting 0, used to normalize errors (1.0 = predicting zero)."""
        raise NotImplementedError

    # --- the finite training pool -------------------------------------------------------------------
    @property
    def has_pool(self) -> bool:
        return bool(getattr(self.opts, "pool_size", None) or getattr(self.opts, "prompt_pool_size", None))

    @property
    def pooled(self) -> bool:
        """Whether `sample` draws from the training pool (True for training when a pool is configured)."""
        return self.use_pool and self.has_pool

    @property
    def pool(self):
        if not self.has_pool:
            raise ValueError(
                f"{type(self).__name__} has no training pool (set task.options.pool_size or prompt_pool_size)"
            )
        if self._pool is None:
            from iclab.workloads.regression.functions.pool import TrainingPool

            self._pool = TrainingPool(self)
        return self._pool

    def without_pool(self) -> Task:
        """The same task sampling fresh functions (the test distribution); shares the pool for baselines."""
        t = copy.copy(self)
        t.use_pool = False
        return t

    def with_pool(self) -> Task:
        t = copy.copy(self)
        t.use_pool = True
        return t


def make_task(name: str, n_dims: int, options: dict | None = None) -> Task:
    """A function class by its FUNCTIONS name (the task name of a regression config)."""
    return FUNCTIONS.get(name)(n_dims, **(options or {}))
