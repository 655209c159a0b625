"""Initialization of deep MLPs (seed 004's lecture; He et al. 2015, Glorot & Bengio 2010): which deep net trains.

    iclab dynamics init --out DIR [--depth 20 --depth 50] [--width W] [--steps N] [--lr LR] [--seed S]

An MLP of `depth` linear layers (in -> W, then depth - 2 hidden W -> W, then W -> 10 classes; zero biases),
ReLU or tanh between them, is initialized with

    naive(s)   every weight N(0, s^2): s = 0.01 (vanishing signals) and s = 1 (exploding for ReLU, saturated tanh)
    xavier     N(0, 2 / (fan_in + fan_out))          (torch.nn.init.xavier_normal_; Glorot & Bengio)
    kaiming    N(0, 2 / fan_in) for ReLU, (5/3)^2 / fan_in for tanh   (torch.nn.init.kaiming_normal_ with the
               activation's gain)

and trained with SGD (momentum 0.9, batch 128) on a fixed synthetic task: x ~ N(0, I_32), labels the argmax of
a random 2-layer tanh teacher (2,048 training examples, seeded). At initialization the record holds, per
layer, the RMS of the activations (after the nonlinearity) on one batch and the Frobenius norm of the loss
gradient of the layer's weight; the training curve is the full-batch training loss every 10 steps (NaN once a
run diverges). Everything is seeded and runs on one CPU thread.

DIR/initialization.json: {"seed", "width", "steps", "lr", "runs": [{"depth", "activation", "init", "act_rms":
[per layer], "grad_norms": [per layer], "steps": [...], "loss": [...], "accuracy": final}], "seconds"}
DIR/initialization.png: one row per (depth, activation): activation RMS per layer, gradient norm per layer
(log y) and the training loss vs step, one line per initialization.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from iclab.errors import IclabError
from iclab.files import write_json

N_IN, N_CLASSES, N_TRAIN, BATCH = 32, 10, 2048, 128
INITS = ("naive(0.01)", "naive(1)", "xavier", "kaiming")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class InitError(IclabError, ValueError):
    pass


def make_mlp(depth: int, width: int, activation: str) -> nn.Sequential:
    if depth < 2:
        raise InitError(f"--depth {depth}: an MLP needs at least 2 linear layers")
    sizes = [N_IN] + [width] * (depth - 1) + [N_CLASSES]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < depth - 1:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


@torch.no_grad()
def initialize(mlp: nn.Sequential, init: str, activation: str) -> None:
    for m in mlp:
        if not isinstance(m, nn.Linear):
            continue
        nn.init.zeros_(m.bias)
        if init.startswith("naive("):
            nn.init.normal_(m.weight, 0.0, float(init[len("naive(") : -1]))
        elif init == "xavier":
            nn.init.xavier_normal_(m.weight)
        elif init == "kaiming":
            nn.init.kaiming_normal_(m.weight, nonlinearity=activation)
        else:
            raise InitError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")


def teacher_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN, N_IN, generator=g)
    w1 = torch.randn(N_IN, 64, generator=g) / math.sqrt(N_IN)
    w2 = torch.randn(64, N_CLASSES, generator=g) / math.sqrt(64)
    return x, (torch.tanh(x @ w1 * 2) @ w2).argmax(1)


def init_statistics(mlp: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
    """RMS of each hidden layer's activations and the gradient norm of each linear layer's weight, at init."""
    acts, h = [], x
    for m in mlp:
        h = m(h)
        if not isinstance(m, nn.Linear):
            acts.append(float(h.detach().pow(2).mean().sqrt()))
    mlp.zero_grad()
    F.cross_entropy(h, y).backward()
    grads = [float(m.weight.grad.norm()) for m in mlp if isinstance(m, nn.Linear)]
    mlp.zero_grad()
    return acts, grads


def train(mlp: nn.Sequential, x, y, steps: int, lr: float, seed: int, every: int = 10) -> tuple[list[int], list[float]]:
    opt = torch.optim.SGD(mlp.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed + 1)
    log_steps, losses = [], []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                full = float(F.cross_entropy(mlp(x), y))
            log_steps.append(step)
            losses.append(full if math.isfinite(full) else float("nan"))
            if not math.isfinite(full):
                break
        if step == steps:
            break
        idx = torch.randint(N_TRAIN, (BATCH,), generator=g)
        loss = F.cross_entropy(mlp(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return log_steps, losses


def run_initialization(
    out: Path,
    *,
    seed: int = 0,
    depths: list[int] = (20, 50),
    width: int = 64,
    steps: int = 300,
    lr: float = 0.01,
    inits: tuple[str, ...] = INITS,
    activations: tuple[str, ...] = ("relu", "tanh"),
) -> dict:
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for d in depths:
        if d < 2:
            raise InitError(f"--depth {d}: an MLP needs at least 2 linear layers")
    x, y = teacher_data(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = []
    try:
        for depth in depths:
            for act in activations:
                for init in inits:
                    torch.manual_seed(seed)
                    mlp = make_mlp(depth, width, act)
                    initialize(mlp, init, act)
                    a, gn = init_statistics(mlp, x[:BATCH], y[:BATCH])
                    s, losses = train(mlp, x, y, steps, lr, seed)
                    with torch.no_grad():
                        acc = float((mlp(x).argmax(1) == y).float().mean())
                    runs.append(
                        {
                            "depth": depth,
                            "activation": act,
                            "init": init,
                            "act_rms": a,
                            "grad_norms": gn,
                            "steps": s,
                            "loss": losses,
                            "accuracy": acc,
                        }
                    )
    finally:
        torch.set_num_threads(threads)
    rec = {
        "seed": seed,
        "width": width,
        "steps": steps,
        "lr": lr,
        "optimizer": "SGD, momentum 0.9, batch 128",
        "task": f"{N_CLASSES}-class labels of a random tanh teacher on x ~ N(0, I_{N_IN}), {N_TRAIN} examples",
        "chance_loss": math.log(N_CLASSES),
        "runs": runs,
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "initialization.json", rec)
    rec["figures"] = [str(plot_initialization(rec, out / "initialization.png"))]
    rec["path"] = str(out / "initialization.json")
    return rec


def plot_initialization(rec: dict, path: Path) -> Path:
    from iclab.plotting import plt

    groups = []
    for r in rec["runs"]:
        if (r["depth"], r["activation"]) not in groups:
            groups.append((r["depth"], r["activation"]))
    colors = {"naive(0.01)": "tab:gray", "naive(1)": "tab:purple", "xavier": "tab:blue", "kaiming": "tab:red"}
    fig, axes = plt.subplots(len(groups), 3, figsize=(14, 3.2 * len(groups)), squeeze=False)
    for row, (depth, act) in enumerate(groups):
        for r in rec["runs"]:
            if (r["depth"], r["activation"]) != (depth, act):
                continue
            c = colors.get(r["init"])
            axes[row, 0].plot(
                range(1, len(r["act_rms"]) + 1),
                [max(v, 1e-30) for v in r["act_rms"]],
                "-o",
                ms=2,
                color=c,
                label=r["init"],
            )
            axes[row, 1].plot(
                range(1, len(r["grad_norms"]) + 1),
                [max(v, 1e-30) for v in r["grad_norms"]],
                "-o",
                ms=2,
                color=c,
                label=r["init"],
            )
            axes[row, 2].plot(r["steps"], r["loss"], color=c, lw=1.8, label=f"{r['init']} (acc {r['accuracy']:.2f})")
        axes[row, 0].set_ylabel(f"depth {depth}, {act}\nactivation RMS at init")
        axes[row, 1].set_ylabel("|dL/dW| at init")
        axes[row, 2].set_ylabel("training loss")
        axes[row, 2].axhline(rec["chance_loss"], color="k", ls=":", lw=0.8, label="chance (ln 10)")
        for ax in axes[row, :2]:
            ax.set_yscale("log")
            ax.set_xlabel("layer")
        axes[row, 2].set_xlabel("SGD step")
        axes[row, 2].set_ylim(0, 1.6 * rec["chance_loss"])
        for ax in axes[row]:
            ax.legend(fontsize=6)
    fig.suptitle(
        f"deep MLPs (width {rec['width']}): which initialization trains ({rec['optimizer']}, lr {rec['lr']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
