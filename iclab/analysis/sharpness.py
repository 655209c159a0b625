"""Sharpness: the top Hessian eigenvalues and the Hessian trace of a run's training loss, and their course
over training against the gradient-descent stability threshold 2/lr (the edge of stability, Cohen et al. 2021).

    iclab sharpness RUN [--top K] [--trace-samples N] [--batches N] [--method lanczos|power] [--seed S]

The loss is the one the landscape uses (iclab/analysis/landscape.py: `workload.loss` on the fixed batches of
step ids 10**12 + i, model in eval mode). Hessian-vector products are forward-over-reverse,
`torch.func.jvp(torch.func.grad(L), (theta,), (v,))` with `functional_call`; attention runs SDPA's math
kernel inside it (the fused CPU kernels have no second derivative). The Hessian is never formed.

    top eigenvalues  Lanczos: scipy.sparse.linalg.eigsh (implicitly restarted Lanczos, ARPACK) on a
                     LinearOperator of HVPs, which="LA" (the largest algebraic), start vector from the seed;
                     power: power iteration on H, which finds the eigenvalue of largest magnitude (equal to the
                     top one unless a negative eigenvalue is larger in magnitude), top-1 only.
    trace            Hutchinson: tr H = E[v^T H v] for Rademacher v; the mean over N samples and its standard
                     error.

Over training (every saved weight set: init.safetensors, the kept checkpoints, the final weights), RUN/sharpness.json

    {"run", "optimizer", "method", "top", "batches": {...}, "points": [{"step", "lr", "eigenvalues": [...],
     "trace", "trace_stderr", "loss"}], "seconds"}

and RUN/sharpness.png: the top eigenvalue (and the trace, when asked) vs step, with 2/lr(step) drawn. For SGD
without momentum 2/lr is the stability threshold of the quadratic model; for momentum beta it is
(2 + 2 beta)/lr and for Adam the preconditioned sharpness is the one that meets 2/lr (Cohen et al. 2022):
the figure says which applies.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, grad, jvp

from iclab.errors import IclabError
from iclab.evaluation.plots import save_figure
from iclab.files import write_json


class SharpnessError(IclabError, ValueError):
    pass


def _math_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


class Hessian:
    """The Hessian of `loss_of(params)` at `params` (a dict name -> tensor), as HVPs on flat vectors."""

    def __init__(self, loss_of, params: dict[str, torch.Tensor]):
        self.loss_of = loss_of
        self.params = {k: v.detach() for k, v in params.items()}
        self.names = list(self.params)
        self.sizes = [self.params[k].numel() for k in self.names]
        self.n = sum(self.sizes)
        self.device = next(iter(self.params.values())).device
        self.n_hvp = 0

    def _unflat(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: c.view_as(self.params[k]) for k, c in zip(self.names, v.split(self.sizes))}

    def loss(self) -> float:
        with torch.no_grad(), _math_attention():
            return float(self.loss_of(self.params))

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat float32 vector v on the parameters' device."""
        with _math_attention():
            _, hv = jvp(grad(self.loss_of), (self.params,), (self._unflat(v),))
        self.n_hvp += 1
        return torch.cat([hv[k].reshape(-1) for k in self.names])

    def top_eigenvalues(
        self, k: int = 1, method: str = "lanczos", seed: int = 0, tol: float = 1e-4, max_iter: int = 200
    ) -> list[float]:
        """The k largest eigenvalues, largest first (see the module docstring for the methods)."""
        if k < 1 or k >= self.n:
            raise SharpnessError(f"--top {k}: need 1 <= k < {self.n} (the number of parameters)")
        gen = torch.Generator().manual_seed(seed)
        v0 = torch.randn(self.n, generator=gen, dtype=torch.float64)
        if method == "power":
            if k != 1:
                raise SharpnessError("--method power finds the top eigenvalue only: use --top 1 or --method lanczos")
            return [self._power(v0, tol, max_iter)]
        if method != "lanczos":
            raise SharpnessError(f"--method {method!r}: expected lanczos or power")
        from scipy.sparse.linalg import LinearOperator, eigsh

        def mv(x):
            v = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1)).to(self.device)
            return self.hvp(v).double().cpu().numpy()

        op = LinearOperator((self.n, self.n), matvec=mv, dtype=np.float64)
        vals = eigsh(
            op, k=k, which="LA", v0=v0.numpy(), tol=tol, maxiter=max_iter * max(k, 1), return_eigenvectors=False
        )
        return sorted((float(x) for x in vals), reverse=True)

    def _power(self, v0: torch.Tensor, tol: float, max_iter: int) -> float:
        v = (v0 / v0.norm()).float().to(self.device)
        lam = 0.0
        for _ in range(max_iter):
            hv = self.hvp(v)
            new = float(torch.dot(v, hv))
            v = hv / (hv.norm() + 1e-30)
            if abs(new - lam) <= tol * max(abs(new), 1e-12):
                return new
            lam = new
        return lam

    def trace(self, n_samples: int = 100, seed: int = 0) -> tuple[float, float]:
        """Hutchinson's estimate of tr H with Rademacher vectors: (mean, standard error)."""
        if n_samples < 2:
            raise SharpnessError(f"--trace-samples {n_samples}: need at least 2 (or 0 to skip the trace)")
        gen = torch.Generator().manual_seed(seed)
        vals = []
        for _ in range(n_samples):
            v = (torch.randint(0, 2, (self.n,), generator=gen) * 2 - 1).float().to(self.device)
            vals.append(float(torch.dot(v, self.hvp(v))))
        a = np.asarray(vals)
        return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a)))


def workload_loss(workload, model, batches, cur):
    """params -> the mean training loss over the fixed batches, through `functional_call`."""

    def loss_of(params):
        def fwd(*a, **kw):
            return functional_call(model, params, a, kw)

        return sum(workload.loss(fwd, b, cur) for b in batches) / len(batches)

    return loss_of


def stability_note(cfg) -> str:
    o = cfg.training.optimizer
    if o.name == "sgd":
        mom = float(o.options.get("momentum", 0.0) or 0.0)
        return (
            "2/lr: GD's stability threshold" if mom == 0 else f"(2+2*{mom:g})/lr: the threshold with momentum {mom:g}"
        )
    return (
        f"2/lr drawn for reference: with {o.name} the preconditioned sharpness, not this one, meets the "
        f"threshold (Cohen et al. 2022)"
    )


def threshold(cfg, lr: float) -> float:
    o = cfg.training.optimizer
    mom = float(o.options.get("momentum", 0.0) or 0.0) if o.name == "sgd" else 0.0
    return (2.0 + 2.0 * mom) / lr if lr > 0 else float("inf")


def sharpness_over_training(
    run_dir: Path,
    *,
    top: int = 1,
    trace_samples: int = 0,
    n_batches: int = 2,
    method: str = "lanczos",
    seed: int = 0,
    steps: list[int] | None = None,
) -> dict:
    """Top eigenvalues (and the trace) at every saved weight set of the run; writes sharpness.json/.png."""
    from iclab.analysis.landscape import LossFn, open_model, param_names, run_weights, select, trajectory
    from iclab.training.optim import lr_factor

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    cfg, workload, model, device = open_model(run_dir)
    names = param_names(model)
    fixed = LossFn(cfg, workload, model, n_batches, device)
    loss_of = workload_loss(workload, model, fixed.batches, fixed.cur)
    if steps:
        traj = [(s, run_weights(run_dir, cfg, workload, s)[0]) for s in steps]
    else:
        traj = trajectory(run_dir, cfg, workload)
    points = []
    for step, state in traj:
        H = Hessian(loss_of, select(state, names, device))
        lr = cfg.training.lr * lr_factor(cfg.training, min(step, cfg.training.steps - 1))  # of the next step
        p = {
            "step": step,
            "lr": lr,
            "threshold": threshold(cfg, lr),
            "loss": H.loss(),
            "eigenvalues": H.top_eigenvalues(top, method=method, seed=seed),
        }
        if trace_samples:
            p["trace"], p["trace_stderr"] = H.trace(trace_samples, seed=seed)
        p["hvps"] = H.n_hvp
        points.append(p)
    rec = {
        "run": str(run_dir),
        "task": cfg.task.name,
        "optimizer": cfg.training.optimizer.name,
        "optimizer_options": dict(cfg.training.optimizer.options),
        "method": method,
        "top": top,
        "trace_samples": trace_samples,
        "seed": seed,
        "n_params": sum(state[n].numel() for n in names),
        "batches": fixed.describe(cfg),
        "note": stability_note(cfg),
        "points": points,
        "seconds": time.perf_counter() - t0,
    }
    write_json(run_dir / "sharpness.json", rec)
    rec["figure"] = str(plot_sharpness(rec, run_dir / "sharpness.png", title=run_dir.name))
    rec["path"] = str(run_dir / "sharpness.json")
    return rec


def _yscale(ax, values) -> None:
    """Log when the values are positive and span more than a decade and a half, else linear from 0."""
    v = [x for x in values if np.isfinite(x)]
    if v and min(v) > 0 and max(v) / min(v) > 30:
        ax.set_yscale("log")
    elif v and min(v) >= 0:
        ax.set_ylim(0, 1.08 * max(v))


def plot_sharpness(rec: dict, path: Path, title: str = "") -> Path:
    from iclab.plotting import plt

    pts = rec["points"]
    steps = [p["step"] for p in pts]
    ncol = 2 if rec["trace_samples"] else 1
    fig, axes = plt.subplots(1, ncol + 1, figsize=(5.5 * (ncol + 1), 4), squeeze=False)
    ax = axes[0, 0]
    for i in range(rec["top"]):
        ax.plot(
            steps,
            [p["eigenvalues"][i] for p in pts],
            "-o",
            ms=3,
            lw=2 if i == 0 else 1,
            label="top eigenvalue" if i == 0 else f"eigenvalue {i + 1}",
        )
    ax.plot(
        steps,
        [p["threshold"] for p in pts],
        "--",
        color="k",
        lw=1.2,
        label="2/lr" if rec["optimizer"] != "sgd" or not rec["optimizer_options"].get("momentum") else "(2+2 beta)/lr",
    )
    ax.set_xlabel("training step")
    ax.set_ylabel("Hessian eigenvalue")
    _yscale(ax, [p["eigenvalues"][0] for p in pts] + [p["threshold"] for p in pts])
    ax.set_title(f"sharpness ({rec['method']})", fontsize=9)
    ax.legend(fontsize=7)
    if rec["trace_samples"]:
        bx = axes[0, 1]
        tr = np.array([p["trace"] for p in pts])
        se = np.array([p["trace_stderr"] for p in pts])
        bx.errorbar(steps, tr, yerr=1.96 * se, fmt="-o", ms=3, color="tab:green", capsize=2)
        bx.set_xlabel("training step")
        bx.set_ylabel("trace of the Hessian (Hutchinson, 95% CI)")
        _yscale(bx, list(tr + 1.96 * se))
        bx.set_title(f"trace ({rec['trace_samples']} Rademacher samples)", fontsize=9)
    cx = axes[0, -1]
    cx.plot(steps, [p["loss"] for p in pts], "-o", ms=3, color="tab:red")
    cx.set_xlabel("training step")
    cx.set_ylabel("loss on the fixed batches")
    _yscale(cx, [p["loss"] for p in pts])
    fig.suptitle(f"{title}: {rec['optimizer']}; {rec['note']}", fontsize=9)
    return save_figure(fig, path)
