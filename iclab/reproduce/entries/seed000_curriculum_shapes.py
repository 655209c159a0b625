"""Seed 000: curriculum shapes for looped models (stepwise linear, sqrt, cos, log2)."""

import matplotlib.pyplot as plt

from iclab.evaluation.plots import run_color
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, at, fmt_ci, less, mean_ci
from iclab.reproduce.plots import error_vs_examples, evals, finish, save

LABELS = ("linear (step)", "sqrt", "cos", "log2")
LEARNED = 0.2  # a model whose error at the trained length is above this has not learned: its growth means nothing


def _final_loops(run) -> tuple[int, int]:
    from iclab.training.curriculum import Curriculum

    cur = Curriculum(run.cfg)
    return max(cur.at(s)["loops"] for s in range(run.cfg.training.steps)), run.cfg.model.loops


def check(runs) -> Verdict:
    k_train = runs[LABELS[0]][0].cfg.task.n_points - 1
    ev = {lab: evals(runs[lab]) for lab in LABELS}
    k_long = len(ev[LABELS[0]][0]["model"]["mean"]) - 1
    at_train = {lab: [at(e["model"], k_train) for e in evs] for lab, evs in ev.items()}
    at_long = {lab: [at(e["model"], k_long) for e in evs] for lab, evs in ev.items()}
    m_train = {lab: mean_ci(v)[0] for lab, v in at_train.items()}
    growth = {lab: mean_ci(at_long[lab])[0] / max(m_train[lab], 1e-12) for lab in LABELS}
    reached = {lab: _final_loops(runs[lab][0]) for lab in LABELS}
    ok_linear = min(m_train, key=m_train.get) == LABELS[0]
    learned = {lab: m_train[lab] <= LEARNED for lab in LABELS}
    # a model at chance error "degrades" by x1 on longer prompts: slower degradation counts only for a learned model
    ok_slower = all(learned[lab] and growth[lab] < growth[LABELS[0]] for lab in ("sqrt", "cos"))
    ok_log = reached["log2"][0] < reached["log2"][1]
    values = {f"{lab} at trained length": at_train[lab] for lab in LABELS}
    values |= {f"{lab} growth": [b / a for a, b in zip(at_train[lab], at_long[lab])] for lab in LABELS}
    values["log2 most loops"] = [_final_loops(r)[0] for r in runs["log2"]]  # the schedule's, the same every seed
    values["model loops"] = [_final_loops(r)[1] for r in runs["log2"]]
    return Verdict(
        f"at the trained length (k={k_train}): "
        + ", ".join(f"{lab} {fmt_ci(at_train[lab])}" for lab in LABELS)
        + f"; error growth k={k_train} -> {k_long}: "
        + ", ".join(f"{lab} x{growth[lab]:.2f}" for lab in LABELS)
        + f"; log2 reaches {reached['log2'][0]} of {reached['log2'][1]} loops",
        {
            "k_train": k_train,
            "k_long": k_long,
            **{f"{lab}@train": v for lab, v in m_train.items()},
            **{f"{lab} growth": v for lab, v in growth.items()},
            "log2_max_loops": reached["log2"][0],
        },
        [
            f"linear best at the trained length: {ok_linear}; sqrt and cos learned and degrade slower: "
            f"{ok_slower}; log2 never reaches max loops: {ok_log}",
            "not learned (error at the trained length > "
            + f"{LEARNED:g}): "
            + (", ".join(lab for lab in LABELS if not learned[lab]) or "none"),
        ],
        values,
    )


def figure(runs, path):
    from iclab.training.curriculum import Curriculum

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4))
    for i, lab in enumerate(LABELS):
        cfg = runs[lab][0].cfg
        cur = Curriculum(cfg)
        steps = list(range(0, cfg.training.steps, 5))
        a0.plot(steps, [cur.at(s)["loops"] for s in steps], color=run_color(i), label=lab)
    finish(a0, "training step", "loops b (curriculum)", "the loop curricula")
    cfg = runs[LABELS[0]][0].cfg
    error_vs_examples(
        a1,
        {lab: evals(runs[lab]) for lab in LABELS},
        ["least_squares"],
        f"error vs examples (trained on {cfg.task.n_points} points)",
        mark_k=cfg.task.n_points - 1,
    )
    save(fig, path)


REPRODUCTIONS.register("seed000-curriculum-shapes", help="curriculum shapes for looped models")(
    Entry(
        name="seed000-curriculum-shapes",
        source="Seed 000 (looped transformers, curriculum shapes)",
        claim="Of the curriculum shapes, stepwise linear is best at the trained length, sqrt and cos degrade slower on "
        "longer prompts, and log2 never reaches the maximum number of loops.",
        criterion="linear's error at the last trained position is below each other shape's; on the seeds where both "
        f"learned (error at the trained length <= {LEARNED:g}) sqrt's and cos's error grows less "
        "than linear's from the "
        "trained length to twice it (ratio per seed); log2's loop schedule stays below model.loops for the whole run",
        tests=[
            *[less("linear (step) at trained length", f"{lab} at trained length") for lab in LABELS[1:]],
            *[
                less(
                    f"{lab} growth",
                    "linear (step) growth",
                    log=True,
                    learned_below=LEARNED,
                    learned_on=("linear (step) at trained length", f"{lab} at trained length"),
                )
                for lab in ("sqrt", "cos")
            ],
            less("log2 most loops", "model loops"),
        ],
        configs={
            "tiny": {
                "linear (step)": "configs/looped/seed000/tiny/base.yaml",
                "sqrt": "configs/looped/seed000/tiny/clm_sqrt.yaml",
                "cos": "configs/looped/seed000/tiny/clm_cos.yaml",
                "log2": "configs/looped/seed000/tiny/clm_log2.yaml",
            },
            "full": {
                "linear (step)": "configs/looped/seed000/base.yaml",
                "sqrt": "configs/looped/seed000/clm_sqrt.yaml",
                "cos": "configs/looped/seed000/clm_cos.yaml",
                "log2": "configs/looped/seed000/clm_log2.yaml",
            },
        },
        check=check,
        figure=figure,
        seeds={"tiny": 3, "full": 3},
        minutes={"tiny": 25},
    )
)
