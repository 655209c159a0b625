"""The memorization baseline (Garg et al. 2022, Sec. 4): a learner that only remembers the training
functions. At position i it picks, among the task's training pool (`task.options.pool_size` /
`prompt_pool_size`), the function with the least squared error on the i in-context examples before i,
and predicts with it (position 0 predicts 0, like every baseline). It needs the task, so evaluation
passes `task=` to baselines marked `needs_task`.
"""

from __future__ import annotations

import torch

from iclab.registry import BASELINES

MAX_ELEMENTS = 1 << 24  # rough bound on a chunk's (pool functions x prompts x points x width)


def _float_as(params, dtype):
    if isinstance(params, torch.Tensor):
        return params.to(dtype) if params.is_floating_point() else params
    return type(params)(_float_as(p, dtype) for p in params)


def memorization(xs: torch.Tensor, ys: torch.Tensor, task=None) -> torch.Tensor:
    if task is None or not task.has_pool:
        raise ValueError(
            "the memorization baseline needs a task with a training pool "
            "(task.options.pool_size or task.options.prompt_pool_size)"
        )
    fns = _float_as(task.pool.functions(xs.device), xs.dtype)
    n_fns = task.pool.n_functions
    B, n, d = xs.shape
    width = max(d, getattr(task.opts, "hidden_size", 1))
    chunk = max(1, MAX_ELEMENTS // (B * n * width))
    best_err = torch.full((B, n), float("inf"), device=xs.device, dtype=xs.dtype)
    best_pred = torch.zeros(B, n, device=xs.device, dtype=xs.dtype)
    for s in range(0, n_fns, chunk):
        c = min(chunk, n_fns - s)
        # every pool function of the chunk on every prompt: row (p, b) is function s+p on prompt b
        params = task.select(fns, torch.arange(s, s + c, device=xs.device).repeat_interleave(B))
        pred = task.evaluate(params, xs.repeat(c, 1, 1)).view(c, B, n)
        sq = (pred - ys.unsqueeze(0)).square()
        prefix = torch.cumsum(sq, dim=2) - sq  # error on the points before each position
        err, arg = prefix.min(dim=0)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_pred = torch.where(better, torch.gather(pred, 0, arg.unsqueeze(0)).squeeze(0), best_pred)
    best_pred[:, 0] = 0
    return best_pred


memorization.needs_task = True
BASELINES.register(
    "memorization", help="best function of the training pool on the prefix (needs task.options.pool_size)"
)(memorization)
