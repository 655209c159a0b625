"""Matrix optimizers on the 2-D weights of the hidden blocks, AdamW on the rest (`base.build_matrix`).

- muon: torch.optim.Muon, the orthogonalized momentum U V^T (Newton-Schulz).
- shampoo: pytorch-optimizer's Shampoo (Gupta, Koren & Singer 2018): accumulated L = sum G G^T and
  R = sum G^T G, update L^-1/4 G R^-1/4 (the lecture's rule; heavyball 3.x ships no plain Shampoo).
- kl_shampoo: heavyball's KL-Shampoo (Kronecker factors fitted by KL minimization, 2025).
- soap: heavyball's SOAP (Vyas et al. 2024): Adam in Shampoo's eigenbasis.
- psgd: heavyball's PSGDKron (Li 2015; Kronecker-factored preconditioner fitted online).

heavyball compiles its kernels with torch.compile unless `heavyball.utils.compile_mode` is None; the
`compile` option (default false: eager, which works on any CPU without a C++ toolchain and starts at
once) sets that switch for the whole process. heavyball's state_dict carries a pickled schedule
function and Python sets: `heavyball_state.checkpointable` makes it fit a safetensors checkpoint, and
nothing is ever unpickled.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from pydantic import Field

from iclab.registry import OPTIMIZERS
from iclab.training.optim.base import DECAY_HELP, DecayOn, MatrixOptions, OptimizerSpec, build_matrix
from iclab.training.optim.heavyball_state import checkpointable


# --- muon ------------------------------------------------------------------------------------------------
class MuonOptions(MatrixOptions):
    momentum: float = Field(0.95, ge=0, lt=1)
    nesterov: bool = True
    ns_steps: int = Field(5, gt=0, description="Newton-Schulz iterations")
    weight_decay: float = Field(0.0, ge=0)
    adjust_lr_fn: str = Field("match_rms_adamw", pattern="^(original|match_rms_adamw)$")
    muon_lr: float | None = Field(None, gt=0, description="lr of the Muon part (default: training.lr)")
    adamw_decay_on: DecayOn = Field("all", description=DECAY_HELP + " (muon keeps all, its default before the option)")


def _muon(params, lr, o, impl):
    return torch.optim.Muon(
        params,
        lr=lr,
        momentum=o["momentum"],
        nesterov=o["nesterov"],
        ns_steps=o["ns_steps"],
        weight_decay=o["weight_decay"],
        adjust_lr_fn=o["adjust_lr_fn"],
    )


# `fused` applies to the AdamW part (torch's Muon has a single implementation)
OPTIMIZERS.register("muon")(
    OptimizerSpec(
        MuonOptions,
        build_matrix(_muon, "muon_lr"),
        "Muon on 2-D hidden weights, AdamW on the rest",
        fused=True,
        source="torch",
    )
)


# --- shampoo (pytorch-optimizer) -----------------------------------------------------------------------------
class ShampooOptions(MatrixOptions):
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    weight_decouple: bool = Field(False, description="decoupled (AdamW-style) weight decay")
    preconditioning_compute_steps: int = Field(1, gt=0, description="recompute L^-1/4, R^-1/4 every this many steps")
    matrix_eps: float = Field(1e-6, gt=0, description="L and R start at eps * I")
    matrix_lr: float | None = Field(None, gt=0, description="lr of the Shampoo part (default: training.lr)")


def _shampoo(params, lr, o, impl):
    from pytorch_optimizer import Shampoo

    return Shampoo(params, lr=lr, **o)


OPTIMIZERS.register("shampoo")(
    OptimizerSpec(
        ShampooOptions,
        build_matrix(_shampoo, "matrix_lr"),
        "Shampoo (L^-1/4 G R^-1/4) on 2-D hidden weights, AdamW on the rest",
        fused=True,
        source="pytorch-optimizer",
    )
)


# --- heavyball: soap, kl_shampoo, psgd ----------------------------------------------------------------------
class _HeavyballOptions(MatrixOptions):
    compile: bool = Field(
        False,
        description="torch.compile heavyball's kernels (sets heavyball.utils.compile_mode "
        "for the process); false runs eagerly",
    )
    matrix_lr: float | None = Field(None, gt=0, description="lr of the matrix part (default: training.lr)")


class SOAPOptions(_HeavyballOptions):
    betas: tuple[float, float] = (0.9, 0.95)
    shampoo_beta: float = Field(0.95, ge=0, lt=1, description="EMA of the Kronecker factors")
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    precondition_frequency: int = Field(2, gt=0, description="eigenbasis refreshed every this many steps")
    max_precond_dim: int = Field(2048, gt=0, description="dimensions above this get no preconditioner")


class KLShampooOptions(SOAPOptions):
    """SOAP's options (heavyball's defaults are the same)."""


class PSGDOptions(_HeavyballOptions):
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    max_size_triangular: int = Field(2048, gt=0, description="factors of larger dimensions are diagonal")
    memory_save_mode: Literal["one_diag", "smart_one_diag", "all_diag"] | None = None
    precond_lr: float = Field(0.1, gt=0, description="step size of the preconditioner fit")
    preconditioner_update_probability: float | None = Field(
        None, gt=0, le=1, description="None: heavyball's schedule (every step for 1000 steps, then annealed to 0.03)"
    )


warnings.filterwarnings("ignore", message="Learning rate changed between steps", module="heavyball")  # our schedules


def _heavyball(cls_name):
    def make(params, lr, o, impl):
        import heavyball
        import heavyball.utils

        o = dict(o)
        heavyball.utils.compile_mode = "max-autotune-no-cudagraphs" if o.pop("compile") else None
        if o.get("preconditioner_update_probability", 0) is None:
            o.pop("preconditioner_update_probability")
        # multi_tensor: heavyball supports a changing lr (our schedules) only with it; impl sets the AdamW part's
        opt = getattr(heavyball, cls_name)(params, lr=lr, multi_tensor=True, **o)
        return checkpointable(opt)

    return make


_HEAVY = "on 2-D hidden weights, AdamW on the rest"
OPTIMIZERS.register("soap")(
    OptimizerSpec(
        SOAPOptions,
        build_matrix(_heavyball("SOAP"), "matrix_lr"),
        f"SOAP (Adam in Shampoo's eigenbasis) {_HEAVY}",
        fused=True,
        source="heavyball",
    )
)
OPTIMIZERS.register("kl_shampoo")(
    OptimizerSpec(
        KLShampooOptions,
        build_matrix(_heavyball("KLShampoo"), "matrix_lr"),
        f"KL-Shampoo {_HEAVY}",
        fused=True,
        source="heavyball",
    )
)
OPTIMIZERS.register("psgd")(
    OptimizerSpec(
        PSGDOptions,
        build_matrix(_heavyball("PSGDKron"), "matrix_lr"),
        f"PSGD with Kronecker-factored preconditioner {_HEAVY}",
        fused=True,
        source="heavyball",
    )
)
