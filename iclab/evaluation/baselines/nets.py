"""A 2-layer ReLU network fitted by gradient descent on each prompt prefix (Garg et al.'s baseline for
2-layer-network functions: hidden width 100, Adam, lr 5e-3, 100 steps, batches of 100 points, i.e. the
whole prefix of a 41-point prompt; here always the whole prefix).

Every (prompt, position) pair gets its own network, initialized like torch.nn.Linear (weights and biases
uniform in +-1/sqrt(fan_in)) and trained on the points before that position; all of them are one batched
tensor program on the prompts' device. Summing the networks' own mean squared errors gives each network
exactly its own gradient, and Adam/SGD act elementwise, so this is the same as training each network
alone. Networks are trained in chunks of prompts and groups of nearby positions (to skip most padded
points); the initialization is drawn per chunk from a generator seeded by `seed`, so predictions depend on
(seed, the batch's shape, positions), not on the device's memory.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from iclab.evaluation.baselines.base import PositionsOptions, positions_or_all, register

_ACT_BUDGET = 1 << 23  # elements of one (prompts, positions, points, hidden) activation tensor per chunk
_GROUP = 10  # positions trained together (their prompts are padded to the longest)


class ReluNetOptions(PositionsOptions):
    hidden: int = Field(100, gt=0, description="hidden ReLU units")
    steps: int = Field(100, gt=0, description="optimizer steps on the prefix")
    lr: float = Field(5e-3, gt=0, description="learning rate")
    optimizer: Literal["adam", "sgd"] = "adam"
    seed: int = Field(0, description="seed of the networks' initialization")


def init_relu_nets(shape: tuple[int, ...], d: int, hidden: int, gen: torch.Generator, dtype, device):
    """Parameters of prod(shape) networks x -> W2 . relu(W1 x + b1) + b2, drawn like nn.Linear's defaults:
    W1 (*shape, hidden, d), b1 (*shape, hidden), W2 (*shape, hidden), b2 (*shape)."""

    def u(*s, fan_in):
        return (torch.rand(*shape, *s, generator=gen, dtype=dtype, device=device) * 2 - 1) / math.sqrt(fan_in)

    return u(hidden, d, fan_in=d), u(hidden, fan_in=d), u(hidden, fan_in=hidden), u(fan_in=hidden)


def _forward(params, X):
    """X (b, m, d) shared by the q networks of each prompt -> (b, q, m)."""
    W1, b1, W2, b2 = params
    H = torch.relu(
        torch.baddbmm(
            b1.flatten(0, 1).unsqueeze(-2),
            X.unsqueeze(1).expand(-1, W1.shape[1], -1, -1).flatten(0, 1),
            W1.flatten(0, 1).mT,
        )
    )  # (b*q, m, h)
    out = torch.baddbmm(b2.reshape(-1, 1, 1), H, W2.flatten(0, 1).unsqueeze(-1))  # (b*q, m, 1)
    return out.view(*W2.shape[:2], -1)


def _train(params, X, Y, q: torch.Tensor, steps: int, lr: float, optimizer: str) -> torch.Tensor:
    """Train the (b, len(q)) networks, network (p, k) on the first q[k] points of prompt p; predict x[q[k]]."""
    params = [p.clone().requires_grad_(True) for p in params]
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(params, lr=lr)
    m = int(q.max())
    Xt, Yt = X[:, :m], Y[:, :m]
    mask = (torch.arange(m, device=X.device)[None, :] < q[:, None]).to(X.dtype) / q[:, None].to(X.dtype)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = (((_forward(params, Xt) - Yt.unsqueeze(1)) ** 2) * mask).sum()
            loss.backward()
            opt.step()
    with torch.no_grad():
        W1, b1, W2, b2 = params
        xq = X[:, q]  # (b, q, d): each network's own query
        h = torch.relu(torch.einsum("bqd,bqhd->bqh", xq, W1) + b1)
        return (h * W2).sum(-1) + b2


@register("relu_net_gd", ReluNetOptions, help="2-layer ReLU net (100 hidden) fitted by Adam on each prefix")
def relu_net_gd(
    xs: torch.Tensor,
    ys: torch.Tensor,
    hidden: int = 100,
    steps: int = 100,
    lr: float = 5e-3,
    optimizer: str = "adam",
    seed: int = 0,
    positions: list[int] | None = None,
) -> torch.Tensor:
    B, n, d = xs.shape
    pos = positions_or_all(positions, n)
    pred = torch.full((B, n), float("nan"), dtype=xs.dtype, device=xs.device)
    pred[:, [i for i in pos if i == 0]] = 0.0
    pos = [i for i in pos if i > 0]
    if not pos or B == 0:
        return pred
    gen = torch.Generator(device=xs.device)
    gen.manual_seed(seed)
    Q = len(pos)
    per_prompt = Q * (pos[-1] + 1) * hidden
    chunk = max(1, _ACT_BUDGET // per_prompt)
    qall = torch.tensor(pos, device=xs.device)
    for s in range(0, B, chunk):
        X, Y = xs[s : s + chunk], ys[s : s + chunk]
        params = init_relu_nets((X.shape[0], Q), d, hidden, gen, xs.dtype, xs.device)
        for g in range(0, Q, _GROUP):
            sl = slice(g, g + _GROUP)
            out = _train([p[:, sl] for p in params], X, Y, qall[sl], steps, lr, optimizer)
            pred[s : s + chunk, qall[sl]] = out.to(pred.dtype)
    return pred
