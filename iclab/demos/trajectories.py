"""Optimizer trajectories on 2-D test functions over their contour plots (the lecture's "many methods").

The point is a 1x2 parameter, so every optimizer sees the same tensor: the elementwise ones (Adagrad,
RMSProp, Adadelta, Adam, AdamW) act per coordinate; Muon orthogonalizes the 1x2 momentum, which for a
single row is m / |m| (a step of fixed length in the momentum's direction: it circles the minimum at a
distance set by the lr instead of settling); Shampoo preconditions with L^-1/4 G R^-1/4, where L = sum
|g|^2 is 1x1 and R = sum g^T g is 2x2, a full-matrix Adagrad for the point. GD uses the exact
gradient; SGD adds N(0, noise^2 I) to it; every other method uses the exact gradient too, so the
pictures show the update rules, not the noise.

Each optimizer's lr is picked per function from a log grid: the one with the lowest mean log10(f - f*)
along the path (fast and stable beats a lucky last step); it is written to the JSON beside the path and
the final gap f - f*. The figure has one panel per function and method.
"""

from __future__ import annotations

import math

import torch

from iclab.demos import save_figure
from iclab.training.optim import Params, build_optimizer

# name -> (registry entry, options, noisy gradient)
METHODS = {
    "GD": ("sgd", {}, False),
    "SGD": ("sgd", {}, True),
    "Momentum": ("sgd", {"momentum": 0.9}, False),
    "Nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}, False),
    "Adagrad": ("adagrad", {}, False),
    "RMSProp": ("rmsprop", {}, False),
    "Adadelta": ("adadelta", {}, False),
    "Adam": ("adam", {}, False),
    "AdamW": ("adamw", {"weight_decay": 0.1}, False),
    "Muon": ("muon", {"matrices": "all"}, False),
    "Shampoo": ("shampoo", {"matrices": "all"}, False),
}
LR_GRID = [10.0**e for e in (-4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1)]


def rosenbrock(p):
    x, y = p[..., 0], p[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


_C, _S = math.cos(math.pi / 6), math.sin(math.pi / 6)


def quadratic(p):
    """0.5 (u^2 + 20 v^2) in axes rotated by 30 degrees: condition number 20, not axis-aligned."""
    x, y = p[..., 0], p[..., 1]
    u, v = _C * x + _S * y, -_S * x + _C * y
    return 0.5 * (u**2 + 20 * v**2)


def beale(p):
    x, y = p[..., 0], p[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


# name -> (function, start, minimizer, plot box (x0, x1, y0, y1), gradient noise of SGD)
FUNCTIONS = {
    "rosenbrock": (rosenbrock, (-1.5, 2.0), (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0), 2.0),
    "quadratic": (quadratic, (-3.0, 2.5), (0.0, 0.0), (-3.5, 3.5, -3.0, 3.0), 1.0),
    "beale": (beale, (1.0, 1.5), (3.0, 0.5), (-1.0, 4.0, -1.5, 2.5), 1.0),
}


def run_one(fn, start, method: str, lr: float, steps: int, noise: float, seed: int) -> torch.Tensor:
    """The path (steps + 1, 2) of one optimizer from `start`."""
    entry, options, noisy = METHODS[method]
    point = torch.nn.Parameter(torch.tensor([start], dtype=torch.float64))
    opt = build_optimizer(entry, Params([("point", point)]), lr, options, impl="for_loop")
    gen = torch.Generator().manual_seed(seed)
    noises = torch.randn(steps, 1, 2, generator=gen, dtype=torch.float64) * noise if noisy else None
    path = [point.detach().clone()]
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        fn(point).sum().backward()
        if noises is not None:
            point.grad.add_(noises[t])
        opt.step()
        path.append(point.detach().clone())
    return torch.cat(path)


def _score(fn, path, fstar) -> float:
    """The mean of log10(f - f*) along the path (floored at 1e-12): low when a method gets low fast and
    stays there; a run that leaves the finite numbers scores inf."""
    gaps = fn(path) - fstar
    if not bool(torch.isfinite(gaps).all()):
        return math.inf
    return float(torch.log10(gaps.clamp_min(1e-12)).mean())


def run(
    out,
    seed: int = 0,
    steps: int = 300,
    methods: list[str] | None = None,
    functions: list[str] | None = None,
    lr_grid: list[float] | None = None,
) -> dict:
    methods = methods or list(METHODS)
    functions = functions or list(FUNCTIONS)
    result = {"demo": "trajectories", "seed": seed, "steps": steps, "lr_grid": lr_grid or LR_GRID, "functions": {}}
    for fname in functions:
        fn, start, xstar, box, noise = FUNCTIONS[fname]
        fstar = float(fn(torch.tensor(xstar, dtype=torch.float64)))
        res = result["functions"][fname] = {"start": start, "minimizer": xstar, "sgd_noise_std": noise, "methods": {}}
        for m in methods:
            best = None
            for lr in lr_grid or LR_GRID:
                path = run_one(fn, start, m, lr, steps, noise, seed)
                s = _score(fn, path, fstar)
                if best is None or s < best[0]:
                    best = (s, lr, path)
            score, lr, path = best
            finite = bool(torch.isfinite(path).all(-1)[-1])
            path = path[torch.isfinite(path).all(-1)]  # a method that diverged at every lr: drawn up to the blow-up
            res["methods"][m] = {
                "lr": lr,
                "diverged": not math.isfinite(score),
                "final_gap": float(fn(path[-1])) - fstar if finite else None,
                "path": [[round(float(a), 5), round(float(b), 5)] for a, b in path.tolist()],
            }
    _plot(result, out / "trajectories.png")
    return result


def _plot(result, path):
    from iclab.plotting import plt

    names = list(result["functions"])
    methods = list(result["functions"][names[0]]["methods"])
    fig, axes = plt.subplots(
        len(names), len(methods), figsize=(2.3 * len(methods), 2.5 * len(names) + 0.6), squeeze=False
    )
    for row, fname in zip(axes, names):
        fn, start, xstar, (x0, x1, y0, y1), _ = FUNCTIONS[fname]
        xs, ys = torch.linspace(x0, x1, 200, dtype=torch.float64), torch.linspace(y0, y1, 200, dtype=torch.float64)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        fstar = float(fn(torch.tensor(xstar, dtype=torch.float64)))
        Z = torch.log10(fn(torch.stack([X, Y], -1)) - fstar + 1e-3).numpy()
        for ax, m in zip(row, methods):
            r = result["functions"][fname]["methods"][m]
            ax.contour(X.numpy(), Y.numpy(), Z, levels=20, cmap="Greys", linewidths=0.5)
            p = torch.tensor(r["path"])
            ax.plot(p[:, 0], p[:, 1], "-", color="tab:blue", lw=1.0)
            ax.plot(p[-1, 0], p[-1, 1], "o", color="tab:blue", ms=3)
            ax.plot(*start, "ks", ms=4)
            ax.plot(*xstar, "r*", ms=8)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            gap = "diverged" if r["final_gap"] is None else f"f - f* = {r['final_gap']:.1e}"
            ax.set_title(f"{m}: lr {r['lr']:.2g}\n{gap}", fontsize=8)
            ax.tick_params(labelsize=6)
        row[0].set_ylabel(f"{fname}\ny", fontsize=9)
    fig.suptitle(
        f"Trajectories over log10(f - f*) contours, {result['steps']} steps from the square to the star "
        "(lr tuned per method; SGD = exact gradient + Gaussian noise)",
        fontsize=11,
    )
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
