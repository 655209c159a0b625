"""Schedule-free AdamW and SGD (Defazio et al. 2024, the `schedulefree` library).

A schedule-free optimizer keeps two sequences: it steps at y (train mode) and its answer is the average x
(eval mode); `opt.train()` / `opt.eval()` move the parameters between them. iclab's rules:

- the trainer puts the optimizer in train mode before every step (`train_mode`);
- metrics evaluated while training (`Workload.log_metrics`) see x through `eval_weights`, which puts
  the train-mode parameters back bit for bit afterwards (the x <-> y lerps do not round-trip exactly), so
  a run does not depend on how often it logs;
- checkpoints hold the train-mode parameters and the optimizer state (z, the weight sum), so resume is
  exact; a finished run ends in eval mode, so `model.safetensors` and `eval.json` are x; evaluating a
  run that has only checkpoints recovers x from them (`eval_weights_from_state`).

They replace the learning-rate schedule: they need `training.schedule: constant`; their warmup is the
optimizer's own `warmup_steps` option.
"""

from __future__ import annotations

import contextlib

import torch
from pydantic import Field

from iclab.registry import OPTIMIZERS
from iclab.training.optim.base import DECAY_HELP, DecayOn, OptimizerSpec, Opts, Params, foreach_kwarg


class _SFOptions(Opts):
    weight_decay: float = Field(0.0, ge=0, description="applied at y, as the library does")
    decay_on: DecayOn = Field("weights", description=DECAY_HELP)
    warmup_steps: int = Field(
        0, ge=0, description="linear LR warmup inside the optimizer (use this, not training.warmup_steps)"
    )
    r: float = Field(0.0, ge=0, description="polynomial weighting power of the average")
    weight_lr_power: float = Field(2.0, ge=0, description="weight of each iterate in the average is lr^power")


class AdamWScheduleFreeOptions(_SFOptions):
    betas: tuple[float, float] = Field((0.9, 0.999), description="beta1 interpolates between x and z")
    eps: float = Field(1e-8, gt=0)


class SGDScheduleFreeOptions(_SFOptions):
    momentum: float = Field(0.9, gt=0, lt=1, description="interpolation between x and z (the library's 'momentum')")


def _entry(cls_name, Options, help):
    def build(params: Params, lr, opts, impl):
        import schedulefree

        opts = dict(opts)
        groups = params.groups(params.named, opts.pop("weight_decay"), opts.pop("decay_on"))
        return getattr(schedulefree, cls_name)(groups, lr=lr, **opts, **foreach_kwarg(impl))

    return OptimizerSpec(Options, build, help, source="schedulefree", schedule_free=True)


OPTIMIZERS.register("adamw_schedulefree")(
    _entry(
        "AdamWScheduleFree",
        AdamWScheduleFreeOptions,
        "Schedule-free AdamW (no LR schedule; evaluated at the average x)",
    )
)
OPTIMIZERS.register("sgd_schedulefree")(
    _entry("SGDScheduleFree", SGDScheduleFreeOptions, "Schedule-free SGD (no LR schedule; evaluated at the average x)")
)


def _parts(opt):
    return getattr(opt, "optimizers", [opt])


def is_schedule_free(opt) -> bool:
    return any(g.get("train_mode") is not None and hasattr(o, "eval") for o in _parts(opt) for g in o.param_groups)


def train_mode(opt) -> None:
    """Put a schedule-free optimizer in train mode (no-op for any other optimizer, or when already there)."""
    if is_schedule_free(opt):
        for o in _parts(opt):
            o.train()


def eval_mode(opt) -> None:
    """Move a schedule-free optimizer's parameters to x (no-op for any other optimizer)."""
    if is_schedule_free(opt):
        for o in _parts(opt):
            o.eval()


@contextlib.contextmanager
def eval_weights(opt):
    """Inside: the parameters are x (eval mode); after: exactly the train-mode parameters they were."""
    if not is_schedule_free(opt):
        yield
        return
    params = [p for g in opt.param_groups for p in g["params"]]
    saved = [p.detach().clone() for p in params]
    eval_mode(opt)
    try:
        yield
    finally:
        train_mode(opt)
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def eval_weights_from_state(model: torch.nn.Module, training_cfg, optim_state: dict) -> None:
    """Turn a model loaded from a checkpoint (train-mode weights) into its eval-mode weights, using the
    checkpoint's optimizer state; no-op unless the run's optimizer is schedule-free."""
    from iclab.registry import OPTIMIZERS
    from iclab.training.optim import make_optimizer

    if not OPTIMIZERS.get(training_cfg.optimizer.name).schedule_free:
        return
    opt = make_optimizer(model, training_cfg)
    opt.load_state_dict(optim_state)
    eval_mode(opt)


def under_eval_weights(opt, fn, *args, **kwargs):
    """fn(*args, **kwargs) with the eval-mode weights (`eval_weights`)."""
    with eval_weights(opt):
        return fn(*args, **kwargs)
