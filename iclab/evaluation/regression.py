"""Evaluation: normalized squared error per in-context position, for the model and the baselines,
on the same prompts; and error per loop iteration for looped models.

eval.json schema (see README.md):
    {"task": str, "n_dims": int, "n_points": int, "n_prompts": int, "loops": int, "seed": int,
     "normalization": float,                      # squared error of predicting 0; errors are divided by it
     "model": {"mean": [n_points floats], "ci95": [n_points floats]},
     "baselines": {label: {"mean": [...], "ci95": [...]}, ...},   # label: the name, or an entry's label
     "step": int | null}
Position i (0-based) is the prediction of y_{i+1} after seeing i examples. A baseline evaluated only at some
`positions` has null at the others.

loops.json (looped models):
    {"loops": [1..M], "last_point": [M floats], "all_points": [M floats],   # normalized error of iteration t
     "n_points": int, "n_dims": int, "n_prompts": int, "seed": int, "trained_loops": int}
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from iclab.evaluation.baselines import check_positions, resolve


class Task(Protocol):
    """What an evaluation needs of a function class (iclab/workloads/regression/functions/base.py: Task,
    which the workloads pass in; evaluation does not import the workloads)."""

    n_dims: int

    def sample(self, batch: int, n_points: int, n_dims_truncated: int, gen: torch.Generator, device): ...

    def zero_error(self, n_dims_truncated: int) -> float: ...


def eval_generator(seed: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def summarize(err: torch.Tensor, positions: list[int] | None = None) -> dict:
    """err: (N, n) normalized squared errors -> mean and 95% half-width per position (null outside
    `positions` when given)."""
    err = err.double()
    mean = err.mean(0)
    ci = 1.96 * err.std(0, unbiased=True) / math.sqrt(err.shape[0]) if err.shape[0] > 1 else torch.zeros_like(mean)
    out = {"mean": mean.cpu().tolist(), "ci95": ci.cpu().tolist()}
    if positions is not None:
        keep = set(positions)
        out = {k: [x if i in keep else None for i, x in enumerate(v)] for k, v in out.items()}
    return out


@torch.no_grad()
def per_iteration_predictions(
    model, xs: torch.Tensor, ys: torch.Tensor, loops: int | None = None, window: int = 1
) -> torch.Tensor:
    """(window, B, n): the predictions of the last `window` of `loops` iterations at every position, where
    position i is predicted from the prompt cut after x_{i+1} (the query after i examples).

    Without token dropping one forward pass gives this for every position (attention is causal). With
    token dropping a pass predicts only the points its kept tokens hold, from a window anchored at the
    prompt's end, so every prefix of the prompt runs as a prompt of its own (n passes)."""
    n = xs.shape[1]
    preds = model(xs, ys, loops=loops, window=window)
    if all(p.shape[1] == n for p in preds):  # nothing was dropped, not even in the iterations before the window
        return torch.stack(preds)
    out = xs.new_empty(len(preds), xs.shape[0], n)
    out[:, :, -1] = torch.stack([p[:, -1] for p in preds])
    for i in range(n - 1):
        out[:, :, i] = torch.stack(
            [p[:, -1] for p in model(xs[:, : i + 1], ys[:, : i + 1], loops=loops, window=window)]
        )
    return out


def model_predictions(model, xs, ys, loops: int | None = None) -> torch.Tensor:
    """Final-iteration prediction at every position (B, n), each from the prompt cut after its query."""
    return per_iteration_predictions(model, xs, ys, loops, window=1)[-1]


@torch.no_grad()
def evaluate(
    model,
    task: Task,
    *,
    n_prompts: int,
    n_points: int,
    n_dims: int | None = None,
    loops: int | None = None,
    baselines: list = (),
    seed: int = 12345,
    batch_size: int = 500,
    device="cpu",
) -> dict:
    model.eval()
    n_dims = n_dims or task.n_dims
    gen = eval_generator(seed, device)
    norm = task.zero_error(n_dims)
    resolved = resolve(baselines)  # names or {name, options, label} mappings
    check_positions(resolved, n_points)
    model_errs: list[torch.Tensor] = []
    errs: dict[str, list[torch.Tensor]] = {b.label: [] for b in resolved}
    for s in range(0, n_prompts, batch_size):
        bs = min(batch_size, n_prompts - s)
        xs, ys = task.sample(bs, n_points, n_dims, gen, device)
        model_errs.append((model_predictions(model, xs, ys, loops) - ys).pow(2) / norm)
        for b in resolved:
            errs[b.label].append((b(xs, ys, task) - ys).pow(2) / norm)
    positions = {b.label: b.positions for b in resolved}
    summ = {k: summarize(torch.cat(v), positions[k]) for k, v in errs.items()}
    return {
        "task": type(task).__name__,
        "n_dims": n_dims,
        "n_points": n_points,
        "n_prompts": n_prompts,
        "loops": loops or model.cfg.loops,
        "seed": seed,
        "normalization": norm,
        "model": summarize(torch.cat(model_errs)),
        "baselines": summ,
    }


@torch.no_grad()
def evaluate_loops(
    model,
    task: Task,
    *,
    max_loops: int,
    n_prompts: int,
    n_points: int,
    n_dims: int | None = None,
    seed: int = 12345,
    batch_size: int = 500,
    device="cpu",
) -> dict:
    """Error of each loop iteration 1..max_loops, averaged over prompts: at the last point (the query after
    n_points - 1 examples) and averaged over all positions (each from its own prefix, as in `evaluate`).
    One forward pass gives every iteration (n passes with token dropping)."""
    model.eval()
    n_dims = n_dims or task.n_dims
    gen = eval_generator(seed, device)
    norm = task.zero_error(n_dims)
    last = torch.zeros(max_loops, dtype=torch.float64, device=device)
    mean = torch.zeros(max_loops, dtype=torch.float64, device=device)
    for s in range(0, n_prompts, batch_size):
        bs = min(batch_size, n_prompts - s)
        xs, ys = task.sample(bs, n_points, n_dims, gen, device)
        err = (per_iteration_predictions(model, xs, ys, max_loops, window=max_loops) - ys).pow(2).double() / norm
        last += err[:, :, -1].sum(1)
        mean += err.mean(2).sum(1)
    return {
        "loops": list(range(1, max_loops + 1)),
        "last_point": (last / n_prompts).cpu().tolist(),
        "all_points": (mean / n_prompts).cpu().tolist(),
        "n_points": n_points,
        "n_dims": n_dims,
        "n_prompts": n_prompts,
        "seed": seed,
        "trained_loops": model.cfg.loops,
    }
