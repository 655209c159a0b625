"""Kept for imports written before the registry became a package: see `iclab/training/optim/`."""

from iclab.registry import OPTIMIZERS  # noqa: F401
from iclab.training.optim import (  # noqa: F401
    MultiOptimizer,
    OptimizerSpec,
    Params,
    build_optimizer,
    eval_weights,
    impl_kwargs,
    lr_factor,
    make_optimizer,
    resolve_impl,
    set_lr,
    train_mode,
)

__all__ = [
    "OPTIMIZERS",
    "MultiOptimizer",
    "OptimizerSpec",
    "Params",
    "build_optimizer",
    "eval_weights",
    "impl_kwargs",
    "lr_factor",
    "make_optimizer",
    "resolve_impl",
    "set_lr",
    "train_mode",
]
