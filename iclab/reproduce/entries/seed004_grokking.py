"""Seed 004 / Power et al. 2022: grokking on modular division, and its dependence on weight decay."""

import math

import matplotlib.pyplot as plt

from iclab.analysis.grokking import first_step
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, greater, less
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
    delay, final = [], []
    for r_wd, r_no in zip(runs["weight decay 1"], runs["no weight decay"]):
        recs = accuracy_records(r_wd)
        m, g = first_step(recs, "train/accuracy", MEMORIZED), first_step(recs, "heldout/accuracy", GROKKED)
        delay.append(math.nan if m is None or g is None else g / m)  # NaN: not reached within the budget
        final.append(accuracy_records(r_no)[-1]["heldout/accuracy"])
    return Verdict(
        f"weight decay 1: train acc >= {MEMORIZED} at step {mem}, held-out >= {GROKKED} at step "
        f"{grok}; no weight decay: held-out {no_final:.3f} after {no[-1]['step']} steps",
        {"memorized_at": mem, "grokked_at": grok, "no_wd_final_heldout": no_final, "no_wd_grokked_at": no_grok},
        [f"seed 0 shown; per seed: held-out / train steps {delay}, no weight decay final held-out {final}"],
        {"held-out step / train step": delay, "no weight decay: final held-out accuracy": final},
    )


def figure(runs, path):
    """Every seed's curves: seed 0 drawn bold, the others thin, so a seed that never generalizes shows."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, color in (("weight decay 1", "tab:red"), ("no weight decay", "tab:gray")):
        for i, run in enumerate(runs[label]):
            recs = accuracy_records(run)
            steps = [r["step"] for r in recs]
            lw, alpha = (2, 1.0) if i == 0 else (1, 0.45)
            held = f"{label}: held-out" if i == 0 else None
            ax.plot(steps, [r["heldout/accuracy"] for r in recs], color=color, lw=lw, alpha=alpha, label=held)
            train = f"{label}: train" if i == 0 else None
            train_acc = [r["train/accuracy"] for r in recs]
            ax.plot(steps, train_acc, color=color, lw=lw / 2, alpha=alpha, ls="--", label=train)
    ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy")
    n = len(runs["weight decay 1"])
    seeds = "1 seed" if n == 1 else f"{n} seeds (seed 0 bold, the others thin)"
    ax.set_title(f"grokking: a / b mod 97, half of the table trained on; {seeds}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, path)


REPRODUCTIONS.register("seed004-grokking", help="modular division mod 97: held-out accuracy long after train")(
    Entry(
        name="seed004-grokking",
        source="Seed 004 / Power et al. 2022",
        claim="Modular division p=97 (half of the pairs trained on, 2 layers, width 128, 4 heads, AdamW, weight decay "
        "1): "
        "held-out accuracy rises from chance to ~100% long after training accuracy does; without weight decay it "
        "does not in the same number of steps.",
        criterion=f"with weight decay held-out accuracy reaches {GROKKED} at least {DELAY:g}x "
        "the steps training accuracy "
        f"took to reach {MEMORIZED}; without weight decay it ends below {GROKKED} (over seeds; a seed that never "
        "generalizes is counted and left out of the first test)",
        tests=[
            greater("held-out step / train step", DELAY, label="generalization comes late"),
            less("no weight decay: final held-out accuracy", GROKKED, label="not without weight decay"),
        ],
        configs={
            "tiny": {
                "weight decay 1": "configs/grokking/p97.yaml",
                "no weight decay": "configs/grokking/p97_no_wd.yaml",
            },
            "small": {  # the tiny runs on 3 seeds: 1 seed decides nothing (~30 min per run on 2 cores)
                "weight decay 1": "configs/grokking/p97.yaml",
                "no weight decay": "configs/grokking/p97_no_wd.yaml",
            },
            "full": {  # Power et al.'s budget: 10^5 updates of batch 512 (the tiny run's 4,000 x 25)
                "weight decay 1": "configs/grokking/p97.yaml",
                "no weight decay": "configs/grokking/p97_no_wd.yaml",
            },
        },
        overrides={"full": ["training.steps=100000", "logging.ckpt_every=10000"]},
        check=check,
        figure=figure,
        seeds={"tiny": 1, "small": 3, "full": 1},
        minutes={"tiny": 30, "small": 180},
    )
)
