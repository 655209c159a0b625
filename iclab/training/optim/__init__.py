"""The optimizer registry and learning-rate schedules.

One small file per family, each registering its entries in `iclab.registry.OPTIMIZERS`:

    torch_optim.py     sgd adagrad rmsprop adadelta adam adamw adafactor      (torch)
    matrix.py          muon (torch), shampoo (pytorch-optimizer), soap kl_shampoo psgd (heavyball):
                       on the 2-D hidden weights, AdamW on the rest
    schedule_free.py   adamw_schedulefree sgd_schedulefree                   (schedulefree)
    extra.py           lion lamb adan                                         (pytorch-optimizer)
    base.py            OptimizerSpec, parameter groups (Params), MultiOptimizer
    heavyball_state.py heavyball's state through safetensors checkpoints
    schedules.py       lr_factor, set_lr

Each entry declares its options as a pydantic model (typos are config errors). A new optimizer is an
`OptimizerSpec` and `OPTIMIZERS.register(name)` in one of these files (or a new one imported here).
"""

from __future__ import annotations

import torch

from iclab.registry import OPTIMIZERS
from iclab.training.optim import extra, matrix, schedule_free, torch_optim  # noqa: F401,E402  (register)
from iclab.training.optim.base import MultiOptimizer, OptimizerSpec, Params, impl_kwargs, resolve_impl  # noqa: F401
from iclab.training.optim.schedule_free import (  # noqa: F401
    eval_mode,
    eval_weights,
    eval_weights_from_state,
    is_schedule_free,
    train_mode,
    under_eval_weights,
)
from iclab.training.optim.schedules import BASE_LR, SCHEDULES, lr_factor, set_lr  # noqa: F401

__all__ = [
    "OPTIMIZERS",
    "MultiOptimizer",
    "OptimizerSpec",
    "Params",
    "impl_kwargs",
    "resolve_impl",
    "torch_optim",
    "matrix",
    "schedule_free",
    "extra",
    "eval_mode",
    "eval_weights",
    "eval_weights_from_state",
    "under_eval_weights",
    "is_schedule_free",
    "train_mode",
    "BASE_LR",
    "SCHEDULES",
    "lr_factor",
    "set_lr",
    "build_optimizer",
    "make_optimizer",
]


def build_optimizer(
    name: str, params: Params | torch.nn.Module, lr: float, options: dict | None = None, impl: str = "auto"
):
    """The registry's optimizer `name` on `params` (a model, or `Params` for hand-made parameter sets,
    e.g. a 2-D point), options checked against the entry's own, `impl` resolved for the device."""
    spec = OPTIMIZERS.get(name)
    if isinstance(params, torch.nn.Module):
        params = Params.of(params)
    device = params.named[0][1].device
    opt = spec.build(params, lr, spec.Options(**(options or {})).model_dump(), resolve_impl(spec, impl, device))
    for g in opt.param_groups:
        g[BASE_LR] = g["lr"]
    return opt


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """cfg: TrainingConfig. The implementation (`cfg.optimizer.impl`) is resolved for the model's device."""
    return build_optimizer(cfg.optimizer.name, model, cfg.lr, cfg.optimizer.options, cfg.optimizer.impl)
