"""Controls of `iclab heads`: what the scores read on a model with no circuit, and on one with a planted circuit.

random init   the run's architecture, freshly initialized (torch.manual_seed(seed); workload.build_model()),
              scored on the same data: what "no learned circuit" reads.

planted       a hand-built two-layer attention-only GPTLanguageModel (iclab's own class, so the same hooks and
              scores apply) with an induction circuit (Elhage et al. 2021): the MLPs are zero, 2 heads per layer,
              of which head 1 of each layer is zero. The residual stream has one-hot subspaces
                  T (V dims)  the current token     wte[t] = e_T(t)
                  P (L dims)  the position          wpe[p] = e_P(p)
                  S (V dims)  the previous token    written by head 0.0
                  Z (1 dim)   a constant            ln_1.bias of layer 1
              Every token's residual stream holds the same number of ones, so the layer norms rescale them all
              alike (by s ~ sqrt(C/k)), and the constants below absorb s.
                  0.0  previous-token head: q_i = b0 e(i-1), k_j = e(j) (from P): attends to i-1; v = the token
                       (from T), written into S.
                  1.0  induction head: q_i = b1 e(token_i) (from T) . k_j = e(prev token of j) (from S): attends
                       to the tokens that followed an earlier occurrence of the current token; position 0 (whose
                       "previous token" is itself) is pushed away through Z; v = the token (from T), written
                       into T with gain g, so the logits (tied: ln_f(h) . wte) favour the attended token.
              Scored on repeated random blocks it must give induction ~= 1 for head 1.0, a copying score of
              ~1, an in-context score far below 0 (the second copy is predicted, the first is not), and an
              in-context score ~0 once 1.0 is ablated.
"""

from __future__ import annotations

import torch

from iclab.analysis.heads import (
    HeadHook,
    best,
    context_bands,
    lm_loss_on,
    repeated_tokens,
    score_heads,
    score_key,
)
from iclab.config import ModelConfig
from iclab.models.transformer import GPTLanguageModel
from iclab.stats import mean_ci


@torch.no_grad()
def planted_induction_model(vocab: int = 16, n_positions: int = 32, b0: float = 5.0, b1: float = 5.0, gain: float = 3):
    """The hand-built two-layer attention-only model with an induction head at 1.0 (see the module docstring)."""
    V, L = vocab, n_positions
    H = max(L, V + 1, (2 * V + L + 1 + 1) // 2)
    C = 2 * H
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=C, n_positions=L, activation="relu")
    m = GPTLanguageModel(cfg, V)
    for prm in m.parameters():
        prm.zero_()
    T, P, S, Z = 0, V, V + L, 2 * V + L
    m.wte.weight[:, T : T + V] = torch.eye(V)
    m.wpe.weight[:, P : P + L] = torch.eye(L)
    for ln in (m.blocks[0].ln_1, m.blocks[0].ln_2, m.blocks[1].ln_1, m.blocks[1].ln_2, m.ln_f):
        ln.weight.fill_(1.0)
    k = 2  # ones in every residual stream before layer 0 (token, position); 3 after (previous token)
    s0 = (k / C - (k / C) ** 2) ** 0.5  # the std layer norm divides by
    s1 = (3 / C - (3 / C) ** 2) ** 0.5
    W0, W1 = m.blocks[0].attn.c_attn.weight, m.blocks[1].attn.c_attn.weight  # rows: q (C), k (C), v (C)
    for a in range(L - 1):  # 0.0: query at i looks for key position i - 1
        W0[a, P + a + 1] = b0
    for a in range(L):
        W0[C + a, P + a] = 1.0
    for b in range(V):
        W0[2 * C + b, T + b] = 1.0
        m.blocks[0].attn.c_proj.weight[S + b, b] = s0  # back to ~1 in S
    m.blocks[1].ln_1.bias[Z] = 1.0
    for b in range(V):  # 1.0: query = current token, key = the key's previous token
        W1[b, T + b] = b1
        W1[C + b, S + b] = 1.0
        W1[2 * C + b, T + b] = 1.0
        m.blocks[1].attn.c_proj.weight[T + b, b] = gain * s1
    W1[V, Z] = 10.0  # position 0's previous token is itself: keep the induction head off it
    W1[C + V, P] = -10.0 * s1
    m.eval()
    return m


@torch.no_grad()
def repeated_in_context(model, tokens: torch.Tensor, hook: HeadHook | None = None) -> dict:
    """In-context score (late band - early band of the loss) on repeated blocks, and the loss on each copy."""
    if hook is None:
        ce = lm_loss_on(model, tokens)
    else:
        with model.hooked(hook):
            hook.start()
            ce = lm_loss_on(model, tokens)
    n = tokens.shape[1] // 2
    early, late = context_bands(tokens.shape[1] - 1)
    icl = (ce[:, late.start : late.stop].mean(1) - ce[:, early.start : early.stop].mean(1)).double()
    m, h = mean_ci(icl.tolist())
    return {
        "in_context": m,
        "in_context_ci95": h,
        "loss_first_copy": float(ce[:, : n - 1].mean()),
        "loss_second_copy": float(ce[:, n - 1 :].mean()),
    }


def planted_control(n_seq: int = 64, seed: int = 0) -> dict:
    """The planted model's scores: its heads, and the in-context score with and without head 1.0."""
    model = planted_induction_model()
    V, L = model.vocab_size, model.cfg.n_positions
    gen = torch.Generator().manual_seed(seed)
    data = {"patterns": repeated_tokens(n_seq, V, L, gen, "cpu"), "repeated": repeated_tokens(n_seq, V, L, gen, "cpu")}
    recs = score_heads(model, "language_model", data)
    top = best(recs, "induction")
    ablated = repeated_in_context(model, data["repeated"], HeadHook(ablate={top["layer"]: {top["head"]: "zero"}}))
    return {
        "description": f"hand-built 2-layer attention-only model, vocab {V}, {L} positions, induction head 1.0",
        "heads": recs,
        "top_head": top["label"],
        "induction": top["induction"],
        "copying": top["copying"],
        "intact": repeated_in_context(model, data["repeated"]),
        "ablated": ablated,
    }


def random_init_control(workload, family: str, data: dict, seed: int, device) -> dict:
    """The run's architecture at initialization, on the same data."""
    torch.manual_seed(seed)
    model = workload.build_model().to(device).eval()
    recs = score_heads(model, family, data)
    key = score_key(family)
    top = best(recs, key)
    out = {"heads": recs, "top_head": top["label"], key: top[key], "mean_" + key: sum(r[key] for r in recs) / len(recs)}
    if family != "regression":
        out["in_context_repeated"] = repeated_in_context(model, data["repeated"])
    return out
