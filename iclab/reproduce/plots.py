"""Figures of the reproduction entries: curves averaged over seeds with a 95% band across seeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.ticker import MaxNLocator  # noqa: E402

from iclab.evaluation.plots import baseline_style, error_label, run_color, save_figure  # noqa: E402
from iclab.reproduce.base import Run, mean_ci  # noqa: E402


def seed_band(ax, xs, curves: list[list[float]], label: str | None, color: str, band: bool = True, **kw) -> None:
    """Mean over seeds, a band of the 95% t-interval of the mean (band=False: none, where a few seeds' spikes would
    blow it up), and each seed as a thin line (label None: no legend entry)."""
    stats = [mean_ci([c[i] for c in curves]) for i in range(len(xs))]
    m = [s[0] for s in stats]
    h = [s[1] for s in stats]
    ax.plot(
        xs,
        m,
        color=color,
        lw=2,
        label=f"{label} (mean of {len(curves)} seeds)" if label and len(curves) > 1 else label,
        **kw,
    )
    if len(curves) > 1:
        if band:
            ax.fill_between(
                xs, [a - b for a, b in zip(m, h)], [a + b for a, b in zip(m, h)], color=color, alpha=0.2, lw=0
            )
        for c in curves:
            ax.plot(xs, c, color=color, lw=0.6, alpha=0.45)


def error_vs_examples(
    ax,
    groups: dict[str, list[dict]],
    baselines: list[str],
    title: str,
    mark_k: int | None = None,
    ylim: float | None = 1.5,
) -> None:
    """groups: label -> eval.json records (one per seed). Baselines are drawn from the first group's records."""
    for i, (label, evs) in enumerate(groups.items()):
        xs = list(range(len(evs[0]["model"]["mean"])))
        seed_band(ax, xs, [ev["model"]["mean"] for ev in evs], label, run_color(i))
    first = next(iter(groups.values()))
    for b in baselines:
        if b not in first[0]["baselines"]:
            continue
        name, color, ls = baseline_style(b)
        curve = first[0]["baselines"][b]["mean"]
        xs = [k for k, v in enumerate(curve) if v is not None]
        vals = [sum(ev["baselines"][b]["mean"][k] for ev in first) / len(first) for k in xs]
        ax.plot(xs, vals, color=color or "tab:gray", ls=ls or "--", lw=1.5, label=name)  # never a run's color
    if mark_k is not None:
        ax.axvline(mark_k, color="0.6", ls=":", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("in-context examples k")
    ax.set_ylabel(error_label(first[0]))
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=110)


def evals(runs: list[Run], name: str = "eval.json") -> list[dict]:
    return [r.json(name) for r in runs]


def finish(ax, xlabel: str, ylabel: str, title: str, logy: bool = False) -> None:
    """Labels, title, grid and legend of a figure panel."""
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both" if logy else "major")
    ax.legend(fontsize=7)
