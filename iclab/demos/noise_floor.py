"""SGD with a constant step stalls at a noise floor; decaying steps keep going (the lecture's "main problem
of SGD"), on its example: L2-regularized logistic regression, m = 200 points, n = 10, mu = 1,

    f(x) = mu/2 |x|^2 + 1/m sum_i log(1 + exp(-y_i <a_i, x>)),

minibatches of 2. f* is found by Newton's method (float64). `runs` independent SGD runs are one batched
tensor program (a row per run) and the figure shows their mean gap f(x_k) - f*, log-log, for two constant
steps, a 1/sqrt(k) step and a 1/(mu k) step, with full-batch GD and lines C/sqrt(k), C/k for the rates:
for a strongly convex f, SGD with alpha_k ~ 1/(mu k) converges as O(1/k), with alpha_k ~ 1/sqrt(k) as
O(1/sqrt(k)) (up to logs), and with a constant alpha linearly down to a floor proportional to alpha.
"""

from __future__ import annotations

import math

import torch

from iclab.demos import save_figure
from iclab.training.optim import Params, build_optimizer


def problem(seed: int, m: int = 200, n: int = 10, mu: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=g, dtype=torch.float64)
    x_true = torch.randn(n, generator=g, dtype=torch.float64)
    y = torch.sign(A @ x_true + 0.5 * torch.randn(m, generator=g, dtype=torch.float64))
    return A, y, mu


def loss(X, A, y, mu):
    """f at each row of X (R, n) -> (R,)."""
    margins = -(X @ A.T) * y  # (R, m)
    return 0.5 * mu * X.pow(2).sum(-1) + torch.nn.functional.softplus(margins).mean(-1)


def minibatch_grad(X, A, y, mu, idx):
    """Stochastic gradients, one per row, from the rows' own minibatches idx (R, b)."""
    a, yy = A[idx], y[idx]  # (R, b, n), (R, b)
    s = torch.sigmoid(-(a @ X.unsqueeze(-1)).squeeze(-1) * yy)  # (R, b)
    return mu * X - ((s * yy).unsqueeze(-1) * a).mean(1)


def newton_min(A, y, mu, iters: int = 30):
    x = torch.zeros(A.shape[1], dtype=torch.float64, requires_grad=True)
    for _ in range(iters):
        f = loss(x[None], A, y, mu)[0]
        g = torch.autograd.grad(f, x, create_graph=True)[0]
        H = torch.stack([torch.autograd.grad(g[i], x, retain_graph=True)[0] for i in range(len(x))])
        x = (x - torch.linalg.solve(H, g)).detach().requires_grad_(True)
    return x.detach(), float(loss(x.detach()[None], A, y, mu)[0])


def run(out, seed: int = 0, steps: int = 20000, runs: int = 20, batch: int = 2) -> dict:
    A, y, mu = problem(seed)
    m, n = A.shape
    xstar, fstar = newton_min(A, y, mu)
    L = mu + float(torch.linalg.eigvalsh(A.T @ A / m).max()) / 4  # smoothness of f
    schedules = {  # name -> step size at iteration k (0-based)
        f"constant 1/L = {1 / L:.3f}": lambda k: 1 / L,
        f"constant 0.1/L = {0.1 / L:.4f}": lambda k: 0.1 / L,
        "1/(L sqrt(k+1))": lambda k: 1 / (L * math.sqrt(k + 1)),
        "2/(mu (k + 2L/mu))": lambda k: 2 / (mu * (k + 2 * L / mu)),
    }
    g = torch.Generator().manual_seed(seed + 1)
    x0 = torch.zeros(runs, n, dtype=torch.float64)
    record = sorted({int(round(v)) for v in torch.logspace(0, math.log10(steps), 60).tolist()})
    curves = {}
    for name, alpha in schedules.items():
        X = torch.nn.Parameter(x0.clone())
        opt = build_optimizer("sgd", Params([("x", X)]), 1.0, impl="for_loop")  # the registry's plain SGD
        gaps = []
        for k in range(1, steps + 1):
            idx = torch.randint(0, m, (runs, batch), generator=g)
            with torch.no_grad():
                X.grad = minibatch_grad(X, A, y, mu, idx)
            opt.param_groups[0]["lr"] = alpha(k - 1)
            opt.step()
            if k in record:
                with torch.no_grad():
                    gaps.append(float((loss(X, A, y, mu) - fstar).mean()))
        curves[name] = gaps
    X = x0[:1].clone()  # full-batch GD, step 1/L: linear convergence
    gd = []
    for k in range(1, steps + 1):
        Xr = X.requires_grad_(True)
        grad = torch.autograd.grad(loss(Xr, A, y, mu).sum(), Xr)[0]
        X = (X - grad / L).detach()
        if k in record:
            gd.append(max(float(loss(X, A, y, mu)[0] - fstar), 0.0))
    tail = {name: float(sum(c[-10:]) / 10) for name, c in curves.items()}  # mean of the last 10 recorded k
    result = {
        "demo": "noise-floor",
        "seed": seed,
        "steps": steps,
        "runs": runs,
        "batch": batch,
        "m": m,
        "n": n,
        "mu": mu,
        "L": L,
        "f_star": fstar,
        "iterations": record,
        "mean_gap": curves,
        "gd_gap": gd,
        "tail_mean_gap": tail,
    }
    _plot(result, out / "noise-floor.png")
    return result


def _plot(r, path):
    from iclab.plotting import plt

    k = torch.tensor(r["iterations"], dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, c in r["mean_gap"].items():
        ax.loglog(k, c, lw=1.8, label=f"SGD, step {name}")
    gd = [(kk, v) for kk, v in zip(r["iterations"], r["gd_gap"]) if v > 1e-16]
    if gd:
        ax.loglog(*zip(*gd), "k:", lw=1.2, label="GD (full batch), step 1/L")
    decay = r["mean_gap"]["2/(mu (k + 2L/mu))"]
    c1 = decay[-1] * k[-1]  # C/k through the end of the 1/(mu k) run, C/sqrt(k) through the 1/sqrt(k) run's
    c2 = r["mean_gap"]["1/(L sqrt(k+1))"][-1] * math.sqrt(k[-1])
    ax.loglog(k, c1 / k, "--", color="grey", lw=1, label="C / k")
    ax.loglog(k, c2 / k.sqrt(), "-.", color="grey", lw=1, label="C / sqrt(k)")
    ax.set_xlabel("iteration k")
    ax.set_ylabel(f"f(x_k) - f*  (mean over {r['runs']} runs)")
    ax.set_ylim(bottom=max(1e-9, min(min(c) for c in r["mean_gap"].values()) / 10))
    ax.set_title(
        f"SGD on logistic regression (m={r['m']}, n={r['n']}, mu={r['mu']:g}, batch {r['batch']}): "
        "constant steps stall at a noise floor",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
