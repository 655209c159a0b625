"""What every optimizer entry shares: its spec, the parameter sets it is built on, the torch
implementation switch, and `MultiOptimizer` (a matrix optimizer on the hidden 2-D weights beside AdamW).

Parameter groups follow the literature (nanoGPT, the Muon and SOAP papers): weight decay applies to
weights only, never to norms, biases or embeddings (`decay_on: weights`), and the matrix optimizers
(Muon, Shampoo, SOAP, PSGD) take the 2-D weights of the hidden blocks while AdamW takes the rest
(read-in/out, embeddings, norms, biases).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

DecayOn = Literal["all", "weights"]
DECAY_HELP = (
    "parameters weight decay applies to: all, or weights (no decay on norms, biases and nn.Embedding "
    "tables, e.g. position/token embeddings)"
)


class Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class OptimizerSpec:
    """`build(params, lr, options, impl)` -> optimizer; `params` is a `Params`, `options` the validated
    Options as a dict, impl "fused", "foreach" or "for_loop" (resolved by `resolve_impl`).

    fused: a fused implementation exists (for the AdamW part of the matrix optimizers);
    source: the library the update rule comes from (shown by `iclab list optimizers`);
    schedule_free: the optimizer replaces the LR schedule and has train/eval weights."""

    Options: type[BaseModel]
    build: Callable
    help: str
    fused: bool = False
    source: str = "torch"
    schedule_free: bool = False


def impl_kwargs(impl: str) -> dict:
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[impl]


def foreach_kwarg(impl: str) -> dict:
    """For libraries that take only `foreach` (no fused kernel)."""
    return {"foreach": impl != "for_loop"}


def resolve_impl(spec: OptimizerSpec, impl: str, device: torch.device | str) -> str:
    """auto: fused where it exists (on this 2-core CPU, fused AdamW steps 3-5x faster than the for-loop
    and foreach ones; see benchmarks/README.md), else foreach on CUDA and for_loop on the CPU."""
    if impl != "auto":
        return impl
    if spec.fused:
        return "fused"
    return "foreach" if torch.device(device).type == "cuda" else "for_loop"


# --- which parameters go where ------------------------------------------------------------------------
Named = list[tuple[str, torch.nn.Parameter]]


@dataclass
class Params:
    """The trainable parameters by name, and the names that take no weight decay."""

    named: Named
    no_decay: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, model: torch.nn.Module) -> Params:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        emb = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        return cls(named, {n for n, p in named if p.ndim < 2 or id(p) in emb})

    def split_matrices(self, scope: str) -> tuple[Named, Named]:
        """(matrices, rest). scope hidden: the 2-D weights inside `blocks.*` (the transformer's hidden
        layers); all: every 2-D parameter that is not an embedding."""

        def is_matrix(n, p):
            return p.ndim == 2 and (n.startswith("blocks.") if scope == "hidden" else n not in self.no_decay)

        return [(n, p) for n, p in self.named if is_matrix(n, p)], [
            (n, p) for n, p in self.named if not is_matrix(n, p)
        ]

    def groups(self, named: Named, weight_decay: float, decay_on: str) -> list[dict]:
        """Param groups for `named`: one group when every parameter decays alike (decay_on=all or no
        decay at all), else the decayed weights first and the rest with weight_decay 0."""
        if decay_on == "all" or weight_decay == 0:
            return [{"params": [p for _, p in named], "weight_decay": weight_decay}]
        decay = [p for n, p in named if n not in self.no_decay]
        keep = [p for n, p in named if n in self.no_decay]
        return [
            g
            for g in ({"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0})
            if g["params"]
        ]


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


class MatrixOptions(Opts):
    """Options every matrix optimizer shares: where it applies and the AdamW beside it."""

    matrices: Literal["hidden", "all"] = Field(
        "hidden",
        description="hidden: the matrix optimizer takes the 2-D weights of the blocks, AdamW the rest; "
        "all: every 2-D non-embedding parameter (read-in/out too)",
    )
    adamw_betas: tuple[float, float] = (0.9, 0.999)
    adamw_weight_decay: float = Field(0.0, ge=0, description="weight decay of the AdamW part")
    adamw_decay_on: DecayOn = Field("weights", description=DECAY_HELP)


def build_matrix(make: Callable, lr_key: str):
    """A builder: `make(params, lr, options, impl)` on the matrices, AdamW (training.lr) on the rest; a
    part with no parameters is left out (a model without hidden blocks gets AdamW only)."""

    def build(params: Params, lr: float, opts: dict, impl: str):
        opts = dict(opts)
        mats, rest = params.split_matrices(opts.pop("matrices"))
        betas, wd, decay_on = opts.pop("adamw_betas"), opts.pop("adamw_weight_decay"), opts.pop("adamw_decay_on")
        part_lr = opts.pop(lr_key) or lr
        parts = []
        if mats:
            parts.append(make([p for _, p in mats], part_lr, opts, impl))
        if rest:
            parts.append(torch.optim.AdamW(params.groups(rest, wd, decay_on), lr=lr, betas=betas, **impl_kwargs(impl)))
        return MultiOptimizer(parts)

    return build
