"""Lion, LAMB and Adan from pytorch-optimizer (Kim, `pytorch_optimizer`)."""

from __future__ import annotations

from pydantic import Field

from iclab.registry import OPTIMIZERS
from iclab.training.optim.base import DECAY_HELP, DecayOn, OptimizerSpec, Opts, Params, foreach_kwarg


class LionOptions(Opts):
    betas: tuple[float, float] = Field((0.9, 0.99), description="(interpolation for the sign, momentum EMA)")
    weight_decay: float = Field(0.0, ge=0, description="decoupled; Lion wants ~3-10x AdamW's with a 3-10x smaller lr")
    decay_on: DecayOn = Field("weights", description=DECAY_HELP)


class LambOptions(Opts):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="decoupled")
    decay_on: DecayOn = Field("weights", description=DECAY_HELP)
    max_grad_norm: float = Field(1.0, ge=0, description="LAMB's own global gradient-norm clip (0: off)")
    adam: bool = Field(False, description="true: no layer-wise trust ratio (plain Adam)")


class AdanOptions(Opts):
    betas: tuple[float, float, float] = Field(
        (0.98, 0.92, 0.99), description="EMAs of g, the gradient difference, and the squared Nesterov gradient"
    )
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    weight_decouple: bool = False
    decay_on: DecayOn = Field("weights", description=DECAY_HELP)
    max_grad_norm: float = Field(0.0, ge=0, description="Adan's own gradient-norm clip (0: off)")


def _entry(cls_name, Options, help, foreach=True):
    def build(params: Params, lr, opts, impl):
        import pytorch_optimizer

        opts = dict(opts)
        groups = params.groups(params.named, opts.pop("weight_decay"), opts.pop("decay_on"))
        return getattr(pytorch_optimizer, cls_name)(groups, lr=lr, **opts, **(foreach_kwarg(impl) if foreach else {}))

    return OptimizerSpec(Options, build, help, source="pytorch-optimizer")


OPTIMIZERS.register("lion")(_entry("Lion", LionOptions, "Lion (sign of interpolated momentum)"))
OPTIMIZERS.register("lamb")(_entry("Lamb", LambOptions, "LAMB (Adam with a layer-wise trust ratio)"))
OPTIMIZERS.register("adan")(_entry("Adan", AdanOptions, "Adan (adaptive Nesterov momentum)"))
