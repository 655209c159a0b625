"""The attention of a block: `model.attention.name` picks one (causal, the default, or reflex).

causal  GPT-2's causal self-attention: one fused projection c_attn -> q, k, v and one SDPA call. Its
        parameter names (attn.c_attn, attn.c_proj) are those of every checkpoint.

reflex  Reflex attention (seed 002; KornilovaK/reflex_attention). Layer i splits its N heads: n_self heads
        attend over the current hidden state as usual; each cross head h uses layer i's query with the
        keys and values of an EARLIER layer j < i for the same head index h, under the same causal mask:

            y_h = softmax(q_h^(i) k_h^(j)T / sqrt(H) + causal mask) v_h^(j)

    Heads are laid out self first, then one group per source, nearest first. allocation [4, 2, 2] (8 heads):
    heads 0-3 self, 4-5 read layer i-1, 6-7 read layer i-2. A layer lacking a source gives that group's heads
    to self: layer 0 is all self, layer 1 is [6, 2] (heads 6-7 read layer 0). A list of lists gives one row
    per layer (the seed's exact scheme, layers 0 and 1 plain: [[8], [8], [4, 2, 2], [4, 2, 2], ...]).
    all_layers: true: layer i gives one head to each earlier layer (head n_self + d - 1 reads layer i - d),
    the other N - i heads are self.

    kv_source: where a cross head's K/V come from
      reuse      the earlier layer's own tensors k_h^(j) = W_k,h^(j) LN_1(x_j), reused as they were (the
                 gradient flows into layer j's projection). A cross head computes no K/V of its own: layer j
                 projects K/V only for its self heads and for the heads a later layer reads from it (the
                 seed projects all N in every layer). With same-index reading most layers still project
                 most heads; only the last layers save (see iclab.models.flops).
      reproject  k_h = W_k,h^(i) LN_1(x_j): THIS layer's K/V weights on the earlier layer's attention input.
    combine / top_k: which earlier layer(s) a cross head reads
      fixed      one layer per head, as allocated.
      linear     K_h = sum_{d=1..k} w_{h,d} K_h^(i-d), the same for V, over the previous k layers (k = the
                 allocation's number of sources; all earlier layers under all_layers). w is learned, one row
                 per cross head (the seed's proposed Linear(k, 1), per head), initialized one-hot on the
                 head's allocated layer, so at init the model equals the fixed allocation.
      top_k      learned scores s_d per layer over all earlier layers, initialized s_d = -d (nearest first,
                 so at init = the fixed allocation). Forward: cross group r reads the layer of r-th highest
                 score (hard). Backward: straight-through, the group's weights are
                 one_hot + softmax(s) - stop_grad(softmax(s)), whose gradient is that of the softmax mix.
    The mixes are elementwise (no matmul FLOPs). The trunk hands every block of one loop iteration the same
    list `cache`; a reflex layer reads cache[-d] for layer i - d and appends its own (layer, k, v, x).

Head analysis (iclab/analysis/heads.py): every attention module has `hook = None`; with a `HeadHook` set
(`Trunk.hooked`), its heads run through the hook instead of SDPA: the same maths written out, so the
probabilities can be recorded and head outputs ablated (zeroed, or replaced by a mean) before c_proj. With
no hook (training, evaluation) the only extra work is one `is None` test per block.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from iclab.config import ModelConfig
from iclab.models.reflex_plan import reflex_plan


class HeadHook:
    """Analysis of heads: record attention probabilities / head outputs and ablate heads, per call.

    record_probs    keep (layer, P (B, N, T, T)) of every call, P = softmax(q k^T / sqrt(H) + causal mask)
    record_outputs  sum over the batch of every call's head outputs y = P v (N, T, H), keyed by the call's index
                    in the forward (a looped model calls a layer once per iteration): mean ablation's means
    ablate          {layer: {head: "zero" | "mean"}}: the head's y is replaced by 0 or by means[call] before c_proj
    Call `start()` before each forward: it resets the call counter that keys the means."""

    def __init__(self, record_probs=False, record_outputs=False, ablate=None, means=None):
        self.record_probs, self.record_outputs = record_probs, record_outputs
        self.ablate, self.means = ablate or {}, means or {}
        self.probs: list[tuple[int, torch.Tensor]] = []
        self.out_sum: dict[int, torch.Tensor] = {}
        self.out_n: dict[int, int] = {}
        self.calls = 0

    def start(self) -> None:
        self.calls = 0

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, H = q.shape[2], q.shape[3]
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        s = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(H)
        p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
        y = (p @ v.float()).to(v.dtype)  # (B, N, T, H)
        c, self.calls = self.calls, self.calls + 1
        if self.record_probs:
            self.probs.append((layer, p.detach().cpu()))
        if self.record_outputs:
            self.out_sum[c] = self.out_sum.get(c, 0) + y.detach().sum(0)
            self.out_n[c] = self.out_n.get(c, 0) + y.shape[0]
        heads = self.ablate.get(layer, {})
        if heads:
            y = y.clone()
            for h, mode in heads.items():
                y[:, h] = 0.0 if mode == "zero" else self.means[c][h].to(y.dtype)
        return y


def attend(module: nn.Module, q, k, v, layer: int) -> torch.Tensor:
    """Causal attention of (B, N, T, H) q, k, v -> (B, N, T, H): SDPA, or the module's HeadHook when set."""
    if module.hook is None:
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=module.dropout if module.training else 0.0
        )
    return module.hook(layer, q, k, v)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.layer, self.hook = layer, None  # hook: a HeadHook (analysis only)
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, L, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = attend(self, q, k, v, self.layer)
        return self.c_proj(y.transpose(1, 2).reshape(B, L, C))


# --- reflex: the per-layer head plan (also used by the FLOP formula and the config check) -------------------
class Source(NamedTuple):
    """What a reflex layer leaves for later layers of the same forward / loop iteration."""

    layer: int
    k: torch.Tensor  # (B, n_kv, T, H): the K of the layer's kv_heads
    v: torch.Tensor
    x: torch.Tensor  # (B, T, C): the layer's attention input LN_1(x) (for reproject)


class ReflexAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        att = cfg.attention
        plans = reflex_plan(att, cfg.n_layer, cfg.n_head)
        self.p = p = plans[layer]
        self.layer, self.n_head, self.head_dim = layer, cfg.n_head, cfg.n_embd // cfg.n_head
        self.hook = None  # a HeadHook (analysis only)
        self.mode = "top_k" if att.top_k else att.combine
        self.reproject = att.kv_source == "reproject"
        self.dropout = cfg.dropout
        C, H = cfg.n_embd, self.head_dim
        self.c_attn = nn.Linear(C, C + 2 * len(p.kv_heads) * H)  # q for all heads, k/v for kv_heads
        if self.reproject and p.n_cross:
            self.c_kv_cross = nn.Linear(C, 2 * p.n_cross * H)  # this layer's k/v weights of its cross heads
        self.c_proj = nn.Linear(C, C)
        # reuse: where a source layer keeps the first head this layer reads from it (heads are contiguous)
        firsts = [p.n_self + sum(n for _, n in p.groups[:g]) for g in range(len(p.groups))]
        if self.mode == "fixed":
            self.src_pos = {
                d: plans[layer - d].kv_heads.index(a) if not self.reproject else a - p.n_self
                for (d, _), a in zip(p.groups, firsts)
            }
        else:
            self.src_pos = {d: plans[layer - d].kv_heads.index(p.n_self) if not self.reproject else 0 for d in p.cands}
        if self.mode == "linear" and p.n_cross:  # one-hot on each head's allocated layer; 1-D so Muon leaves it alone
            mix = torch.zeros(p.n_cross, len(p.cands))
            heads = torch.tensor([p.cands.index(d) for d, n in p.groups for _ in range(n)])
            mix[torch.arange(p.n_cross), heads] = 1.0
            self.mix = nn.Parameter(mix.flatten())
        if self.mode == "top_k" and p.n_cross:
            self.scores = nn.Parameter(-torch.arange(1, len(p.cands) + 1, dtype=torch.float32))

    def weights(self) -> torch.Tensor:
        """(n_cross, S): each cross head's weight on each candidate source (linear, top_k)."""
        p = self.p
        if self.mode == "linear":
            return self.mix.view(p.n_cross, len(p.cands))
        probs = F.softmax(self.scores, dim=0)
        order = torch.argsort(self.scores.detach(), descending=True)[: len(p.groups)]
        w_group = F.one_hot(order, len(p.cands)).to(probs.dtype) + probs - probs.detach()  # straight-through
        return w_group.repeat_interleave(torch.tensor([n for _, n in p.groups], device=probs.device), dim=0)

    def source_kv(self, src: Source, d: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V (B, n, T, H) of the n heads this layer reads from source offset d."""
        a = self.src_pos[d]
        if not self.reproject:
            return src.k[:, a : a + n], src.v[:, a : a + n]
        B, T, _ = src.x.shape
        H, half = self.head_dim, self.p.n_cross * self.head_dim
        w, b = self.c_kv_cross.weight, self.c_kv_cross.bias
        k = F.linear(src.x, w[a * H : (a + n) * H], b[a * H : (a + n) * H])
        v = F.linear(src.x, w[half + a * H : half + (a + n) * H], b[half + a * H : half + (a + n) * H])
        return k.view(B, T, n, H).transpose(1, 2), v.view(B, T, n, H).transpose(1, 2)

    def cross_kv(self, cache: list[Source]) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V (B, n_cross, T, H) of the cross heads, from the earlier layers in `cache`."""
        p = self.p
        for d in p.cands:
            if len(cache) < d or cache[-d].layer != self.layer - d:
                raise RuntimeError(
                    f"reflex layer {self.layer} reads layer {self.layer - d}, which did not run just "
                    f"before it in this forward (a rearranged block order?)"
                )
        if self.mode == "fixed":
            kvs = [self.source_kv(cache[-d], d, n) for d, n in p.groups]
            return torch.cat([k for k, _ in kvs], dim=1), torch.cat([v for _, v in kvs], dim=1)
        kvs = [self.source_kv(cache[-d], d, p.n_cross) for d in p.cands]
        k_S, v_S = torch.stack([k for k, _ in kvs]), torch.stack([v for _, v in kvs])  # (S, B, n_cross, T, H)
        w_S = self.weights().to(k_S.dtype).t()[:, None, :, None, None]  # (S, 1, n_cross, 1, 1)
        return (w_S * k_S).sum(0), (w_S * v_S).sum(0)

    def forward(self, x: torch.Tensor, cache: list[Source]) -> torch.Tensor:
        B, T, C = x.shape
        N, H, p = self.n_head, self.head_dim, self.p
        q, kv = self.c_attn(x).split([C, 2 * len(p.kv_heads) * H], dim=2)
        q = q.view(B, T, N, H).transpose(1, 2)  # (B, N, T, H)
        k, v = (t.view(B, T, -1, H).transpose(1, 2) for t in kv.chunk(2, dim=2))  # (B, n_kv, T, H)
        if p.n_cross:
            k_x, v_x = self.cross_kv(cache)
            k_all, v_all = torch.cat([k[:, : p.n_self], k_x], dim=1), torch.cat([v[:, : p.n_self], v_x], dim=1)
        else:
            k_all, v_all = k, v
        cache.append(Source(self.layer, k, v, x))
        y = attend(self, q, k_all, v_all, self.layer)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


ATTENTION = {
    "causal": CausalSelfAttention,
    "reflex": ReflexAttention,
}  # model.attention.name ->


def make_attention(cfg: ModelConfig, layer: int) -> nn.Module:
    """The attention module of block `layer` (0-based)."""
    return ATTENTION[cfg.attention.name](cfg, layer)
