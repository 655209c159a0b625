"""Garg et al. 2022, Sec. 5 / Fig. 7: the dims/points curriculum speeds up training."""

import statistics

import matplotlib.pyplot as plt

from iclab.evaluation.plots import run_color
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, fmt_ci, less
from iclab.reproduce.plots import finish, save, seed_band
from iclab.reproduce.trajectory import error_over_training, steps_to

TARGET = 0.1


def evaluate(run):
    error_over_training(run)


def _steps(runs):
    return [steps_to(error_over_training(r), TARGET) for r in runs]


def check(runs) -> Verdict:
    on, off = _steps(runs["curriculum"]), _steps(runs["no curriculum"])
    med_on, med_off = statistics.median(on), statistics.median(off)
    final = {label: [error_over_training(r)["error"][-1] for r in rs] for label, rs in runs.items()}
    k = error_over_training(runs["curriculum"][0])["k"]
    budget = runs["curriculum"][0].cfg.training.steps
    censor = lambda xs: [min(x, budget) for x in xs]  # noqa: E731  (never -> the budget, a lower bound)
    show = lambda xs: "[" + ", ".join("never" if x == float("inf") else f"{x:.0f}" for x in xs) + "]"  # noqa: E731
    return Verdict(
        f"steps to error <= {TARGET} at k={k} (median over seeds): with curriculum {med_on:g}, without {med_off:g}",
        {
            "target": TARGET,
            "k": k,
            "median_steps_curriculum": med_on,
            "median_steps_none": med_off,
            "final_curriculum": statistics.fmean(final["curriculum"]),
            "final_none": statistics.fmean(final["no curriculum"]),
        },
        [
            f"with curriculum, per seed: {show(on)}; final error {fmt_ci(final['curriculum'])}",
            f"without, per seed: {show(off)}; final error {fmt_ci(final['no curriculum'])}",
            "steps are those of the kept checkpoints (every 100 steps), not interpolated; a seed that never "
            f"reaches the target counts as {budget} (the budget) in the test",
        ],
        {"steps with curriculum": censor(on), "steps without": censor(off)},
    )


def figure(runs, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, rs) in enumerate(runs.items()):
        curves = [error_over_training(r) for r in rs]
        seed_band(ax, curves[0]["steps"], [c["error"] for c in curves], label, run_color(i), log=True)
    k = error_over_training(runs["curriculum"][0])["k"]
    ax.axhline(TARGET, color="0.5", ls=":", lw=1, label=f"target {TARGET}")
    finish(
        ax,
        "training step",
        f"normalized squared error at k={k} (d={runs['curriculum'][0].cfg.task.n_dims})",
        "curriculum on dims and points vs none (Garg et al. Fig. 7)",
        logy=True,
    )
    save(fig, path)


REPRODUCTIONS.register("garg-curriculum", help="the dims/points curriculum speeds up training")(
    Entry(
        name="garg-curriculum",
        source="Garg et al. 2022, Sec. 5 and Fig. 7",
        claim="Training with a curriculum on the dimensions and the prompt length reaches a given error in fewer steps "
        "(Garg et al.: it matters more as d grows).",
        criterion=f"the first checkpoint step with error <= {TARGET} at k=2d is lower with the curriculum than without "
        "(paired by seed; never reaching it counts as the step budget)",
        tests=[less("steps with curriculum", "steps without")],
        configs={
            "tiny": {
                "curriculum": "configs/garg/tiny/curriculum_on.yaml",
                "no curriculum": "configs/garg/tiny/curriculum_off.yaml",
            },
            "small": {  # d=10: where Garg et al. see the curriculum matter more; ~20 min per run on 2 cores
                "curriculum": "configs/garg/small/curriculum_on.yaml",
                "no curriculum": "configs/garg/small/curriculum_off.yaml",
            },
            "full": {  # the paper's d=20, 500k steps (a GPU)
                "curriculum": "configs/garg/full/curriculum_on.yaml",
                "no curriculum": "configs/garg/full/curriculum_off.yaml",
            },
        },
        seeds={"tiny": 5, "small": 5, "full": 3},
        check=check,
        figure=figure,
        evaluate=evaluate,
        minutes={"tiny": 12, "small": 200},
    )
)
