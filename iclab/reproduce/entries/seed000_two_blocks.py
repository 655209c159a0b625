"""Seed 000: two blocks per loop iteration reach the error of one block in half the iterations."""

import matplotlib.pyplot as plt

from iclab.evaluation.plots import run_color
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import PLATEAU, Entry, Verdict, fmt_ci, less, mean_ci, per_seed
from iclab.reproduce.plots import evals, finish, save, seed_band

MARGIN = 0.05
LOOPS = "loops_trained_length.json"  # the configs evaluate on prompts twice the trained length; the claim is at it


def evaluate(run):
    from iclab.runs import evaluate_run

    if not (run.dir / LOOPS).is_file():
        evaluate_run(run.dir, n_points=run.cfg.task.n_points, tag="trained_length")


def check(runs) -> Verdict:
    one, two = evals(runs["1 block"], LOOPS), evals(runs["2 blocks"], LOOPS)
    b = one[0]["trained_loops"]
    e1 = [lp["last_point"][b - 1] for lp in one]
    e2 = [lp["last_point"][b // 2 - 1] for lp in two]
    return Verdict(
        f"error at the last point: 1 block after {b} iterations {fmt_ci(e1)}, 2 blocks after {b // 2} {fmt_ci(e2)}",
        {"b": b, "one_block_at_b": mean_ci(e1)[0], "two_blocks_at_half_b": mean_ci(e2)[0]},
        [f"2 blocks at b/2 per seed {per_seed(e2)}", f"1 block at b per seed {per_seed(e1)}"],
        {"2 blocks after b/2": e2, "1 block after b": e1},
    )


def figure(runs, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, lab in enumerate(("1 block", "2 blocks")):
        lps = evals(runs[lab], LOOPS)
        seed_band(ax, lps[0]["loops"], [lp["last_point"] for lp in lps], f"{lab} per iteration", run_color(i), log=True)
    b = evals(runs["1 block"], LOOPS)[0]["trained_loops"]
    ax.axvline(b, color="0.5", ls=":", lw=1)
    ax.axvline(b // 2, color="0.7", ls=":", lw=1)
    finish(
        ax,
        "loop iterations",
        "normalized squared error at the last point",
        "one vs two blocks per loop iteration (seed 000)",
        logy=True,
    )
    save(fig, path)


REPRODUCTIONS.register("seed000-two-blocks", help="two blocks per loop: the error in half the iterations")(
    Entry(
        name="seed000-two-blocks",
        source="Seed 000 (looped transformers, 2 blocks per loop)",
        claim="A looped model with two blocks per iteration reaches the error of the one-block model in half the "
        "iterations.",
        criterion=f"the 2-block model's error after b/2 iterations is at most {MARGIN} above the "
        "1-block model's after b "
        f"(last point of a prompt of the trained length, paired by seed, on the seeds where both are below {PLATEAU}: "
        "a model still on the in-context plateau is counted apart)",
        # the plateau rule was added once 12 seeds showed 1-block seeds at 0.7 (results/reproduce/README.md)
        tests=[less("2 blocks after b/2", "1 block after b", MARGIN, learned_below=PLATEAU)],
        configs={
            "tiny": {
                "1 block": "configs/looped/seed000/tiny/base.yaml",
                "2 blocks": "configs/looped/seed000/tiny/two_blocks.yaml",
            },
            "full": {
                "1 block": "configs/looped/seed000/base.yaml",
                "2 blocks": "configs/looped/seed000/two_blocks.yaml",
            },
        },
        check=check,
        figure=figure,
        evaluate=evaluate,
        seeds={"tiny": 3, "full": 3},
        max_seeds={"tiny": 15},  # 3 seeds left the margin undecided (~12 needed at their spread)
        minutes={"tiny": 12},
    )
)
