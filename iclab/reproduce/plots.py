"""Figures of the reproduction entries: curves averaged over seeds with a 95% band across seeds and each seed
drawn; `verdict_figure`: every test's per-seed differences with the interval and the margin that decided it."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from iclab.evaluation.plots import baseline_style, error_label, run_color, save_figure
from iclab.plotting import plt
from iclab.reproduce.base import Run, mean_ci


def seed_band(
    ax, xs, curves: list[list[float]], label: str | None, color: str, band: bool = True, log: bool = False, **kw
) -> None:
    """Mean over seeds, a band of the 95% t-interval of the mean (band=False: none, where a few seeds' spikes would
    blow it up), and each seed as a thin line (label None: no legend entry). log=True, for a log-scaled axis: the
    geometric mean and the interval of the mean of log10 values, so the band is multiplicative and never dives
    below zero the way an arithmetic band does where seeds differ by orders of magnitude."""
    if log:
        logs = [[math.log10(v) if v > 0 else math.nan for v in c] for c in curves]
        stats = [mean_ci([c[i] for c in logs]) for i in range(len(xs))]
        m, lo, hi = ([10 ** (a + s * b) for a, b in stats] for s in (0, -1, 1))
    else:
        stats = [mean_ci([c[i] for c in curves]) for i in range(len(xs))]
        m, lo, hi = ([a + s * b for a, b in stats] for s in (0, -1, 1))
    mean = "geometric mean" if log else "mean"
    ax.plot(
        xs,
        m,
        color=color,
        lw=2,
        label=f"{label} ({mean} of {len(curves)} seeds)" if label and len(curves) > 1 else label,
        **kw,
    )
    if len(curves) > 1:
        if band:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0)
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


STATUS_COLOR = {"SUPPORTED": "tab:green", "CONTRADICTED": "tab:red", "INCONCLUSIVE": "tab:orange"}


def panel_note(t: dict) -> str:
    """What a verdict.png panel's values are: how many seeds were usable, or why there is no interval."""
    kind = "ratio" if t.get("log") else "difference"
    n_all = t.get("n_total", len(t.get("diffs", [])))
    if "ci95" not in t and t.get("all_diffs"):  # recorded, but no seed usable (e.g. none learned)
        return f"{kind}; 0 of {n_all} seeds usable"
    if "ci95" not in t:
        return "per-seed values not recorded"
    if t.get("from_summary"):
        return f"only mean +- 95% CI of {t['n']} seeds recorded"
    return f"{kind}; {len(t.get('diffs', []))} of {n_all} seeds"


def label_groups(xs: list[float], tol: float) -> list[list[int]]:
    """Indices of `xs` in groups that share one label: left to right, a dot joins the group of the dot before
    it when it lies within `tol` of it (equal values always do)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(xs)), key=lambda i: xs[i]):
        if groups and xs[i] - xs[groups[-1][-1]] < tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def verdict_figure(result: dict, path: Path) -> None:
    """One row per test of a result.json: each seed's paired difference (dots, labelled by seed), the 95%
    interval of the mean difference (bar), the margin (dashed) and 0 (grey); log tests on the ratio a / b."""
    import math

    tests = result.get("tests", [])
    fig, axes = plt.subplots(len(tests), 1, figsize=(7.5, 0.3 + 1.05 * max(1, len(tests))), squeeze=False)
    for ax, t in zip(axes[:, 0], tests):
        f = math.exp if t.get("log") else (lambda x: x)
        color = STATUS_COLOR[t["status"]]
        used = set(t.get("seeds", []))
        dots = [(s, d) for s, d in enumerate(t.get("all_diffs") or []) if d is not None]
        for s, d in dots:
            if s in used:
                ax.plot(f(d), 0, "o", color="k", ms=4, alpha=0.7)
            else:  # a seed on the plateau under one arm: drawn hollow, not in the test
                ax.plot(f(d), 0, "o", mfc="none", mec="0.5", ms=5)
        # seeds closer than 1.5% of the row's extent (equal ones too) share one label, "0,1", left to right
        g = (lambda x: x / math.log(10)) if t.get("log") else (lambda x: x)
        ends = [g(d) for _, d in dots] + [g(v) for v in (*t.get("ci95", ()), t["margin"], 0.0)]
        for group in label_groups([g(d) for _, d in dots], 0.015 * ((max(ends) - min(ends)) or 1.0)):
            x = f(sum(dots[i][1] for i in group) / len(group))
            text = ",".join(str(dots[i][0]) for i in group)
            ax.annotate(text, (x, 0), textcoords="offset points", xytext=(0, 5), fontsize=6, ha="center")
        if "ci95" in t:
            lo, hi = t["ci95"]
            ax.plot([f(lo), f(hi)], [-0.5, -0.5], color=color, lw=3, solid_capstyle="butt")
            ax.plot(f(t["effect"]), -0.5, "|", color="k", ms=10)
        margins = [t["margin"]] + ([-t["margin"]] if t["kind"] == "equivalent" else [])
        for m in margins:
            ax.axvline(f(m), color=color, ls="--", lw=1)
        ax.axvline(f(0.0), color="0.6", lw=0.8)
        if t.get("log"):
            ax.set_xscale("log")
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        ax.set_title(
            f"{t['lhs']} ({panel_note(t)}): {t['status']}",
            fontsize=8,
            color=color,
            loc="left",
        )
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(
        f"{result['name']} ({result['scale']}): {result.get('verdict')} - dots: seeds (hollow: not learned, left "
        "out); bar: 95% CI of the mean; dashed: margin",
        fontsize=8,
    )
    save(fig, path)
