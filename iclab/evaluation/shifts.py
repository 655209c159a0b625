"""Evaluation-time distribution shifts ("prompting strategies", Garg et al. 2022, Sec. 4).

A shift changes how the evaluation prompts are sampled, never the trainer: the x distribution
(`skewed`, `half_subspace`, `scaled_x`, `orthants`), the labels (`label_noise`, `scaled_y`), or the
query alone (`orthants`, `orthogonal_query`, `overlapping_query`). A query shift returns, beside the
prompt, a query point xq_i (and its label) for every position i: the prediction at i is made from the
prompt's first i points followed by xq_i.

Shifts act only on the first `n_dims` (current) coordinates; the rest stay zero. Everything is
batched on the device and drawn from the evaluation generator.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field

from iclab.evaluation.regression import Task
from iclab.registry import SHIFTS


class Prompts(NamedTuple):
    xs: torch.Tensor  # (B, n, D)
    ys: torch.Tensor  # (B, n)
    xq: torch.Tensor | None = None  # (B, n, D): query shifts: the query point of each position
    yq: torch.Tensor | None = None  # (B, n)


class NoShiftOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Shift:
    """Base: sample xs (`sample_xs`), fresh functions from the task, labels (then `transform_ys`), and for a
    query shift (`query = True`) the queries from `query_xs`."""

    Options: type[BaseModel] = NoShiftOptions
    query: bool = False

    def __init__(self, **options):
        self.opts = self.Options(**options)

    def applies_to(self, task: Task) -> str | None:
        """None, or why this shift cannot be applied to `task`."""
        return None

    def n_points(self, n_points: int, n_dims: int) -> int:
        """Positions evaluated (a shift may need fewer than asked)."""
        return n_points

    def sample_xs(self, task: Task, batch: int, n_points: int, n_dims: int, gen, device) -> torch.Tensor:
        return task.sample_xs(batch, n_points, n_dims, gen, device)

    def transform_ys(self, ys: torch.Tensor, gen) -> torch.Tensor:
        return ys

    def query_xs(self, xs: torch.Tensor, n_dims: int, gen) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, task: Task, batch: int, n_points: int, n_dims: int, gen, device) -> Prompts:
        xs = self.sample_xs(task, batch, n_points, n_dims, gen, device)
        params = task.sample_params(batch, n_dims, gen, device)
        ys = self.transform_ys(task.add_noise(task.evaluate(params, xs), gen), gen)
        if not self.query:
            return Prompts(xs, ys)
        xq = self.query_xs(xs, n_dims, gen)
        yq = self.transform_ys(task.add_noise(task.evaluate(params, xq), gen), gen)
        return Prompts(xs, ys, xq, yq)


def make_shift(name: str, options: dict | None = None) -> Shift:
    return SHIFTS.get(name)(**(options or {}))


def random_rotation(batch: int, d: int, gen, device) -> torch.Tensor:
    """Haar-random orthogonal matrices (B, d, d): QR of a Gaussian matrix with R's diagonal made positive."""
    q, r = torch.linalg.qr(torch.randn(batch, d, d, generator=gen, device=device))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


@SHIFTS.register("standard")
class Standard(Shift):
    """the training distribution (fresh functions): identical prompts to the standard evaluation"""

    def sample(self, task, batch, n_points, n_dims, gen, device):
        return Prompts(*task.sample(batch, n_points, n_dims, gen, device))


@SHIFTS.register("train_pool")
class TrainPool(Shift):
    """prompts drawn like in training from the task's finite training pool (needs pool_size/prompt_pool_size)"""

    def applies_to(self, task):
        return None if task.has_pool else "the task has no training pool"

    def sample(self, task, batch, n_points, n_dims, gen, device):
        if not task.has_pool:
            raise ValueError("shift 'train_pool' needs a task with task.options.pool_size or prompt_pool_size")
        return Prompts(*task.with_pool().sample(batch, n_points, n_dims, gen, device))


class CovarianceShift(Shift):
    """x = U diag(sqrt(lambda)) U^T z with z ~ N(0, I), U a random rotation per prompt: covariance with
    eigenvalues lambda (scaled to trace d, so E|x|^2 is unchanged) in random directions."""

    def eigenvalues(self, d: int, device) -> torch.Tensor:
        raise NotImplementedError

    def sample_xs(self, task, batch, n_points, n_dims, gen, device):
        z = task.sample_xs(batch, n_points, n_dims, gen, device)
        lam = self.eigenvalues(n_dims, device)
        lam = lam * (n_dims / lam.sum())
        u = random_rotation(batch, n_dims, gen, device)
        m = (u * lam.sqrt().unsqueeze(-2)) @ u.transpose(-1, -2)  # symmetric square root of the covariance
        xs = z.clone()
        xs[..., :n_dims] = z[..., :n_dims] @ m
        return xs


class SkewedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    power: float = Field(2.0, ge=0, description="covariance eigenvalues decay as 1/i^power (Garg et al.: 2)")


@SHIFTS.register("skewed")
class Skewed(CovarianceShift):
    """skewed covariance: eigenvalues proportional to 1/i^2, trace d, random rotation per prompt"""

    Options = SkewedOptions

    def eigenvalues(self, d, device):
        return torch.arange(1, d + 1, device=device, dtype=torch.float32).pow(-self.opts.power)


@SHIFTS.register("half_subspace")
class HalfSubspace(CovarianceShift):
    """x restricted to a random d/2-dimensional subspace (per prompt), scaled to keep E|x|^2 = d"""

    def applies_to(self, task):
        return None if task.n_dims >= 2 else "needs n_dims >= 2"

    def eigenvalues(self, d, device):
        lam = torch.zeros(d, device=device)
        lam[: max(1, d // 2)] = 1.0
        return lam


class FactorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: float = Field(2.0, gt=0, description="scale factor")


@SHIFTS.register("scaled_x")
class ScaledX(Shift):
    """x multiplied by a factor (default 2; Garg et al. also use 1/3, 1/2, 3)"""

    Options = FactorOptions

    def sample_xs(self, task, batch, n_points, n_dims, gen, device):
        return task.sample_xs(batch, n_points, n_dims, gen, device) * self.opts.factor


@SHIFTS.register("scaled_y")
class ScaledY(Shift):
    """y multiplied by a factor (for linear classes: scaled w; default 2)"""

    Options = FactorOptions

    def transform_ys(self, ys, gen):
        return ys * self.opts.factor


class NoiseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    noise_std: float = Field(1.0, gt=0, description="std of the added label noise (Garg et al.: 1)")


@SHIFTS.register("label_noise")
class LabelNoise(Shift):
    """N(0, noise_std^2) added to every label, queries included (errors are against the noisy label)"""

    Options = NoiseOptions

    def transform_ys(self, ys, gen):
        return ys + self.opts.noise_std * torch.randn(ys.shape, generator=gen, device=ys.device, dtype=ys.dtype)


@SHIFTS.register("orthants")
class Orthants(Shift):
    """prompt x's in one random orthant per prompt, the query in the opposite one (query i = -x_i)"""

    query = True

    def sample_xs(self, task, batch, n_points, n_dims, gen, device):
        z = task.sample_xs(batch, n_points, n_dims, gen, device)
        signs = torch.randint(0, 2, (batch, 1, z.shape[-1]), generator=gen, device=device).to(z.dtype) * 2 - 1
        return z.abs() * signs

    def query_xs(self, xs, n_dims, gen):
        return -xs


@SHIFTS.register("orthogonal_query")
class OrthogonalQuery(Shift):
    """query i orthogonal to x_1..x_i-1 (x_i minus its projection, rescaled to |x_i|); positions < d only

    Past d points the span fills the space, so only positions 0..d-1 are evaluated."""

    query = True

    def n_points(self, n_points, n_dims):
        return min(n_points, n_dims)

    def query_xs(self, xs, n_dims, gen):
        # Gram-Schmidt is a QR decomposition: column i of Q is x_i's part orthogonal to x_<i, normalized
        q, r = torch.linalg.qr(xs.transpose(1, 2))  # (B, D, n), (B, n, n)
        q = q.transpose(1, 2) * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-1)
        return q * xs.norm(dim=-1, keepdim=True)


@SHIFTS.register("overlapping_query")
class OverlappingQuery(Shift):
    """query i equal to one of x_1..x_i-1, chosen uniformly (position 0 keeps its own x)"""

    query = True

    def query_xs(self, xs, n_dims, gen):
        B, n, D = xs.shape
        i = torch.arange(n, device=xs.device, dtype=xs.dtype)
        j = (torch.rand(B, n, generator=gen, device=xs.device, dtype=xs.dtype) * i).long()  # uniform in [0, i)
        j = torch.minimum(j, (i.long() - 1).clamp(min=0))
        return torch.gather(xs, 1, j.unsqueeze(-1).expand(B, n, D))


#: what `iclab eval --all-shifts` evaluates (each where it applies)
DEFAULT_SHIFTS = (
    "standard",
    "skewed",
    "half_subspace",
    "label_noise",
    "orthants",
    "orthogonal_query",
    "overlapping_query",
    "scaled_x",
    "scaled_y",
    "train_pool",
)
