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
function and Python sets: `_heavyball_checkpointable` drops the pickle (the schedule is rebuilt from the
options) and stores sets as sorted lists, so the state goes into a safetensors checkpoint and nothing is
ever unpickled.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from iclab.registry import OPTIMIZERS
from iclab.training.optim.base import DecayOn, DECAY_HELP, MatrixOptions, OptimizerSpec, build_matrix

_SET = "__iclab_set__"


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
    return torch.optim.Muon(params, lr=lr, momentum=o["momentum"], nesterov=o["nesterov"], ns_steps=o["ns_steps"],
                            weight_decay=o["weight_decay"], adjust_lr_fn=o["adjust_lr_fn"])


# `fused` applies to the AdamW part (torch's Muon has a single implementation)
OPTIMIZERS.register("muon")(OptimizerSpec(MuonOptions, build_matrix(_muon, "muon_lr"),
                                          "Muon on 2-D hidden weights, AdamW on the rest", fused=True, source="torch"))


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


OPTIMIZERS.register("shampoo")(OptimizerSpec(
    ShampooOptions, build_matrix(_shampoo, "matrix_lr"), "Shampoo (L^-1/4 G R^-1/4) on 2-D hidden weights, AdamW on "
    "the rest", fused=True, source="pytorch-optimizer"))


# --- heavyball: soap, kl_shampoo, psgd ----------------------------------------------------------------------
class _HeavyballOptions(MatrixOptions):
    compile: bool = Field(False, description="torch.compile heavyball's kernels (sets heavyball.utils.compile_mode "
                          "for the process); false runs eagerly")
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
        None, gt=0, le=1, description="None: heavyball's schedule (every step for 1000 steps, then annealed to 0.03)")


def _heavyball(cls_name):
    def make(params, lr, o, impl):
        import heavyball
        import heavyball.utils

        o = dict(o)
        heavyball.utils.compile_mode = "max-autotune-no-cudagraphs" if o.pop("compile") else None
        if o.get("preconditioner_update_probability", 0) is None:
            o.pop("preconditioner_update_probability")
        opt = getattr(heavyball, cls_name)(params, lr=lr, multi_tensor=impl != "for_loop", **o)
        return _heavyball_checkpointable(opt)

    return make


def _heavyball_checkpointable(opt):
    def save(opt_, sd):
        sd.get("heavyball", {}).pop("precond_schedule", None)  # a pickle; rebuilt from the options
        sd["state"] = _sets_to_lists(sd["state"])
        seen: set[int] = set()  # a group's step_count is the same tensor as a state's step: one copy each
        for g in sd["param_groups"]:
            for k, v in g.items():
                if isinstance(v, torch.Tensor):
                    seen.add(id(v))
        sd["state"] = _unalias(sd["state"], seen)

    def load(opt_, sd):
        sd = dict(sd)
        if "heavyball" in sd:
            sd["heavyball"] = {k: v for k, v in sd["heavyball"].items() if k != "precond_schedule"}  # never unpickle
        sd["state"] = _lists_to_sets(sd["state"])
        pending["state"] = sd["state"]
        return sd

    def restore_dtypes(opt_):
        # torch's load_state_dict casts every state tensor but "step" to its parameter's dtype; PSGD keeps
        # float64 running bounds beside float32 weights: put the saved dtypes back
        params = [p for g in opt_.param_groups for p in g["params"]]
        for idx, saved in pending.pop("state", {}).items():
            _copy_dtypes(opt_.state[params[idx]], saved)

    pending: dict = {}
    opt.register_state_dict_post_hook(save)
    opt.register_load_state_dict_pre_hook(load, prepend=True)
    opt.register_load_state_dict_post_hook(restore_dtypes)
    return opt


def _copy_dtypes(target, saved):
    items = target.items() if isinstance(target, dict) else enumerate(target) if isinstance(target, list) else ()
    for k, v in items:
        s = saved[k]
        if isinstance(v, torch.Tensor) and isinstance(s, torch.Tensor) and v.dtype != s.dtype:
            target[k] = s.to(device=v.device, copy=True)
        elif isinstance(v, (dict, list)):
            _copy_dtypes(v, s)


def _sets_to_lists(x):
    if isinstance(x, (set, frozenset)):
        return {_SET: sorted(x, key=repr)}
    if isinstance(x, dict):
        return {k: _sets_to_lists(v) for k, v in x.items()}
    return x


def _unalias(x, seen: set[int]):
    if isinstance(x, torch.Tensor):
        if id(x) in seen:
            return x.clone()
        seen.add(id(x))
        return x
    if isinstance(x, dict):
        return {k: _unalias(v, seen) for k, v in x.items()}
    return x


def _lists_to_sets(x):
    if isinstance(x, dict):
        if set(x) == {_SET}:
            return set(x[_SET])
        return {k: _lists_to_sets(v) for k, v in x.items()}
    return x


_HEAVY = "on 2-D hidden weights, AdamW on the rest"
OPTIMIZERS.register("soap")(OptimizerSpec(SOAPOptions, build_matrix(_heavyball("SOAP"), "matrix_lr"),
                                          f"SOAP (Adam in Shampoo's eigenbasis) {_HEAVY}", fused=True, source="heavyball"))
OPTIMIZERS.register("kl_shampoo")(OptimizerSpec(KLShampooOptions,
                                                build_matrix(_heavyball("KLShampoo"), "matrix_lr"),
                                                f"KL-Shampoo {_HEAVY}", fused=True, source="heavyball"))
OPTIMIZERS.register("psgd")(OptimizerSpec(PSGDOptions, build_matrix(_heavyball("PSGDKron"), "matrix_lr"),
                                          f"PSGD with Kronecker-factored preconditioner {_HEAVY}", fused=True,
                                          source="heavyball"))
