"""Seed 004 / Power et al. 2022, Fig. 1 (right): the smaller the share of the table trained on, the longer
held-out accuracy takes to rise."""

import math

import matplotlib.pyplot as plt

from iclab.analysis.grokking import first_step
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, greater
from iclab.reproduce.entries.seed004_grokking import GROKKED, MEMORIZED, accuracy_records
from iclab.reproduce.plots import save

FRACTIONS = (0.3, 0.4, 0.5, 0.6, 0.7)
SLOWER = 2.0


def _label(f: float) -> str:
    return f"fraction {f:g}"


TINY = {_label(f): f"configs/grokking/{'p97' if f == 0.5 else f'fraction/p97_f{f:g}'}.yaml" for f in FRACTIONS}
# small: 3 seeds, and budgets of 24,000 / 16,000 / 8,000 steps for fractions 0.3 / 0.4 / 0.5 (at tiny 0.3 and 0.4 had
# not generalized within 12,000 / 8,000 steps on seed 0, nor 0.5 within 4,000 on seed 1 of seed004-grokking small);
# 0.6 and 0.7 keep the tiny budgets, which they generalized well within (~28 min per run at most on one core)
SMALL = TINY | {_label(f): f"configs/grokking/fraction/small/p97_f{f:g}.yaml" for f in (0.3, 0.4, 0.5)}


def _seed_steps(runs, seed: int) -> dict[float, tuple[int | None, int | None, int]]:
    """fraction -> (memorized at, generalized at, budget) on one seed."""
    out = {}
    for f in FRACTIONS:
        recs = accuracy_records(runs[_label(f)][seed])
        out[f] = (
            first_step(recs, "train/accuracy", MEMORIZED),
            first_step(recs, "heldout/accuracy", GROKKED),
            recs[-1]["step"],
        )
    return out


def check(runs) -> Verdict:
    per_seed = [_seed_steps(runs, s) for s in range(len(runs[_label(FRACTIONS[0])]))]
    st = per_seed[0]
    grokked = [(f, g) for f, (_, g, _) in st.items() if g is not None]
    order = [g for _, g in grokked]
    monotone = all(a >= b for a, b in zip(order, order[1:]))
    largest = st[max(FRACTIONS)][1]
    slow = grokked and largest is not None and grokked[0][1] >= SLOWER * largest
    values = {"fractions that generalize": []} | {f"steps at {f:g}": [] for f in FRACTIONS}
    for seed_steps in per_seed:
        for f, (_, g, _) in seed_steps.items():
            values[f"steps at {f:g}"].append(math.nan if g is None else g)  # NaN: not within the budget
        values["fractions that generalize"].append(sum(g is not None for _, g, _ in seed_steps.values()))
    cells = [f"{f:g}: {'not within ' + str(b) if g is None else g}" for f, (_, g, b) in st.items()]
    return Verdict(
        f"steps to held-out accuracy >= {GROKKED} by training fraction: " + ", ".join(cells),
        {str(f): {"memorized_at": m, "grokked_at": g, "budget": b} for f, (m, g, b) in st.items()},
        [
            f"seed 0: monotone in the fraction {monotone}, smallest grokking fraction >= {SLOWER:g}x the largest's "
            f"steps {bool(slow)}",
            *[f"fraction {f:g}: train accuracy >= {MEMORIZED} at step {m}" for f, (m, _, _) in st.items()],
        ],
        values,
    )


def figure(runs, path):
    """Left: seed 0's curves. Right: every seed's steps to memorize and to generalize (seed 0 bold), and a red
    triangle at the budget where a seed did not generalize within it."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    cmap = plt.get_cmap("viridis")
    for i, f in enumerate(FRACTIONS):
        recs = accuracy_records(runs[_label(f)][0])
        c = cmap(i / (len(FRACTIONS) - 1))
        steps = [r["step"] for r in recs]
        axes[0].plot(steps, [r["heldout/accuracy"] for r in recs], color=c, lw=2, label=f"{f:g}: held-out")
        axes[0].plot(steps, [r["train/accuracy"] for r in recs], color=c, lw=0.8, ls="--")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("accuracy (dashed: train)")
    axes[0].set_title("a / b mod 97, AdamW weight decay 1, by training fraction (seed 0)", fontsize=10)
    axes[0].legend(fontsize=7)
    n = len(runs[_label(FRACTIONS[0])])
    missed_label, missed = f"held-out < {GROKKED} at the budget (steps)", {}
    for seed in range(n):
        st, first = _seed_steps(runs, seed), seed == 0
        lw, alpha = (1.8, 1.0) if first else (0.8, 0.5)
        for idx, marker, color, name in (
            (0, "s", "tab:blue", f"train acc >= {MEMORIZED}"),
            (1, "o", "tab:orange", f"held-out acc >= {GROKKED}"),
        ):
            xs = [f for f in FRACTIONS if st[f][idx] is not None]
            label = name if first else None
            axes[1].plot(xs, [st[f][idx] for f in xs], "-" + marker, color=color, lw=lw, alpha=alpha, label=label)
        for f in [f for f in FRACTIONS if st[f][1] is None]:
            axes[1].plot([f], [st[f][2]], "v", color="tab:red", ms=9, alpha=alpha, label=missed_label)
            missed_label = None
            missed.setdefault((f, st[f][2]), []).append(str(seed))
    for (f, budget), seeds in missed.items():
        text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}: not within {budget}"
        axes[1].annotate(text, (f, budget), fontsize=7, xytext=(6, -12), textcoords="offset points")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training fraction")
    axes[1].set_ylabel("steps")
    seeds = "1 seed" if n == 1 else f"{n} seeds, seed 0 bold"
    axes[1].set_title(f"steps to memorize and to generalize ({seeds})", fontsize=10)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    save(fig, path)


REPRODUCTIONS.register("seed004-grokking-fraction", help="grokking takes longer the smaller the training fraction")(
    Entry(
        name="seed004-grokking-fraction",
        source="Seed 004 / Power et al. 2022, Fig. 1",
        claim="On modular division mod 97 the steps until held-out accuracy rises grow as the share of the table "
        "trained "
        "on shrinks.",
        criterion=f"held-out accuracy reaches {GROKKED} for at least 3 of the fractions "
        f"{', '.join(map(str, FRACTIONS))} "
        f"(mean over seeds above 2.5), and fraction 0.5 takes at least {SLOWER:g}x the steps of fraction 0.7 "
        "(geometric mean over seeds); the order in the fraction is reported",
        tests=[
            greater("fractions that generalize", 2.5),
            greater("steps at 0.5", "steps at 0.7", math.log(SLOWER), log=True, label="smaller fractions are slower"),
        ],
        configs={"tiny": TINY, "small": SMALL, "full": TINY},
        # full: Power et al.'s budget of 10^5 updates for every fraction (tiny: 4,000-12,000)
        overrides={"full": ["training.steps=100000", "logging.ckpt_every=10000"]},
        check=check,
        figure=figure,
        seeds={"tiny": 1, "small": 3, "full": 3},
        minutes={"tiny": 50, "small": 180},
    )
)
