"""Sampling a continuation from a language model: temperature, top-k, a seeded generator.

Each new token is drawn from softmax(logits / temperature) of the final loop iteration at the last
position, restricted to the k most likely tokens when top_k is set (temperature 0: greedy). The context
is cropped to the model's last n_positions tokens, as nanoGPT's `generate`.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def generate(
    model,
    idx: torch.Tensor,
    new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    loops: int | None = None,
) -> torch.Tensor:
    """idx: (B, L) int64 -> (B, L + new_tokens)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    was = model.training
    model.eval()
    n_pos = model.cfg.n_positions
    for _ in range(new_tokens):
        logits = model.logits(idx[:, -n_pos:], loops=loops)[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
        idx = torch.cat([idx, nxt], dim=1)
    model.train(was)
    return idx
