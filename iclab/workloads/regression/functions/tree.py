"""Decision trees (Garg et al. 2022): a full binary tree of depth `depth`; each internal node tests the
sign of one coordinate (drawn uniformly among the current dims), x_c > 0 goes right; leaves ~ N(0, 1)."""

from __future__ import annotations

import torch
from pydantic import Field

from iclab.registry import FUNCTIONS
from iclab.workloads.regression.functions.base import Task, TaskOptions


class TreeOptions(TaskOptions):
    depth: int = Field(4, gt=0, le=16, description="depth of the full binary tree (2^depth leaves)")


@FUNCTIONS.register("decision_tree")
class DecisionTree(Task):
    """Full binary depth-4 trees splitting on the sign of a random coordinate, N(0,1) leaves; normalized by 1."""

    Options = TreeOptions
    default_baselines = ("least_squares", "knn", "averaging", "decision_tree", "xgboost")

    def sample_params(self, batch, n_dims_truncated, gen, device):
        """(coords, leaves): coords (B, 2^depth - 1) of the internal nodes in heap order (children of node i
        are 2i+1 (x_c <= 0) and 2i+2 (x_c > 0)); leaves (B, 2^depth), left to right."""
        depth = self.opts.depth
        coords = torch.randint(0, n_dims_truncated, (batch, 2**depth - 1), generator=gen, device=device)
        leaves = torch.randn(batch, 2**depth, generator=gen, device=device)
        return coords, leaves

    def evaluate(self, params, xs):
        coords, leaves = params
        B, n, _ = xs.shape
        node = torch.zeros(B, n, dtype=torch.long, device=xs.device)
        for _ in range(self.opts.depth):  # one batched step per level
            c = torch.gather(coords, 1, node)  # (B, n): the coordinate each point tests at its node
            right = torch.gather(xs, 2, c.unsqueeze(-1)).squeeze(-1) > 0
            node = 2 * node + 1 + right.long()
        return torch.gather(leaves, 1, node - (2**self.opts.depth - 1))

    def zero_error(self, n_dims_truncated):
        return 1.0
