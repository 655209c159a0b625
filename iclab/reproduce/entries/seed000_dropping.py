"""Seed 000: fewer tokens per loop iteration (token dropping): faster steps, longer prompts held, d=100 fails."""

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import PLATEAU, Entry, Verdict, at, fmt_ci, greater, k2d, less, mean_ci, per_seed
from iclab.reproduce.plots import error_vs_examples, evals, save

SPEEDUP = 1.1
ROUNDS = 5  # timing rounds: the speed-up is tested over them
LABELS = ("no dropping", "d=1, k=5", "d=100, k=5")
EVAL = "eval_at_b.json"  # evaluated with the trained number of loops b: the configs' eval.loops (3b) would drop
#                          a short prompt to its last k=5 tokens, which says nothing about what training learned


def evaluate(run):
    from iclab.runs import evaluate_run

    if not (run.dir / EVAL).is_file():
        evaluate_run(run.dir, loops=run.cfg.model.loops, tag="at_b")


def check(runs) -> Verdict:
    import statistics

    from iclab.reproduce.throughput import steps_per_s_rounds

    base, d1, d100 = (evals(runs[x], EVAL) for x in LABELS)
    n_trained = runs["no dropping"][0].cfg.task.n_points
    k, k_long = k2d(base[0]), len(base[0]["model"]["mean"]) - 1
    rounds = steps_per_s_rounds([runs["no dropping"][0].cfg, runs["d=1, k=5"][0].cfg], rounds=ROUNDS)
    rates = [statistics.median(r) for r in rounds]
    speedup = rates[1] / rates[0]
    e = {lab: [at(ev["model"], k) for ev in evs] for lab, evs in zip(LABELS, (base, d1, d100))}
    long = {lab: [at(ev["model"], k_long) for ev in evs] for lab, evs in zip(LABELS, (base, d1, d100))}
    m = {lab: mean_ci(v)[0] for lab, v in e.items()}
    ml = {lab: mean_ci(v)[0] for lab, v in long.items()}
    ok_speed = speedup >= SPEEDUP
    ok_long = ml["d=1, k=5"] < ml["no dropping"]
    ok_fail = m["d=100, k=5"] > max(2 * m["no dropping"], 0.2)
    values = {"speed-up per timing round": [b / a for a, b in zip(*rounds)]}
    values |= {f"{lab} at 2d": v for lab, v in e.items()} | {f"{lab} at twice the length": v for lab, v in long.items()}
    return Verdict(
        f"steps/s x{speedup:.2f} with d=1; at k={k_long} (trained on {n_trained} points): d=1 "
        f"{fmt_ci(long['d=1, k=5'])} vs none {fmt_ci(long['no dropping'])}; at k={k}: none "
        f"{fmt_ci(e['no dropping'])}, d=1 {fmt_ci(e['d=1, k=5'])}, d=100 {fmt_ci(e['d=100, k=5'])}",
        {
            "speedup": speedup,
            "steps_per_s": dict(zip(LABELS[:2], rates)),
            "k": k,
            "k_long": k_long,
            **{f"{lab}@k": v for lab, v in m.items()},
            **{f"{lab}@k_long": v for lab, v in ml.items()},
        },
        [
            f"speed-up >= {SPEEDUP}: {ok_speed}; d=1 better on longer prompts: {ok_long}; d=100 fails: {ok_fail}",
            *[f"{lab} at k={k_long} per seed {per_seed(v)}" for lab, v in long.items()],
            f"steps/s timed back to back in one process, 1 thread, at the full curriculum, {ROUNDS} rounds",
        ],
        values,
    )


def figure(runs, path):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    error_vs_examples(
        ax,
        {lab: evals(runs[lab], EVAL) for lab in LABELS},
        ["least_squares"],
        "token dropping (seed 000): trained on "
        f"{runs['no dropping'][0].cfg.task.n_points} points, evaluated on "
        f"{runs['no dropping'][0].cfg.eval.n_points}, b loops",
        mark_k=runs["no dropping"][0].cfg.task.n_points - 1,
    )
    save(fig, path)


REPRODUCTIONS.register("seed000-dropping", help="token dropping: faster, holds longer prompts; d=100 fails")(
    Entry(
        name="seed000-dropping",
        source="Seed 000 (looped transformers, fewer tokens per loop)",
        claim="Giving each loop iteration d fewer tokens (down to k) trains more iterations per second, holds its "
        "accuracy "
        "on prompts longer than trained (unlike no dropping), and fails to learn with d=100, k=5.",
        criterion=f"training steps/s with d=1 at least {SPEEDUP}x those without; evaluated with "
        "the trained b loops, at the "
        "last point of a prompt twice the trained length d=1's error is below no dropping's, and at k=2d d=100's "
        "error is above 0.2, the in-context plateau (paired by seed; the speed-up over timing rounds)",
        tests=[
            greater("speed-up per timing round", SPEEDUP),
            less("d=1, k=5 at twice the length", "no dropping at twice the length"),
            greater("d=100, k=5 at 2d", PLATEAU, label="d=100 fails"),
        ],
        configs={
            "tiny": {
                "no dropping": "configs/looped/seed000/tiny/base.yaml",
                "d=1, k=5": "configs/looped/seed000/tiny/drop_d1_k5.yaml",
                "d=100, k=5": "configs/looped/seed000/tiny/drop_d100_k5.yaml",
            },
            "full": {
                "no dropping": "configs/looped/seed000/base.yaml",
                "d=1, k=5": "configs/looped/seed000/drop_d1_k5.yaml",
                "d=100, k=5": "configs/looped/seed000/drop_d100_k5.yaml",
            },
        },
        check=check,
        figure=figure,
        evaluate=evaluate,
        seeds={"tiny": 3, "full": 3},
        minutes={"tiny": 20},
    )
)
