"""Garg et al. 2022, Fig. 2: a transformer trained on linear functions matches least squares in context."""

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, fmt_ci, k2d, less, mean_ci, per_seed, values_at
from iclab.reproduce.plots import error_vs_examples, evals, save

MARGIN = 0.05


def check(runs) -> Verdict:
    evs = evals(runs["model"])
    k = k2d(evs[0])
    model, ls, knn = values_at(evs, k), values_at(evs, k, "least_squares"), values_at(evs, k, "knn")
    m, _ = mean_ci(model)
    return Verdict(
        f"at k={k}: model {fmt_ci(model)}, least squares {fmt_ci(ls)}, 3-NN {fmt_ci(knn)}",
        {"k": k, "model": m, "least_squares": mean_ci(ls)[0], "knn": mean_ci(knn)[0]},
        [f"model per seed {per_seed(model)}"],
        {"model": model, "least squares": ls, "3-NN": knn},
    )


def figure(runs, path):
    evs = evals(runs["model"])
    fig, ax = plt.subplots(figsize=(6, 4))
    error_vs_examples(
        ax,
        {"transformer": evs},
        ["least_squares", "knn", "averaging"],
        f"linear regression, d={evs[0]['n_dims']} (Garg et al. Fig. 2)",
        mark_k=k2d(evs[0]),
    )
    save(fig, path)


REPRODUCTIONS.register("garg-linear", help="linear regression in context matches least squares")(
    Entry(
        name="garg-linear",
        source="Garg et al. 2022, Fig. 2",
        claim="A transformer trained on linear functions predicts like least squares once it has d examples.",
        criterion=f"at k=2d the model's error is within {MARGIN} of least squares' and below 3-NN's (paired by seed)",
        tests=[less("model", "least squares", MARGIN), less("model", "3-NN")],
        configs={
            "tiny": {"model": "configs/garg/tiny/linear_regression.yaml"},
            "full": {"model": "configs/garg/linear_regression.yaml"},
        },
        check=check,
        figure=figure,
        minutes={"tiny": 5},
    )
)
