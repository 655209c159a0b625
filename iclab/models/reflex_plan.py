"""Which heads of which layer read which earlier layer under Reflex attention (iclab/models/attention.py).

A pure function of the attention options and the model's shape, kept apart from the modules so that the
config schema can check a scheme (`ModelConfig`) without importing the model: `reflex_plan(att, n_layer,
n_head)` raises ValueError on a scheme the shape cannot hold, else gives one `LayerPlan` per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerPlan:
    n_self: int
    groups: tuple[tuple[int, int], ...]  # (source offset d, or rank r under top_k; heads), in head order after self
    cands: tuple[int, ...]  # offsets d the cross heads' K/V are read from (fixed: the groups'; else all candidates)
    kv_heads: tuple[int, ...]  # heads whose K/V this layer projects from its own input (sorted)

    @property
    def n_cross(self) -> int:
        return sum(n for _, n in self.groups)


def _rows(att: Any, n_layer: int, n_head: int) -> list[list[int]]:
    """Per layer i: [self, from i-1, from i-2, ...] after moving the heads of missing sources to self."""
    if att.all_layers:
        if n_layer - 1 >= n_head:
            raise ValueError(
                f"model.attention all_layers: layer {n_layer - 1} gives one head to each of its "
                f"{n_layer - 1} earlier layers and keeps a self head, so n_head={n_head} must exceed {n_layer - 1}"
            )
        return [[n_head - i] + [1] * i for i in range(n_layer)]
    a = att.allocation
    if not a or any(isinstance(r, list) and not r for r in a):
        raise ValueError("model.attention allocation must not be empty")
    if isinstance(a[0], list):
        if len(a) != n_layer:
            raise ValueError(f"model.attention allocation has {len(a)} per-layer rows, the model has n_layer={n_layer}")
        rows = [list(r) for r in a]
    else:
        if sum(a) != n_head or min(a) < 0:
            raise ValueError(
                f"model.attention allocation {a} must be non-negative head counts summing to n_head={n_head}"
            )
        if len(a) > n_layer:
            raise ValueError(
                f"model.attention allocation {a} reads layer i-{len(a) - 1}, which no layer of a "
                f"{n_layer}-layer model has"
            )
        rows = [[a[0] + sum(a[i + 1 :])] + list(a[1 : i + 1]) for i in range(n_layer)]
    for i, r in enumerate(rows):
        if min(r) < 0:
            raise ValueError(f"model.attention allocation {r} (layer {i}) has a negative head count")
        if sum(r) != n_head:
            raise ValueError(f"model.attention allocation {r} (layer {i}) sums to {sum(r)}, not n_head={n_head}")
        bad = [d for d in range(i + 1, len(r)) if r[d]]
        if bad:
            raise ValueError(
                f"model.attention allocation {r}: layer {i} gives heads to layer {i}-{bad[0]}, which does not exist"
            )
    return rows


def reflex_plan(att: Any, n_layer: int, n_head: int) -> list[LayerPlan]:
    """The heads of every layer: self heads, cross groups, candidate sources, and the K/V each layer projects."""
    rows = _rows(att, n_layer, n_head)
    mode = "top_k" if att.top_k else att.combine
    layers = []
    for i, r in enumerate(rows):
        groups = tuple((d, n) for d, n in enumerate(r) if d > 0 and n > 0)
        if not groups:
            cands = ()
        elif mode == "fixed":
            cands = tuple(d for d, _ in groups)
        else:  # linear: the previous k = len(r) - 1 layers; top_k: every earlier layer
            cands = tuple(range(1, (min(i, len(r) - 1) if mode == "linear" else i) + 1))
        layers.append((r[0], groups, cands))
    kv = [set(range(n_self)) for n_self, _, _ in layers]
    for i, (n_self, groups, cands) in enumerate(layers):
        if att.kv_source == "reproject":
            continue
        if mode == "fixed":
            start = n_self
            for d, n in groups:
                kv[i - d].update(range(start, start + n))
                start += n
        else:
            for d in cands:
                kv[i - d].update(range(n_self, n_head))
    return [LayerPlan(n_self, groups, cands, tuple(sorted(kv[i]))) for i, (n_self, groups, cands) in enumerate(layers)]
