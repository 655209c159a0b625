"""Model registry. An entry is a family of heads around one trunk; the workload picks the head:

    gpt2    regression -> ICLTransformer(cfg, n_dims)        read-in, trunk, scalar read-out
            lm         -> GPTLanguageModel(cfg, vocab_size)  token embedding, trunk, tied LM head

A looped model (of either head) is the same class with `model.loops` > 1.
"""

from __future__ import annotations

import torch.nn as nn

from iclab.config import ModelConfig
from iclab.models.reflex_plan import reflex_plan
from iclab.models.transformer import GPTLanguageModel, ICLTransformer
from iclab.registry import MODELS

MODELS.set_check("reflex_plan", reflex_plan)  # config.py checks a Reflex scheme through the registry
MODELS.register(
    "gpt2", help="GPT-2-style decoder (pre-LN, SDPA), optionally looped with input injection; heads: regression, lm"
)({"regression": ICLTransformer, "lm": GPTLanguageModel})


def make_model(cfg: ModelConfig, head: str, **kwargs) -> nn.Module:
    heads = MODELS.get(cfg.name)
    if head not in heads:
        raise ValueError(f"model {cfg.name!r} has no {head!r} head; it has: {', '.join(heads)}")
    return heads[head](cfg, **kwargs)


def count_params(model: nn.Module, exclude_embeddings: bool = False) -> int:
    """Parameters (each tied tensor once); without the position and token embedding tables if asked."""
    skip = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} if exclude_embeddings else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
