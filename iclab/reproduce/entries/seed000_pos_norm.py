"""Seed 000's open question as a controlled 2x2 experiment: position embedding and final LayerNorm at every loop
iteration or once."""

import matplotlib.pyplot as plt

from iclab.evaluation.plots import run_color
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, at, fmt_ci, k2d, less, mean_ci
from iclab.reproduce.plots import evals, save

LABELS = ("pos every, norm every", "pos once, norm every", "pos every, norm once", "pos once, norm once")


def _errors(runs):
    k = k2d(evals(runs[LABELS[0]])[0])
    return k, {lab: [at(ev["model"], k) for ev in evals(runs[lab])] for lab in LABELS}


def check(runs) -> Verdict:
    k, e = _errors(runs)
    m = {lab: mean_ci(v)[0] for lab, v in e.items()}
    return Verdict(
        f"at k={k}: " + "; ".join(f"{lab} {fmt_ci(e[lab])}" for lab in LABELS),
        {"k": k, **m},
        [
            "main effects (mean over the other factor): position once - every = "
            f"{(m[LABELS[1]] + m[LABELS[3]] - m[LABELS[0]] - m[LABELS[2]]) / 2:+.4f}, norm once - every = "
            f"{(m[LABELS[2]] + m[LABELS[3]] - m[LABELS[0]] - m[LABELS[1]]) / 2:+.4f}"
        ],
        dict(e),
    )


def figure(runs, path):
    k, e = _errors(runs)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, lab in enumerate(LABELS):
        mean, half = mean_ci(e[lab])
        ax.bar(i, mean, yerr=half, color=run_color(i), alpha=0.8, capsize=4)
        ax.scatter([i] * len(e[lab]), e[lab], color="k", s=10, zorder=3)
    ax.set_xticks(range(len(LABELS)), [lab.replace(", ", "\n") for lab in LABELS], fontsize=8)
    ax.set_ylabel(f"normalized squared error at k={k}")
    ax.set_title(
        "position embedding and final norm: every loop vs once (seed 000)\nbars: mean, 95% CI; dots: seeds", fontsize=10
    )
    ax.grid(alpha=0.3, axis="y")
    save(fig, path)


REPRODUCTIONS.register("seed000-pos-norm", help="2x2: position embedding / final norm every loop vs once")(
    Entry(
        name="seed000-pos-norm",
        source="Seed 000 (looped transformers, an open question)",
        claim="Re-applying the position embedding and the final LayerNorm at every loop iteration (the original code) "
        "works better than applying them once; the 2x2 experiment separates the two factors.",
        criterion="at k=2d the every/every model's error is below each of the three other variants' (paired by seed)",
        tests=[less(LABELS[0], lab) for lab in LABELS[1:]],
        configs={
            "tiny": {
                LABELS[0]: "configs/looped/seed000/tiny/base.yaml",
                LABELS[1]: "configs/looped/seed000/tiny/pos_once.yaml",
                LABELS[2]: "configs/looped/seed000/tiny/norm_once.yaml",
                LABELS[3]: "configs/looped/seed000/tiny/pos_norm_once.yaml",
            },
            "full": {
                LABELS[0]: "configs/looped/seed000/base.yaml",
                LABELS[1]: "configs/looped/seed000/pos_once.yaml",
                LABELS[2]: "configs/looped/seed000/norm_once.yaml",
                LABELS[3]: "configs/looped/seed000/pos_norm_once.yaml",
            },
        },
        check=check,
        figure=figure,
        seeds={"tiny": 3, "full": 3},
        minutes={"tiny": 25},
    )
)
