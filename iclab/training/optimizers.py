"""Optimizer registry and learning-rate schedules.

Each entry declares its options (a pydantic model, so typos are config errors) and a builder that
receives the model's named parameters. `muon` puts torch.optim.Muon on the 2-D weights of the hidden
blocks and AdamW on everything else (embeddings, read-in/out, norms, biases), as Muon's documentation
recommends. A new optimizer is one `OptimizerSpec` plus `OPTIMIZERS.register`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field

from iclab.registry import OPTIMIZERS


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SGDOptions(_Opts):
    momentum: float = Field(0.0, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)


class AdagradOptions(_Opts):
    eps: float = Field(1e-10, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class RMSpropOptions(_Opts):
    alpha: float = Field(0.99, gt=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)


class AdadeltaOptions(_Opts):
    rho: float = Field(0.9, gt=0, lt=1)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class AdamOptions(_Opts):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class AdamWOptions(AdamOptions):
    weight_decay: float = Field(0.01, ge=0)


class MuonOptions(_Opts):
    momentum: float = Field(0.95, ge=0, lt=1)
    nesterov: bool = True
    ns_steps: int = Field(5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    adjust_lr_fn: str = Field("match_rms_adamw", pattern="^(original|match_rms_adamw)$")
    muon_lr: float | None = Field(None, gt=0, description="lr of the Muon part (default: training.lr)")
    adamw_betas: tuple[float, float] = (0.9, 0.999)
    adamw_weight_decay: float = Field(0.0, ge=0)


@dataclass
class OptimizerSpec:
    """`build(named_params, lr, options, impl)`; impl is "fused", "foreach" or "for_loop" (resolved by
    `resolve_impl`; `impl_kwargs` turns it into torch's keyword arguments). `fused`: whether a fused
    implementation exists."""

    Options: type[BaseModel]
    build: Callable[[list[tuple[str, torch.nn.Parameter]], float, dict, str], torch.optim.Optimizer]
    help: str
    fused: bool = False


def impl_kwargs(impl: str) -> dict:
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[impl]


def resolve_impl(spec: OptimizerSpec, impl: str, device: torch.device | str) -> str:
    """auto: fused where it exists (on this 2-core CPU, fused AdamW steps 3-5x faster than the for-loop
    and foreach ones; see benchmarks/README.md), else foreach on CUDA and for_loop on the CPU."""
    if impl != "auto":
        return impl
    if spec.fused:
        return "fused"
    return "foreach" if torch.device(device).type == "cuda" else "for_loop"




def _simple(cls, Options, help, fused=False):
    def build(named, lr, opts, impl):
        return cls([p for _, p in named], lr=lr, **opts, **impl_kwargs(impl))

    return OptimizerSpec(Options, build, help, fused)


OPTIMIZERS.register("sgd")(_simple(torch.optim.SGD, SGDOptions, "SGD with optional (Nesterov) momentum", fused=True))
OPTIMIZERS.register("adagrad")(_simple(torch.optim.Adagrad, AdagradOptions, "Adagrad", fused=True))
OPTIMIZERS.register("rmsprop")(_simple(torch.optim.RMSprop, RMSpropOptions, "RMSProp"))
OPTIMIZERS.register("adadelta")(_simple(torch.optim.Adadelta, AdadeltaOptions, "Adadelta"))
OPTIMIZERS.register("adam")(_simple(torch.optim.Adam, AdamOptions, "Adam (bias-corrected)", fused=True))
OPTIMIZERS.register("adamw")(_simple(torch.optim.AdamW, AdamWOptions, "AdamW (decoupled weight decay)", fused=True))


class MultiOptimizer:
    """Several optimizers stepping together, seen as one (param_groups concatenated)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        # read through every time: each part's load_state_dict replaces its param_groups with new dicts
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self, closure=None):
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, sd):
        if len(sd.get("optimizers", [])) != len(self.optimizers):
            raise ValueError("optimizer state has a different number of parts")
        for o, s in zip(self.optimizers, sd["optimizers"]):
            o.load_state_dict(s)


def _is_hidden_matrix(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim == 2 and name.startswith("blocks.")


def _build_muon(named, lr, opts, impl):
    hidden = [p for n, p in named if _is_hidden_matrix(n, p)]
    rest = [p for n, p in named if not _is_hidden_matrix(n, p)]
    muon = torch.optim.Muon(
        hidden, lr=opts["muon_lr"] or lr, momentum=opts["momentum"], nesterov=opts["nesterov"],
        ns_steps=opts["ns_steps"], weight_decay=opts["weight_decay"], adjust_lr_fn=opts["adjust_lr_fn"],
    )
    adamw = torch.optim.AdamW(rest, lr=lr, betas=opts["adamw_betas"], weight_decay=opts["adamw_weight_decay"],
                              **impl_kwargs(impl))
    return MultiOptimizer([muon, adamw])


# `fused` applies to its AdamW part (torch's Muon has a single implementation)
OPTIMIZERS.register("muon")(OptimizerSpec(MuonOptions, _build_muon, "Muon on 2-D hidden weights, AdamW on the rest", fused=True))


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """cfg: TrainingConfig. The implementation (`cfg.optimizer.impl`) is resolved for the model's device."""
    spec = OPTIMIZERS.get(cfg.optimizer.name)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    device = next(model.parameters()).device
    impl = resolve_impl(spec, cfg.optimizer.impl, device)
    opt = spec.build(named, cfg.lr, spec.Options(**cfg.optimizer.options).model_dump(), impl)
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]
    return opt


def lr_factor(cfg, step: int) -> float:
    """Multiplier of the base learning rate at `step` (cfg: TrainingConfig). A pure function of the step."""
    if cfg.schedule == "constant":
        return 1.0
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "warmup_stable_decay":
        decay = max(1, round(cfg.decay_fraction * cfg.steps))
        p = min(1.0, max(0.0, (step - (cfg.steps - decay)) / decay))
        return 1.0 - (1 - cfg.min_lr_ratio) * p
    span = max(1, cfg.steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor
