"""Paper-style figures from eval.json / loops.json records."""

from __future__ import annotations

from pathlib import Path

from iclab.plotting import plt

BASELINE_STYLE = {
    "least_squares": ("Least Squares", "k", "--"),
    "knn": ("3-Nearest Neighbors", "tab:green", ":"),
    "averaging": ("Averaging", "tab:orange", "-."),
    "ridge": ("Ridge", "tab:brown", "--"),
    "lasso": ("Lasso", "tab:purple", "--"),
    "decision_tree": ("Greedy Tree Learning", "tab:olive", ":"),
    "xgboost": ("XGBoost", "tab:cyan", "-."),
    "relu_net_gd": ("2-layer NN, GD", "tab:pink", "--"),
}


def baseline_style(key: str) -> tuple[str, str | None, str]:
    """(legend text, color, line style) of a baseline curve keyed by its name or label ('lasso(alpha=0.1)')."""
    if key in BASELINE_STYLE:
        return BASELINE_STYLE[key]
    base = key.split("(")[0]
    if base in BASELINE_STYLE:
        return key, None, BASELINE_STYLE[base][2]  # several variants of one baseline: distinct colors
    return key, None, "--"


RUN_COLORS = [
    "tab:blue",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
]  # none a baseline's


def run_color(i: int) -> str:
    return RUN_COLORS[i % len(RUN_COLORS)]


def _band(ax, xs, curve, label, **kw):
    keep = [i for i, m in enumerate(curve["mean"]) if m is not None]  # baselines fitted at some positions only
    xs = [xs[i] for i in keep]
    mean, ci = [curve["mean"][i] for i in keep], [curve["ci95"][i] for i in keep]
    if len(keep) < len(curve["mean"]):
        kw.setdefault("marker", ".")
    (line,) = ax.plot(xs, mean, label=label, **kw)
    ax.fill_between(
        xs, [m - c for m, c in zip(mean, ci)], [m + c for m, c in zip(mean, ci)], color=line.get_color(), alpha=0.15
    )


def save_figure(fig, path, dpi: int = 120) -> Path:
    """tight_layout, save, close: the end of every figure function."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def error_label(ev: dict) -> str:
    """The y label of an error curve: what the error is divided by (d for linear regression, s for sparse,
    1 for trees, d + noise^2 for noisy labels: the error of predicting 0), not always d."""
    norm = ev.get("normalization")
    if norm is None:
        return "normalized squared error"
    return f"squared error / {norm:g}  (1 = predicting 0)"


def plot_error_curves(runs: list[tuple[str, dict]], path: Path, title: str | None = None) -> Path:
    """Normalized squared error vs number of in-context examples: each run's model, and the baselines
    of the first run (all runs of one figure should share the task)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, ev) in enumerate(runs):
        _band(ax, list(range(ev["n_points"])), ev["model"], label, lw=2, color=run_color(i))
    ev0 = runs[0][1]
    xs = list(range(ev0["n_points"]))
    for name, curve in ev0["baselines"].items():
        lab, color, ls = baseline_style(name)
        _band(ax, xs, curve, lab, color=color, ls=ls, lw=1.5)
    ax.axhline(1.0, color="gray", lw=0.8, alpha=0.6)
    ax.axvline(ev0["n_dims"], color="gray", lw=0.8, ls=":", alpha=0.6)
    ax.set_xlabel("in-context examples")
    ax.set_ylabel(error_label(ev0))
    ax.set_ylim(-0.05, 1.3)
    ax.set_title(title or f"{ev0['task']}, d={ev0['n_dims']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_loop_curves(runs: list[tuple[str, dict]], path: Path, title: str | None = None) -> Path:
    """Normalized squared error (at the last point of the prompt) vs number of loop iterations; a dotted
    line marks the b each run was trained with."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, lr) in enumerate(runs):
        (line,) = ax.plot(lr["loops"], lr["last_point"], label=label, lw=2, color=run_color(i))
        if lr.get("trained_loops"):
            ax.axvline(lr["trained_loops"], color=line.get_color(), ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("loop iterations")
    ax.set_ylabel(f"normalized squared error at {runs[0][1]['n_points'] - 1} examples")
    ax.set_title(title or "error vs loop iterations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


NGRAM_COLORS = {"unigram": "tab:gray", "bigram_kn": "tab:green", "trigram_kn": "tab:orange", "5gram_kn": "k"}


def plot_lm_eval(run_dir: Path, ev: dict, out: Path) -> None:
    """Two panels: validation bits per token vs training step (from metrics.jsonl), and vs position in the
    context after training; each n-gram baseline is a horizontal line."""
    import json
    import math

    recs = []
    metrics = Path(run_dir) / "metrics.jsonl"
    if metrics.is_file():
        recs = [r for r in (json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()) if "val/bits" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    unit = "char" if ev["tokenizer"] == "char" else "token"
    if recs:
        ax1.plot(
            [r["step"] for r in recs], [r["val/bits"] for r in recs], color=run_color(0), marker=".", label="model"
        )
        ax1.set_xscale("log")
    pos = ev["loss_per_position"]
    ax2.plot(range(len(pos)), [v / math.log(2) for v in pos], color=run_color(0), label="model")
    for name, b in ev["baselines"].items():
        for ax in (ax1, ax2):
            ax.axhline(b["bits"], color=NGRAM_COLORS.get(name), ls="--", lw=1, label=name)
    if ev.get("step") is not None:  # the final evaluation (whole val split), where the logged curve ends
        ax1.plot([ev["step"]], [ev["bits"]], "*", ms=11, color=run_color(0), label="evaluation (whole val split)")
    ax1.set(
        xlabel="training step",
        ylabel=f"validation bits per {unit}",
        title="validation loss during training (logged on fixed windows)",
    )
    ax2.axhline(ev["bits"], color=run_color(0), ls=":", lw=1.2, label=f"model, mean over positions {ev['bits']:.3f}")
    ax2.set(
        xlabel="position in the context (tokens before it)",
        ylabel=f"bits per {unit}",
        title=f"after training: {ev['bits']:.3f} bits per {unit} = {ev['loss']:.3f} nats (mean over positions)",
    )
    for ax in (ax1, ax2):  # the same quantity in nats, as the progress bar and the logit lens show it
        nats = ax.secondary_yaxis("right", functions=(lambda v: v * math.log(2), lambda v: v / math.log(2)))
        nats.set_ylabel(f"nats per {'token' if unit == 'token' else 'char (= token)'}")
    ax2.set_xscale("symlog", linthresh=1)
    ax2.set_xlim(left=0)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
