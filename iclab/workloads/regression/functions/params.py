"""Function parameters: a tensor or a tuple of tensors with the batch first."""

from __future__ import annotations

from typing import Any

import torch


def index_params(params: Any, idx: torch.Tensor) -> Any:
    """Select functions `idx` from parameters with the batch first (a tensor or a tuple of tensors)."""
    if isinstance(params, torch.Tensor):
        return params[idx]
    return type(params)(index_params(p, idx) for p in params)


def params_to(params: Any, device) -> Any:
    if isinstance(params, torch.Tensor):
        return params.to(device)
    return type(params)(params_to(p, device) for p in params)
