"""Figures of `iclab heads`: heads.png (score maps, ablation map, example patterns) and the phase change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from iclab.analysis.heads import attention_calls, induction_summary


def _grid(res: dict, key: str) -> tuple[np.ndarray, list[str]]:
    """(rows = iteration.layer, heads) of a score, and the row labels."""
    rows = sorted({(r["iteration"], r["layer"]) for r in res["heads"]})
    grid = np.full((len(rows), res["n_head"]), np.nan)
    for r in res["heads"]:
        v = r.get(key)
        grid[rows.index((r["iteration"], r["layer"])), r["head"]] = np.nan if v is None else v
    looped = res["loops"] > 1
    return grid, [f"it {t} L{L}" if looped else f"L{L}" for t, L in rows]


def _heatmap(ax, grid, rows, title, res, cmap="viridis", center=False, fmt="{:.2f}", floor=None):
    """floor: a score map's no-preference level; the colour scale then runs from 0 to at least twice it, so
    scores that are all near that level do not look like structure."""
    import matplotlib.colors as mcolors
    import matplotlib.patheffects as pe

    stroke = [pe.withStroke(linewidth=1.5, foreground="k")]

    norm = None
    if floor is not None and np.isfinite(grid).any():
        norm = mcolors.Normalize(vmin=0.0, vmax=max(float(np.nanmax(grid)), 2 * floor))
    if center:
        lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
        norm = mcolors.TwoSlopeNorm(vcenter=0.0, vmin=-lim - 1e-12, vmax=lim + 1e-12)
    im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto")
    reads = {(r["iteration"], r["layer"], r["head"]): r["reads"] for r in res["heads"]}
    keys = sorted({(r["iteration"], r["layer"]) for r in res["heads"]})
    small = grid.size <= 64
    wide = grid.shape[1] > 4  # narrow cells: drop the leading zero (+.044) so neighbours do not overlap
    for i, (t, L) in enumerate(keys):
        for h in range(grid.shape[1]):
            txt = "" if np.isnan(grid[i, h]) or not small else fmt.format(grid[i, h])
            if wide:
                txt = txt.replace("0.", ".", 1)
            if reads.get((t, L, h), L) != L:
                txt += f"\n<-L{reads[(t, L, h)]}"  # a Reflex cross head: the layer whose K/V it reads
            ax.text(h, i, txt, ha="center", va="center", fontsize=6, color="w", path_effects=stroke)
    ax.set_xticks(range(grid.shape[1]), [str(h) for h in range(grid.shape[1])])
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("head")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)


def _floor(res: dict, data: dict, key: str) -> float:
    """The score of evenly spread attention: on the repeated blocks for the induction score, else heads.json's."""
    if key != "induction":
        return res["uniform"][key]
    T = data["repeated"].shape[1]
    P = torch.ones(T, T).tril()
    return float(induction_summary((P / P.sum(-1, keepdim=True))[None, None])["induction"][0])


def _example_patterns(fig, gs, res: dict, model, data: dict, key: str) -> None:
    """The bottom row of heads.png: the attention patterns of the three best heads on one sequence."""
    from matplotlib.ticker import MaxNLocator

    tops, seen = [], set()
    for r in sorted(res["heads"], key=lambda r: -r[key]):
        if (r["iteration"], r["layer"], r["head"]) not in seen:
            seen.add((r["iteration"], r["layer"], r["head"]))
            tops.append(r)
        if len(tops) == 3:
            break
    if res["family"] == "regression":
        xs, ys = data["patterns"]
        calls = attention_calls(model, lambda: model.predict(xs[:1], ys[:1]))
        what = "one prompt (x at even positions)"
    else:
        seq = data["repeated"][:1]
        calls = attention_calls(model, lambda: model.logits(seq))
        what = f"a random block of {seq.shape[1] // 2} tokens, repeated"
    P = {(t, L): p[0] for t, L, p in calls}
    for i, r in enumerate(tops):
        ax = fig.add_subplot(gs[1, i])
        ax.imshow(P[(r["iteration"], r["layer"])][r["head"]].float().numpy(), cmap="Blues", vmin=0, vmax=1)
        reads = "" if r["reads"] == r["layer"] else f", reads L{r['reads']}"
        it = f"it {r['iteration']} " if res["loops"] > 1 else ""
        ax.set_title(f"{it}head {r['label']}{reads}: {key} {r[key]:.2f}\n{what}", fontsize=8)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def plot_heads(res: dict, model, data: dict, path: Path, title: str | None = None) -> Path:
    from iclab.evaluation.plots import plt

    key, metric = res["score_key"], res["headline"]["metric"]
    fig = plt.figure(figsize=(13 + 0.9 * max(0, res["n_head"] - 4), 7.5))
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 1])
    label = {"induction": "induction score (repeated random tokens)", "x_to_x": "attention x -> earlier x"}[key]
    floor = _floor(res, data, key)
    g, rows = _grid(res, key)
    _heatmap(fig.add_subplot(gs[0, 0]), g, rows, f"{label}\n(evenly spread attention: {floor:.3f})", res, floor=floor)
    g2, _ = _grid(res, "prev_token")
    u = res["uniform"]["prev_token"]
    _heatmap(
        fig.add_subplot(gs[0, 1]), g2, rows, f"attention to the previous token\n(evenly spread: {u:.3f})", res, floor=u
    )
    abl = np.full((res["n_layer"], res["n_head"]), np.nan)
    for lab, a in res["ablation"].items():
        L, H = (int(v) for v in lab.split("."))
        abl[L, H] = a["mean"][metric]["delta"]
    sub = {**res, "heads": [r for r in res["heads"] if r["iteration"] == 0], "loops": 1}
    _heatmap(
        fig.add_subplot(gs[0, 2]),
        abl,
        [f"L{L}" for L in range(res["n_layer"])],
        f"mean ablation: change of {res['headline']['description']}",
        sub,
        cmap="RdBu_r",
        center=True,
        fmt="{:+.3f}",
    )
    _example_patterns(fig, gs, res, model, data, key)
    fig.suptitle(title or f"heads: {res['task']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_over_training(rec: dict, path: Path, title: str | None = None) -> Path:
    """Three panels against the step: loss, the in-context score (or the headline error), and the scores of
    every head (thin) with the best one (bold)."""
    from iclab.evaluation.plots import plt

    steps = rec["steps"]
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 8.5), sharex=True)
    ax = axes[0]
    tr = [(s, v) for s, v in zip(rec["train_steps"], rec["train_loss"])]
    if tr:
        ax.plot(*zip(*tr), color="tab:gray", lw=1, label="training loss (logged)")
    if rec["kind"] != "regression":
        ax.plot(steps, rec["eval_loss"], "o-", color="k", ms=3, label=rec["eval_label"])
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(steps, rec["in_context"], "o-", color="tab:red", ms=3, label=rec["in_context_label"])
    if rec.get("repeat_gain"):
        ax.plot(steps, rec["repeat_gain"], "s--", color="tab:orange", ms=3, label="repeated block: 2nd - 1st copy loss")
        ax.legend(fontsize=7)
    ax.axhline(0, color="gray", lw=0.7)
    ax.set_ylabel("loss difference (nats)" if rec.get("repeat_gain") else rec["in_context_label"], fontsize=8)
    ax = axes[2]
    for i, vals in enumerate(rec["per_head"].values()):
        ax.plot(steps, vals, lw=0.6, alpha=0.5, label="each head (thin)" if i == 0 else None)
    ax.plot(steps, rec["best"], "o-", color="tab:blue", lw=2, ms=3, label=f"best head ({rec['score_key']})")
    if "uniform" in rec:
        ax.axhline(rec["uniform"], color="gray", ls="--", lw=1, label="evenly spread attention")
    ax.set_ylabel(f"{rec['score_key']} score per head")
    ax.set_xlabel("training step")
    ax.legend(fontsize=7)
    marks = [  # the half-way steps (heads_training.first_reaching), named in the top panel's legend
        (rec.get("score_half_step"), ":", f"best {rec['score_key']} score half-way"),
        (rec.get("in_context_half_step"), "--", "in-context score half-way"),
    ]
    for i, ax in enumerate(axes):
        ax.grid(alpha=0.3)
        for s, ls, what in marks:
            if s is not None:
                ax.axvline(s, color="tab:purple", ls=ls, lw=1, label=f"{what} (step {s})" if i == 0 else None)
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "phase change over training", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
