"""Garg et al. 2022, Sec. 4: the transformer is not memorizing its training functions.

Trained on a finite pool of weight vectors, the model is evaluated on fresh ones: it predicts like least
squares there, far better than the best function of its training pool (the `memorization` baseline) could.
"""

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, fmt_ci, k2d, less, mean_ci, per_seed, values_at
from iclab.reproduce.plots import error_vs_examples, evals, save

MARGIN = 0.05


def evaluate(run):
    from iclab.runs import evaluate_run

    if not (run.dir / "eval_train_pool.json").is_file():
        evaluate_run(run.dir, shift="train_pool")


def check(runs) -> Verdict:
    evs = evals(runs["model"])
    pool = evals(runs["model"], "eval_train_pool.json")
    k = k2d(evs[0])
    fresh, seen = values_at(evs, k), values_at(pool, k)
    ls, mem = values_at(evs, k, "least_squares"), values_at(evs, k, "memorization")
    m = mean_ci(fresh)[0]
    size = runs["model"][0].cfg.task.options.get("pool_size")
    return Verdict(
        f"pool of {size} w; at k={k}: model on fresh w {fmt_ci(fresh)}, on its training w {fmt_ci(seen)}, "
        f"least squares {fmt_ci(ls)}, best training w (memorization) {fmt_ci(mem)}",
        {
            "pool_size": size,
            "k": k,
            "model_fresh": m,
            "model_train_pool": mean_ci(seen)[0],
            "least_squares": mean_ci(ls)[0],
            "memorization": mean_ci(mem)[0],
        },
        [f"model on fresh w per seed {per_seed(fresh)}"],
        {"model on fresh w": fresh, "model on training w": seen, "least squares": ls, "memorization": mem},
    )


def figure(runs, path):
    evs = evals(runs["model"])
    pool = evals(runs["model"], "eval_train_pool.json")
    fig, ax = plt.subplots(figsize=(6, 4))
    size = runs["model"][0].cfg.task.options.get("pool_size")
    error_vs_examples(
        ax,
        {"model on fresh w": evs, "model on its training w": pool},
        ["least_squares", "memorization", "averaging"],
        f"trained on {size} distinct w, d={evs[0]['n_dims']} (Garg et al. Sec. 4)",
        mark_k=k2d(evs[0]),
    )
    save(fig, path)


REPRODUCTIONS.register("garg-memorization", help="not memorization: a finite training pool still generalizes")(
    Entry(
        name="garg-memorization",
        source="Garg et al. 2022, Sec. 4 and Fig. 6",
        claim="A transformer trained on a finite pool of linear functions predicts fresh functions like least squares, "
        "which the best function of its pool (memorization) cannot.",
        criterion=f"at k=2d the model's error on fresh functions is within {MARGIN} of least squares' and below the "
        "memorization baseline's (paired by seed)",
        tests=[less("model on fresh w", "least squares", MARGIN), less("model on fresh w", "memorization")],
        configs={
            "tiny": {"model": "configs/garg/tiny/linear_regression_pool.yaml"},
            "full": {"model": "configs/garg/linear_regression_pool1k.yaml"},
        },
        check=check,
        figure=figure,
        evaluate=evaluate,
        minutes={"tiny": 5},
    )
)
