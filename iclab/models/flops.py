"""Model FLOPs of a training step and of an evaluation pass, counted analytically from the config.

Only matrix multiplications are counted (2 FLOPs per multiply-add); layer norms, GELU, softmax, the
loss and the optimizer are not. For a batch of B prompts of n points (2n tokens), width C, n_layer
blocks, x-dimension d, a loop iteration that sees L tokens (L = 2n without token dropping) costs, forward:

    blocks(L)  = n_layer * (24 B L C^2        # qkv 6C^2 + attention output 2C^2 + MLP 16C^2 per token
                            + 4 B L^2 C)      # scores Q K^T and A V, the full L x L (no causal discount)
    readout(L) = 2 B (L // 2) C               # read-out at the x positions
    readin     = 2 B (2n) d C                 # read-in, once per forward

A training step of b loops with window T (b = 1, T = 1 for the standard model) is

    2 readin + sum_{t < b-T} blocks(L_t) + 3 sum_{t >= b-T} (blocks(L_t) + readout(L_t))

i.e. forward only for the iterations run without gradient, forward + backward = 3x forward where a
gradient flows (backward computes the gradient of the input and of the weight, 2x forward), and 2x
forward for the read-in, whose input needs no gradient. Attention backward is counted as 2x its forward
(the model FLOPs; a flash kernel that recomputes the scores does more hardware FLOPs). An evaluation
pass (`predict`, window 1, no gradient) is readin + sum_t blocks(L_t) + readout(L_{b-1}).

Reflex attention (model.attention.name=reflex) changes only the K/V projections: `reflex_layer_flops`.
tests/models/test_flops.py and tests/models/test_reflex.py check these numbers against
torch.utils.flop_counter.FlopCounterMode.
"""

from __future__ import annotations

from iclab.config import Config, ModelConfig


def seq_lens(mcfg: ModelConfig, n_tokens: int, loops: int) -> list[int]:
    """Tokens seen by each loop iteration (the model's token-dropping rule)."""
    d, k = mcfg.drop_tokens, mcfg.min_tokens
    return [n_tokens if d == 0 else min(n_tokens, max(n_tokens - t * d, k)) for t in range(loops)]


def block_flops(mcfg: ModelConfig, batch: int, L: int) -> int:
    C = mcfg.n_embd
    if mcfg.attention.name == "reflex":
        return sum(reflex_layer_flops(mcfg, batch, L))
    return mcfg.n_layer * (24 * batch * L * C * C + 4 * batch * L * L * C)


def reflex_layer_flops(mcfg: ModelConfig, batch: int, L: int) -> list[int]:
    """Forward matmul FLOPs of each reflex layer (see iclab.models.attention). Per token, with head width H:

        q for all heads 2C^2 + own k/v 2C * 2H n_kv + attention output 2C^2 + MLP 16C^2, scores 4 L C (all heads)

    n_kv: reuse: the heads whose K/V the layer projects for itself and for later layers (LayerPlan.kv_heads);
    reproject: the self heads, plus the cross heads projected from each source they read, 2C * 2H n_cross
    per source (fixed: once; linear, top_k: once per candidate layer). The K/V mixes are elementwise (free)."""
    from iclab.models.reflex_plan import reflex_plan

    C, H = mcfg.n_embd, mcfg.n_embd // mcfg.n_head
    out = []
    for p in reflex_plan(mcfg.attention, mcfg.n_layer, mcfg.n_head):
        kv = len(p.kv_heads)
        if mcfg.attention.kv_source == "reproject":
            kv += p.n_cross * (1 if mcfg.attention.combine == "fixed" and not mcfg.attention.top_k else len(p.cands))
        out.append(batch * L * (20 * C * C + 4 * C * H * kv) + 4 * batch * L * L * C)
    return out


def readout_flops(mcfg: ModelConfig, batch: int, L: int) -> int:
    return 2 * batch * (L // 2) * mcfg.n_embd


def readin_flops(mcfg: ModelConfig, batch: int, n_points: int, n_dims: int) -> int:
    return 2 * batch * 2 * n_points * n_dims * mcfg.n_embd


def train_step_flops(
    mcfg: ModelConfig, *, n_dims: int, n_points: int, batch: int, loops: int | None = None, window: int | None = None
) -> int:
    """Forward + backward matmul FLOPs of one training step (the formula in the module docstring)."""
    b = loops or mcfg.loops
    T = min(window or mcfg.window, b)
    total = 2 * readin_flops(mcfg, batch, n_points, n_dims)
    for t, L in enumerate(seq_lens(mcfg, 2 * n_points, b)):
        if t < b - T:
            total += block_flops(mcfg, batch, L)
        else:
            total += 3 * (block_flops(mcfg, batch, L) + readout_flops(mcfg, batch, L))
    return total


def predict_flops(mcfg: ModelConfig, *, n_dims: int, n_points: int, batch: int, loops: int | None = None) -> int:
    """Matmul FLOPs of `model.predict` (no gradient, read-out of the final iteration only)."""
    b = loops or mcfg.loops
    lens = seq_lens(mcfg, 2 * n_points, b)
    return (
        readin_flops(mcfg, batch, n_points, n_dims)
        + sum(block_flops(mcfg, batch, L) for L in lens)
        + readout_flops(mcfg, batch, lens[-1])
    )


def config_step_flops(cfg: Config) -> int:
    """FLOPs of a training step of `cfg` at its full shapes (the end of any curriculum)."""
    return train_step_flops(
        cfg.model, n_dims=cfg.task.n_dims, n_points=cfg.task.n_points, batch=cfg.training.batch_size
    )


# --- token workloads (the language-model head) ------------------------------------------------------------
def lm_head_flops(mcfg: ModelConfig, batch: int, L: int, vocab_size: int) -> int:
    """The tied LM head on every kept position: 2 B L C V (the embedding lookup is no matmul)."""
    return 2 * batch * L * mcfg.n_embd * vocab_size


def lm_train_step_flops(
    mcfg: ModelConfig,
    *,
    vocab_size: int,
    batch: int,
    seq_len: int,
    loops: int | None = None,
    window: int | None = None,
    head_from: int = 0,
) -> int:
    """Forward + backward matmul FLOPs of a language-model training step of sequences of `seq_len` tokens:

        sum_{t < b-T} blocks(L_t) + 3 sum_{t >= b-T} (blocks(L_t) + head(L_t))

    the same rule as the regression step (3x forward where a gradient flows), with the LM head in place of
    the read-out; for the standard model (b = T = 1) this is nanoGPT's 6 N_matmul per token plus the
    attention term, 3 * n_layer * 4 B L^2 C (full L x L scores, no causal discount). head_from: the head
    runs on the positions >= head_from only (`GPTLanguageModel.forward(head_from=)`)."""
    b = loops or mcfg.loops
    T = min(window or mcfg.window, b)
    total = 0
    for t, L in enumerate(seq_lens(mcfg, seq_len, b)):
        if t < b - T:
            total += block_flops(mcfg, batch, L)
        else:
            total += 3 * (
                block_flops(mcfg, batch, L) + lm_head_flops(mcfg, batch, min(L, seq_len - head_from), vocab_size)
            )
    return total


def lm_forward_flops(mcfg: ModelConfig, *, vocab_size: int, batch: int, seq_len: int, loops: int | None = None) -> int:
    """Matmul FLOPs of `GPTLanguageModel.logits` (no gradient, the head on the final iteration only)."""
    lens = seq_lens(mcfg, seq_len, loops or mcfg.loops)
    return sum(block_flops(mcfg, batch, L) for L in lens) + lm_head_flops(mcfg, batch, lens[-1], vocab_size)
