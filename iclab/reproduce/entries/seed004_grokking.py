"""Seed 004 / Power et al. 2022: grokking on modular division, and its dependence on weight decay."""

import matplotlib.pyplot as plt

from iclab.analysis.grokking import first_step
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict
from iclab.reproduce.plots import save
from iclab.workloads.sequence.modular import read_metrics

MEMORIZED, GROKKED, DELAY = 0.99, 0.95, 2.0


def accuracy_records(run):
    """The metrics.jsonl records with train and held-out accuracy (the modular workload's own reader)."""
    return read_metrics(run.dir / "metrics.jsonl")


def check(runs) -> Verdict:
    wd, no = accuracy_records(runs["weight decay 1"][0]), accuracy_records(runs["no weight decay"][0])
    mem, grok = first_step(wd, "train/accuracy", MEMORIZED), first_step(wd, "heldout/accuracy", GROKKED)
    no_grok, no_final = first_step(no, "heldout/accuracy", GROKKED), no[-1]["heldout/accuracy"]
    passed = mem is not None and grok is not None and grok >= DELAY * mem and no_grok is None
    return Verdict(
        passed,
        f"weight decay 1: train acc >= {MEMORIZED} at step {mem}, held-out >= {GROKKED} at step "
        f"{grok}; no weight decay: held-out {no_final:.3f} after {no[-1]['step']} steps",
        {"memorized_at": mem, "grokked_at": grok, "no_wd_final_heldout": no_final, "no_wd_grokked_at": no_grok},
    )


def figure(runs, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, color in (("weight decay 1", "tab:red"), ("no weight decay", "tab:gray")):
        recs = accuracy_records(runs[label][0])
        steps = [r["step"] for r in recs]
        ax.plot(steps, [r["heldout/accuracy"] for r in recs], color=color, lw=2, label=f"{label}: held-out")
        ax.plot(steps, [r["train/accuracy"] for r in recs], color=color, lw=1, ls="--", label=f"{label}: train")
    ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy")
    ax.set_title("grokking: a / b mod 97, half of the table trained on", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, path)


REPRODUCTIONS.register("seed004-grokking", help="modular division mod 97: held-out accuracy long after train")(
    Entry(
        name="seed004-grokking",
        source="Seed 004 / Power et al. 2022",
        claim="Modular division p=97 (half of the pairs trained on, 2 layers, width 128, 4 heads, AdamW, weight decay 1): "
        "held-out accuracy rises from chance to ~100% long after training accuracy does; without weight decay it "
        "does not in the same number of steps.",
        criterion=f"with weight decay held-out accuracy reaches {GROKKED} at least {DELAY:g}x the steps training accuracy "
        f"took to reach {MEMORIZED}; without weight decay it never reaches {GROKKED}",
        configs={
            "tiny": {
                "weight decay 1": "configs/grokking/p97.yaml",
                "no weight decay": "configs/grokking/p97_no_wd.yaml",
            }
        },
        check=check,
        figure=figure,
        seeds={"tiny": 1, "full": 1},
        minutes={"tiny": 30},
    )
)
