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


def _steps(runs) -> dict[float, tuple[int | None, int | None, int]]:
    """fraction -> (memorized at, generalized at, budget)"""
    out = {}
    for f in FRACTIONS:
        recs = accuracy_records(runs[_label(f)][0])
        out[f] = (
            first_step(recs, "train/accuracy", MEMORIZED),
            first_step(recs, "heldout/accuracy", GROKKED),
            recs[-1]["step"],
        )
    return out


def check(runs) -> Verdict:
    st = _steps(runs)
    grokked = [(f, g) for f, (_, g, _) in st.items() if g is not None]
    order = [g for _, g in grokked]
    monotone = all(a >= b for a, b in zip(order, order[1:]))
    largest = st[max(FRACTIONS)][1]
    slow = grokked and largest is not None and grokked[0][1] >= SLOWER * largest
    values = {"fractions that generalize": []} | {f"steps at {f:g}": [] for f in FRACTIONS}
    for s in range(len(runs[_label(FRACTIONS[0])])):
        reached = 0
        for f in FRACTIONS:
            g = first_step(accuracy_records(runs[_label(f)][s]), "heldout/accuracy", GROKKED)
            values[f"steps at {f:g}"].append(math.nan if g is None else g)  # NaN: not within the budget
            reached += g is not None
        values["fractions that generalize"].append(reached)
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
    st = _steps(runs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    cmap = plt.get_cmap("viridis")
    for i, f in enumerate(FRACTIONS):
        recs = accuracy_records(runs[_label(f)][0])
        c = cmap(i / (len(FRACTIONS) - 1))
        axes[0].plot(
            [r["step"] for r in recs], [r["heldout/accuracy"] for r in recs], color=c, lw=2, label=f"{f:g}: held-out"
        )
        axes[0].plot([r["step"] for r in recs], [r["train/accuracy"] for r in recs], color=c, lw=0.8, ls="--")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("accuracy (dashed: train)")
    axes[0].set_title("a / b mod 97, AdamW weight decay 1, by training fraction", fontsize=10)
    axes[0].legend(fontsize=7)
    fr = list(st)
    for _key, idx, marker, name in (
        ("memorized", 0, "s", f"train acc >= {MEMORIZED}"),
        ("grokked", 1, "o", f"held-out acc >= {GROKKED}"),
    ):
        xs = [f for f in fr if st[f][idx] is not None]
        axes[1].plot(xs, [st[f][idx] for f in xs], "-" + marker, label=name)
    missed = [f for f in fr if st[f][1] is None]
    for f in missed:
        axes[1].plot(
            [f],
            [st[f][2]],
            "v",
            color="tab:red",
            ms=9,
            label=f"held-out < {GROKKED} at the budget (steps)" if f == missed[0] else None,
        )
        axes[1].annotate(f"not within {st[f][2]}", (f, st[f][2]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training fraction")
    axes[1].set_ylabel("steps")
    axes[1].set_title("steps to memorize and to generalize", fontsize=10)
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
        configs={
            scale: {
                _label(f): f"configs/grokking/{'p97' if f == 0.5 else f'fraction/p97_f{f:g}'}.yaml" for f in FRACTIONS
            }
            for scale in ("tiny", "full")
        },
        # full: Power et al.'s budget of 10^5 updates for every fraction (tiny: 4,000-12,000)
        overrides={"full": ["training.steps=100000", "logging.ckpt_every=10000"]},
        check=check,
        figure=figure,
        seeds={"tiny": 1, "full": 3},
        minutes={"tiny": 50},
    )
)
