"""Weight layouts: iclab's GPT, Hugging Face GPT-2 and nanoGPT (with the seed's Reflex variant of it).

The three are one architecture (pre-LN GPT-2: learned positions, biases, LN eps 1e-5, MLP 4C, tied LM
head); the tensors differ only in their names and in one transpose:

    iclab (iclab/models/transformer.py)   HF GPT2LMHeadModel                    nanoGPT model.py
    wte.weight            (V, C)          transformer.wte.weight                 transformer.wte.weight (= lm_head)
    wpe.weight            (P, C)          transformer.wpe.weight                 transformer.wpe.weight
    blocks.i.ln_1.*                       transformer.h.i.ln_1.*                 transformer.h.i.ln_1.*
    blocks.i.attn.c_attn.weight (3C, C)   transformer.h.i.attn.c_attn.weight     (3C, C) as iclab
                                          (C, 3C): Conv1D stores (in, out)
    blocks.i.attn.c_proj, mlp.c_fc, mlp.c_proj: the same rule (HF transposed, nanoGPT as iclab)
    blocks.i.ln_2.*, ln_f.*               transformer.h.i.ln_2.*, transformer.ln_f.*
    (logits = h @ wte^T)                  lm_head.weight (tied to wte)            lm_head.weight (tied to wte)

Differences that are not names: nanoGPT with `bias=False` has no biases (iclab's are then zero, which is the
same function); nanoGPT's GELU is the exact (erf) one (iclab activation `gelu`), HF GPT-2's `gelu_new` is the
tanh approximation (iclab `gelu_tanh`, the default); a compiled nanoGPT model prefixes every name with
`_orig_mod.`. The seed's Reflex model (KornilovaK/reflex_attention, nanoGPT layout) projects q, k, v for all
heads in every layer (`c_attn`, or separate `query`/`key`/`value` in some of its versions); iclab's Reflex
layer keeps the K/V rows of the heads that are read (`LayerPlan.kv_heads`), so those rows are selected.
Its layer norms use eps 1e-6 (iclab: 1e-5).
"""

from __future__ import annotations

import torch

from iclab.errors import IclabError


class LayoutError(IclabError, ValueError):
    """Weights that do not have the layout they claim (a missing tensor, a wrong shape)."""


_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_NORMS = ("ln_1", "ln_2")

ACTIVATION_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
ACTIVATION_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def _take(state: dict, key: str, where: str) -> torch.Tensor:
    if key not in state:
        raise LayoutError(f"{where}: tensor {key!r} is missing")
    return state[key]


def to_hf_gpt2(state: dict[str, torch.Tensor], n_layer: int, prefix: str = "transformer.") -> dict:
    """iclab trunk tensors -> GPT-2 names (Conv1D weights transposed). With prefix "transformer." the keys
    are GPT2LMHeadModel's (plus lm_head.weight, tied to wte when `state` has wte); with "" GPT2Model's."""
    out = {f"{prefix}wpe.weight": state["wpe.weight"]}
    if "wte.weight" in state:
        out[f"{prefix}wte.weight"] = state["wte.weight"]
        if prefix:
            out["lm_head.weight"] = state["wte.weight"]
    for i in range(n_layer):
        for n in _NORMS:
            for p in ("weight", "bias"):
                out[f"{prefix}h.{i}.{n}.{p}"] = state[f"blocks.{i}.{n}.{p}"]
        for n in _LINEARS:
            out[f"{prefix}h.{i}.{n}.weight"] = state[f"blocks.{i}.{n}.weight"].t().contiguous()
            out[f"{prefix}h.{i}.{n}.bias"] = state[f"blocks.{i}.{n}.bias"]
    for p in ("weight", "bias"):
        out[f"{prefix}ln_f.{p}"] = state[f"ln_f.{p}"]
    return out


def from_hf_gpt2(state: dict[str, torch.Tensor], n_layer: int, where: str) -> dict[str, torch.Tensor]:
    """GPT-2 tensors (GPT2LMHeadModel's `transformer.` names or GPT2Model's bare ones) -> iclab's LM names."""
    pre = "transformer." if any(k.startswith("transformer.") for k in state) else ""
    out = {"wte.weight": _take(state, f"{pre}wte.weight", where), "wpe.weight": _take(state, f"{pre}wpe.weight", where)}
    if "lm_head.weight" in state and not torch.equal(state["lm_head.weight"], out["wte.weight"]):
        raise LayoutError(f"{where}: lm_head.weight differs from wte.weight; iclab's LM head is tied to the embedding")
    for i in range(n_layer):
        for n in _NORMS:
            for p in ("weight", "bias"):
                out[f"blocks.{i}.{n}.{p}"] = _take(state, f"{pre}h.{i}.{n}.{p}", where)
        for n in _LINEARS:
            out[f"blocks.{i}.{n}.weight"] = _take(state, f"{pre}h.{i}.{n}.weight", where).t().contiguous()
            out[f"blocks.{i}.{n}.bias"] = _take(state, f"{pre}h.{i}.{n}.bias", where)
    for p in ("weight", "bias"):
        out[f"ln_f.{p}"] = _take(state, f"{pre}ln_f.{p}", where)
    return out


def _nano_bias(state: dict, key: str, like: torch.Tensor, bias: bool, where: str) -> torch.Tensor:
    if bias:
        return _take(state, key, where)
    return torch.zeros(like.shape[0], dtype=like.dtype)


def from_nanogpt(
    state: dict[str, torch.Tensor], n_layer: int, bias: bool, where: str, kv_heads: list | None = None, n_head: int = 0
) -> dict[str, torch.Tensor]:
    """nanoGPT tensors -> iclab's LM names. `bias=False`: iclab's biases are zeros. `kv_heads` (Reflex: per
    layer, the heads whose K/V iclab's layer projects) selects those rows of the seed's full q|k|v projection."""
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    wte = _take(state, "transformer.wte.weight", where)
    if "lm_head.weight" in state and not torch.equal(state["lm_head.weight"], wte):
        raise LayoutError(f"{where}: lm_head.weight differs from wte.weight; iclab's LM head is tied to the embedding")
    out = {"wte.weight": wte, "wpe.weight": _take(state, "transformer.wpe.weight", where)}
    for src, dst in [(f"transformer.h.{i}.{n}.", f"blocks.{i}.{n}.") for i in range(n_layer) for n in _NORMS] + [
        ("transformer.ln_f.", "ln_f.")
    ]:
        w = _take(state, src + "weight", where)
        out[dst + "weight"], out[dst + "bias"] = w, _nano_bias(state, src + "bias", w, bias, where)
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        if f"{h}attn.query.weight" not in state:
            w = _take(state, f"{h}attn.c_attn.weight", where)
            b = _nano_bias(state, f"{h}attn.c_attn.bias", w, bias, where)
        else:  # the seed's versions with separate query / key / value projections
            parts = [_take(state, f"{h}attn.{p}.weight", where) for p in ("query", "key", "value")]
            w = torch.cat(parts)
            b = torch.cat(
                [
                    _nano_bias(state, f"{h}attn.{p}.bias", x, bias, where)
                    for p, x in zip(("query", "key", "value"), parts)
                ]
            )
        if kv_heads is not None:
            C = w.shape[1]
            H = C // n_head
            rows = (
                torch.cat([torch.arange(k * H, (k + 1) * H) for k in kv_heads[i]])
                if kv_heads[i]
                else torch.zeros(0, dtype=torch.long)
            )
            keep = torch.cat([torch.arange(C), C + rows, 2 * C + rows])
            w, b = w[keep], b[keep]
        out[f"blocks.{i}.attn.c_attn.weight"], out[f"blocks.{i}.attn.c_attn.bias"] = w, b
        for n in ("attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            w = _take(state, f"{h}{n}.weight", where)
            out[f"blocks.{i}.{n}.weight"] = w
            out[f"blocks.{i}.{n}.bias"] = _nano_bias(state, f"{h}{n}.bias", w, bias, where)
    return out
