"""torch.optim's optimizers: SGD, Adagrad, RMSProp, Adadelta, Adam, AdamW and Adafactor.

The first six keep `decay_on: all` as their default (weight decay on every parameter, as before the
option existed), so configs and checkpoints written earlier mean what they meant; Adafactor, added
with the option, defaults to `weights`.
"""

from __future__ import annotations

import torch
from pydantic import Field

from iclab.registry import OPTIMIZERS
from iclab.training.optim.base import DECAY_HELP, DecayOn, OptimizerSpec, Opts, Params, foreach_kwarg, impl_kwargs


class SGDOptions(Opts):
    momentum: float = Field(0.0, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient")
    decay_on: DecayOn = Field("all", description=DECAY_HELP)


class AdagradOptions(Opts):
    eps: float = Field(1e-10, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    decay_on: DecayOn = Field("all", description=DECAY_HELP)


class RMSpropOptions(Opts):
    alpha: float = Field(0.99, gt=0, lt=1, description="decay of the squared-gradient average")
    eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    decay_on: DecayOn = Field("all", description=DECAY_HELP)


class AdadeltaOptions(Opts):
    rho: float = Field(0.9, gt=0, lt=1)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    decay_on: DecayOn = Field("all", description=DECAY_HELP)


class AdamOptions(Opts):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="Adam: L2 penalty in the gradient; AdamW: decoupled decay")
    decay_on: DecayOn = Field("all", description=DECAY_HELP)


class AdamWOptions(AdamOptions):
    weight_decay: float = Field(0.01, ge=0)


class AdafactorOptions(Opts):
    beta2_decay: float = Field(-0.8, le=0, description="the second-moment decay is 1 - step^beta2_decay")
    eps: tuple[float | None, float] = Field(
        (None, 1e-3), description="(eps1 in the denominator, None = dtype eps; eps2: relative step floor)"
    )
    d: float = Field(1.0, gt=0, description="update clipping threshold")
    weight_decay: float = Field(0.0, ge=0)
    decay_on: DecayOn = Field("weights", description=DECAY_HELP)


def torch_entry(cls, Options, help, fused=False, kwargs=impl_kwargs):
    def build(params: Params, lr, opts, impl):
        opts = dict(opts)
        groups = params.groups(params.named, opts.pop("weight_decay"), opts.pop("decay_on"))
        return cls(groups, lr=lr, **opts, **kwargs(impl))

    return OptimizerSpec(Options, build, help, fused, source="torch")


OPTIMIZERS.register("sgd")(
    torch_entry(torch.optim.SGD, SGDOptions, "SGD with optional (Nesterov) momentum", fused=True)
)
OPTIMIZERS.register("adagrad")(torch_entry(torch.optim.Adagrad, AdagradOptions, "Adagrad", fused=True))
OPTIMIZERS.register("rmsprop")(torch_entry(torch.optim.RMSprop, RMSpropOptions, "RMSProp"))
OPTIMIZERS.register("adadelta")(torch_entry(torch.optim.Adadelta, AdadeltaOptions, "Adadelta"))
OPTIMIZERS.register("adam")(torch_entry(torch.optim.Adam, AdamOptions, "Adam (bias-corrected)", fused=True))
OPTIMIZERS.register("adamw")(torch_entry(torch.optim.AdamW, AdamWOptions, "AdamW (decoupled weight decay)", fused=True))
OPTIMIZERS.register("adafactor")(
    torch_entry(
        torch.optim.Adafactor,
        AdafactorOptions,
        "Adafactor (factored second moments, relative step)",
        kwargs=foreach_kwarg,
    )
)
