"""Seed 004 / Kunstner et al. 2024: on Zipf-distributed classes SGD stalls on the rare classes, Adam does not."""

import math
from pathlib import Path

import matplotlib.pyplot as plt

from iclab.demos import run_demo
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Command, Entry, Verdict, fmt_ci, greater, less
from iclab.reproduce.plots import finish, save, seed_band

FREQUENT, RATIO = 0.1, 3.0  # frequent group: below 10% of the initial loss ln C


def run_heavy_tail(out: Path, seed: int = 0, **options) -> None:
    """`iclab demo heavy-tail` into out (heavy-tail.json, heavy-tail.png), in the Command signature."""
    run_demo("heavy-tail", out, seed=seed, options=options)


def _recs(runs):
    return [r.json("heavy-tail.json") for r in runs["Zipf classes"]]


def check(runs) -> Verdict:
    recs = _recs(runs)
    last = {n: [r["final_bucket_loss"][n][-1] for r in recs] for n in ("sgd", "adam")}
    first = {n: [r["final_bucket_loss"][n][0] for r in recs] for n in ("sgd", "adam")}
    ratio = [s / a for s, a in zip(last["sgd"], last["adam"])]
    init = recs[0]["initial_loss"]
    values = {
        "SGD frequent / ln C": [v / init for v in first["sgd"]],
        "Adam frequent / ln C": [v / init for v in first["adam"]],
        "SGD rarest": last["sgd"],
        "Adam rarest": last["adam"],
    }
    lrs = {n: sorted({r["runs"][n]["lr"] for r in recs}) for n in ("sgd", "adam")}
    return Verdict(
        f"most frequent group: SGD {fmt_ci(first['sgd'])}, Adam {fmt_ci(first['adam'])}; rarest "
        f"group: SGD {fmt_ci(last['sgd'])}, Adam {fmt_ci(last['adam'])}, SGD / Adam {fmt_ci(ratio, 1)}x",
        {"frequent": first, "rarest": last, "ratio": ratio, "lrs": lrs},
        [
            f"tuned lr per seed: SGD {lrs['sgd']}, Adam {lrs['adam']} (lowest mean training loss of a grid)",
            f"initial loss ln {recs[0]['classes']} = {recs[0]['initial_loss']:.2f}",
        ],
        values,
    )


def figure(runs, path):
    recs = _recs(runs)
    steps = recs[0]["steps_recorded"]
    nb = len(recs[0]["buckets"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes, ("sgd", "adam")):
        for i in range(nb):
            seed_band(
                ax,
                steps,
                [[pb[i] for pb in r["runs"][name]["per_bucket"]] for r in recs],
                f"group {i + 1}" if i in (0, nb - 1) else None,
                cmap(i / max(1, nb - 1)),
                band=False,
            )
        ax.axhline(recs[0]["initial_loss"], color="grey", ls=":", lw=1, label=f"initial loss ln {recs[0]['classes']}")
        ax.set_ylim(0, 1.4 * recs[0]["initial_loss"])  # SGD's first steps spike far above: clipped
        finish(
            ax,
            "step",
            "training loss of the group",
            f"{ {'sgd': 'SGD', 'adam': 'Adam'}[name] }: loss per class-frequency group "
            f"(group 1: most frequent, {nb}: rarest)",
        )
    save(fig, path)


REPRODUCTIONS.register("seed004-heavy-tail", help="Zipf classes: SGD stalls on the rare classes, Adam does not")(
    Entry(
        name="seed004-heavy-tail",
        source="Seed 004 / Kunstner et al. 2024",
        claim="With heavy-tailed (Zipf) class frequencies, SGD lowers the loss of the frequent classes only, while "
        "Adam "
        "lowers the loss of the rare classes too (each with its best lr from a grid).",
        criterion=f"both bring the most frequent group's loss below {FREQUENT:g}x its initial ln C (both learn the "
        f"frequent classes), and SGD's loss on the rarest group is at least {RATIO:g}x Adam's "
        "(geometric mean over seeds)",
        tests=[
            less("SGD frequent / ln C", FREQUENT, label="SGD learns the frequent classes"),
            less("Adam frequent / ln C", FREQUENT, label="Adam learns the frequent classes"),
            greater("SGD rarest", "Adam rarest", math.log(RATIO), log=True, label="SGD stalls on the rarest"),
        ],
        configs={
            "tiny": {"Zipf classes": Command(run_heavy_tail, {})},
            "full": {"Zipf classes": Command(run_heavy_tail, {"steps": 5000})},
        },
        check=check,
        figure=figure,
        seeds={"tiny": 3, "full": 5},
        minutes={"tiny": 5},
    )
)
