"""Garg et al. 2022, Fig. 5: on decision trees the transformer beats greedy tree learning and XGBoost."""

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, fmt_ci, less, mean_ci, per_seed, values_at
from iclab.reproduce.plots import error_vs_examples, evals, save


def check(runs) -> Verdict:
    evs = evals(runs["model"])
    k = evs[0]["n_points"] - 1
    model, xgb, tree = values_at(evs, k), values_at(evs, k, "xgboost"), values_at(evs, k, "decision_tree")
    m = mean_ci(model)[0]
    return Verdict(
        f"at k={k}: model {fmt_ci(model)}, XGBoost {fmt_ci(xgb)}, greedy tree {fmt_ci(tree)}",
        {"k": k, "model": m, "xgboost": mean_ci(xgb)[0], "decision_tree": mean_ci(tree)[0]},
        [f"model per seed {per_seed(model)}"],
        {"model": model, "XGBoost": xgb, "greedy tree": tree},
    )


def figure(runs, path):
    evs = evals(runs["model"])
    fig, ax = plt.subplots(figsize=(6, 4))
    error_vs_examples(
        ax,
        {"transformer": evs},
        ["xgboost", "decision_tree", "knn", "least_squares"],
        f"decision trees of depth 4, d={evs[0]['n_dims']} (Garg et al. Fig. 5)",
        mark_k=None,
    )
    save(fig, path)


REPRODUCTIONS.register("garg-trees", help="decision trees in context: better than XGBoost")(
    Entry(
        name="garg-trees",
        source="Garg et al. 2022, Fig. 5",
        claim="On depth-4 decision trees the transformer predicts better than greedy tree learning and XGBoost fitted "
        "on "
        "the prompt.",
        criterion="at the last position the model's error is below XGBoost's and the greedy tree's (paired by seed)",
        tests=[less("model", "XGBoost"), less("model", "greedy tree")],
        configs={
            "tiny": {"model": "configs/garg/tiny/decision_tree.yaml"},
            "full": {"model": "configs/garg/decision_tree.yaml"},
        },
        check=check,
        figure=figure,
        minutes={"tiny": 8},
    )
)
