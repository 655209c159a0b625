"""The compile policy of the step (`training.compile`, `training.compile_scope`).

- `compile_scope=model`: the whole forward is one static graph (the loop count is unrolled into it).
- `compile_scope=blocks` (the default scope): one graph for every transformer block, set as the model's
  `train_block_call` hook, so token dropping and the loop curriculum (a different length or loop count
  every step) cost a bounded few compiles. Models whose attention passes a K/V cache between blocks, and
  models without the hook, must compile the whole model.

The backend is `COMPILE_BACKEND` of this module (tests set "aot_eager" or "eager": the same graphs, no code
generation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from iclab.config import Config
from iclab.training.device import COMPILE_BACKEND, TrainingError

__all__ = ["COMPILE_BACKEND", "compiled_forward"]


def _run_block(block, u):
    return block(u)


def compiled_forward(model: torch.nn.Module, wrapped: torch.nn.Module, cfg: Config) -> Callable:
    """What the step calls to run the model: `wrapped` (the model, or its DDP/FSDP wrapper), compiled as
    `cfg.training` asks; with the per-block scope, `model`'s block hook is compiled instead."""
    if not cfg.training.compile:
        return wrapped
    if cfg.training.compile_scope == "model":
        return torch.compile(wrapped, backend=COMPILE_BACKEND, dynamic=False)
    if cfg.model.attention.name != "causal":
        raise TrainingError(
            f"model.attention.name={cfg.model.attention.name} passes a K/V cache between blocks, "
            "which the per-block compile hook does not take; set training.compile_scope=model"
        )
    if not hasattr(model, "train_block_call"):
        raise TrainingError(
            f"model {cfg.model.name!r} has no per-block compile hook (train_block_call); "
            "set training.compile_scope=model"
        )
    model.train_block_call = torch.compile(_run_block, backend=COMPILE_BACKEND)
    return wrapped
