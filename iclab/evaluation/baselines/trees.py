"""Tree learners of Garg et al.'s decision-tree experiments, fitted per prompt and prefix.

`decision_tree` is greedy tree learning (scikit-learn's DecisionTreeRegressor; Garg et al. show max_depth=4
and unbounded depth), `xgboost` gradient-boosted trees (xgboost.XGBRegressor, which Garg et al. use with its
defaults: 100 trees of depth 6, learning rate 0.3). Both are inherently one fit per prompt and prefix, so they
are the slow baselines: `positions` fits only where asked, `n_jobs` fits prompts in parallel threads.
The prompts are handed to the libraries as they are (float32 usually), as a direct call would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from pydantic import Field

from iclab.evaluation.baselines.base import PositionsOptions, positions_or_all, register


class _PerPromptOptions(PositionsOptions):
    n_jobs: int = Field(1, ge=-1, description="prompts fitted in parallel threads (-1: all cores)")


def _per_prompt(xs: torch.Tensor, ys: torch.Tensor, positions, n_jobs: int, make: Callable[[], object]) -> torch.Tensor:
    """pred[b, i] = make().fit(x[b, :i], y[b, :i]).predict(x[b, i]) at the requested positions, NaN elsewhere."""
    B, n, _ = xs.shape
    pos = positions_or_all(positions, n)
    X, Y = xs.detach().cpu().numpy(), ys.detach().cpu().numpy()
    out = np.full((B, n), np.nan, dtype=np.float64)

    def one(b: int) -> None:
        for i in pos:
            out[b, i] = 0.0 if i == 0 else float(make().fit(X[b, :i], Y[b, :i]).predict(X[b, i : i + 1])[0])

    workers = (os.cpu_count() or 1) if n_jobs == -1 else max(1, n_jobs)
    if workers == 1 or B == 1:
        for b in range(B):
            one(b)
    else:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            list(ex.map(one, range(B)))
    return torch.from_numpy(out).to(device=ys.device, dtype=ys.dtype)


class DecisionTreeOptions(_PerPromptOptions):
    max_depth: int | None = Field(None, gt=0, description="depth limit (None: grow until leaves are pure)")
    random_state: int = Field(0, description="scikit-learn's tie-breaking among equally good splits")


@register("decision_tree", DecisionTreeOptions, help="greedy tree learning (sklearn DecisionTreeRegressor) per prefix")
def decision_tree(
    xs, ys, max_depth: int | None = None, random_state: int = 0, n_jobs: int = 1, positions: list[int] | None = None
):
    from sklearn.tree import DecisionTreeRegressor

    return _per_prompt(
        xs, ys, positions, n_jobs, lambda: DecisionTreeRegressor(max_depth=max_depth, random_state=random_state)
    )


class XGBoostOptions(_PerPromptOptions):
    n_estimators: int = Field(100, gt=0, description="boosting rounds (xgboost's default)")
    max_depth: int = Field(6, gt=0, description="depth of each tree (xgboost's default)")
    learning_rate: float = Field(0.3, gt=0, description="shrinkage (xgboost's default)")


@register("xgboost", XGBoostOptions, help="gradient-boosted trees (xgboost.XGBRegressor, its defaults) per prefix")
def xgboost(
    xs,
    ys,
    n_estimators: int = 100,
    max_depth: int = 6,
    learning_rate: float = 0.3,
    n_jobs: int = 1,
    positions: list[int] | None = None,
):
    import xgboost as xgb

    return _per_prompt(
        xs,
        ys,
        positions,
        n_jobs,
        lambda: xgb.XGBRegressor(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate, n_jobs=1),
    )
