"""Model registry. A looped transformer is the `gpt2` model with `model.loops` > 1."""

from __future__ import annotations

import torch.nn as nn

from iclab.config import ModelConfig
from iclab.models.transformer import ICLTransformer
from iclab.registry import Registry

MODELS: Registry = Registry("model")
MODELS.register("gpt2", help="GPT-2-style decoder (pre-LN, SDPA), optionally looped with input injection")(ICLTransformer)


def make_model(cfg: ModelConfig, n_dims: int) -> nn.Module:
    return MODELS.get(cfg.name)(cfg, n_dims)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
