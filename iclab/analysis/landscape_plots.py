"""Figures of `iclab landscape` (iclab/analysis/landscape.py): a 1-D loss line, a 2-D contour or surface
through weight space, and several runs' landscapes side by side."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from iclab.evaluation.plots import save_figure


def _plt():
    from iclab.plotting import plt

    return plt


def _xlabel(rec: dict) -> str:
    return {"init": "a  (0: initial weights, 1: final)", "random": "a  (filter-normalized direction 1)", "pca": "PC 1"}[
        rec["directions"]
    ]


def _draw_1d(ax, rec: dict, label: str | None = None, color=None):
    ax.plot(rec["alphas"], rec["loss"], lw=2, label=label, color=color)
    if rec["directions"] == "init":
        for a in (0, 1):
            ax.axvline(a, color="gray", ls=":", lw=0.8)
    else:
        ax.axvline(0, color="gray", ls=":", lw=0.8)
    ax.set_xlabel(_xlabel(rec))
    ax.set_ylabel("loss")
    if min(rec["loss"]) > 0 and max(rec["loss"]) / min(rec["loss"]) > 30:
        ax.set_yscale("log")


def _levels(Z: np.ndarray, lo: float | None = None, hi: float | None = None, n: int = 25) -> np.ndarray:
    """Contour levels spaced in log (loss spans decades near a minimum)."""
    Zp = Z[np.isfinite(Z) & (Z > 0)]
    lo = lo if lo is not None else float(Zp.min())
    hi = hi if hi is not None else float(Zp.max())
    if hi <= lo * 1.0001:
        hi = lo * 1.01 + 1e-12
    return np.geomspace(lo, hi, n)


def _draw_contour(ax, rec: dict, levels=None):
    A, B = np.meshgrid(rec["alphas"], rec["betas"], indexing="ij")
    Z = np.asarray(rec["loss"], dtype=float)
    cs = ax.contourf(
        A,
        B,
        Z,
        levels=levels if levels is not None else _levels(Z),
        cmap="viridis",
        norm=_lognorm(levels if levels is not None else _levels(Z)),
    )
    ax.contour(A, B, Z, levels=cs.levels[::3], colors="white", linewidths=0.4, alpha=0.6)
    if "trajectory" in rec:
        xs = [p["x"] for p in rec["trajectory"]]
        ys = [p["y"] for p in rec["trajectory"]]
        ax.plot(xs, ys, "-o", color="red", ms=3, lw=1.2, label="trajectory")
        ax.annotate(f"step {rec['trajectory'][0]['step']}", (xs[0], ys[0]), color="red", fontsize=7)
        ax.plot(0, 0, "*", color="white", ms=10, mec="k", label=f"step {rec['step']}")
        ev = rec["explained_variance"]
        ax.set_xlabel(f"PC 1 ({100 * ev[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * ev[1]:.1f}%)")
        ax.legend(fontsize=7, loc="upper right")
    else:
        ax.plot(0, 0, "*", color="white", ms=10, mec="k")
        ax.set_xlabel("a  (direction 1)")
        ax.set_ylabel("b  (direction 2)")
    return cs


def _lognorm(levels):
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=levels[0], vmax=levels[-1])


def _draw_surface(ax, rec: dict, zlim=None):
    A, B = np.meshgrid(rec["alphas"], rec["betas"], indexing="ij")
    Z = np.log10(np.clip(np.asarray(rec["loss"], dtype=float), 1e-12, None))
    ax.plot_surface(A, B, Z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.95)
    ax.set_xlabel("a" if rec["directions"] != "pca" else "PC 1", fontsize=8)
    ax.set_ylabel("b" if rec["directions"] != "pca" else "PC 2", fontsize=8)
    ax.set_zlabel("log10 loss", fontsize=8)
    if zlim:
        ax.set_zlim(*zlim)
    ax.tick_params(labelsize=6)


def plot_landscape(rec: dict, path: Path, title: str = "") -> Path:
    plt = _plt()
    what = f"{rec['directions']} directions, step {rec['step']}"
    if rec["dims"] == 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        _draw_1d(ax, rec)
        ax.set_title(f"{title}: loss along a line ({what})", fontsize=9)
    else:
        fig = plt.figure(figsize=(12, 5))
        ax = fig.add_subplot(1, 2, 1)
        cs = _draw_contour(ax, rec)
        fig.colorbar(cs, ax=ax, label="loss (log scale)", format="%.3g")
        ax.set_title("contours", fontsize=9)
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        _draw_surface(ax3, rec)
        ax3.set_title("surface", fontsize=9)
        fig.suptitle(f"{title}: loss on a plane ({what})", fontsize=10)
    return save_figure(fig, path)


def plot_compare(recs: list[dict], labels: list[str], path: Path) -> Path:
    """Several runs side by side: 1-D curves overlaid (and each in its own panel); 2-D contours on a shared
    log scale with the 3-D surfaces under them."""
    plt = _plt()
    n = len(recs)
    what = f"{recs[0]['directions']} directions"
    if recs[0]["dims"] == 1:
        fig, axes = plt.subplots(1, n + 1, figsize=(4.2 * (n + 1), 3.8), squeeze=False)
        colors = plt.get_cmap("tab10").colors
        for i, (r, lab) in enumerate(zip(recs, labels)):
            _draw_1d(axes[0, 0], r, lab, colors[i % 10])
            _draw_1d(axes[0, i + 1], r, lab, colors[i % 10])
            axes[0, i + 1].set_title(f"{lab} (step {r['step']})", fontsize=9)
        axes[0, 0].legend(fontsize=8)
        axes[0, 0].set_title("all runs", fontsize=9)
    else:
        allz = np.concatenate([np.asarray(r["loss"], dtype=float).ravel() for r in recs])
        allz = allz[np.isfinite(allz) & (allz > 0)]
        levels = _levels(allz, float(allz.min()), float(allz.max()))
        zlim = (math.log10(levels[0]), math.log10(levels[-1]))
        fig = plt.figure(figsize=(5.2 * n, 9))
        for i, (r, lab) in enumerate(zip(recs, labels)):
            ax = fig.add_subplot(2, n, i + 1)
            cs = _draw_contour(ax, r, levels)
            ax.set_title(f"{lab}\n(step {r['step']}, loss at the center {r['center_loss']:.3g})", fontsize=9)
            ax3 = fig.add_subplot(2, n, n + i + 1, projection="3d")
            _draw_surface(ax3, r, zlim)
        fig.colorbar(cs, ax=fig.axes[: 2 * n : 2], label="loss (log scale, shared)", shrink=0.6, format="%.3g")
    fig.suptitle(f"loss landscapes compared ({what}; the same batches and direction seed for every run)", fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
