"""Garg et al. 2022, Fig. 5: on 2-layer ReLU nets the transformer matches a net trained by gradient descent."""

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Entry, Verdict, fmt_ci, less, mean_ci, per_seed, values_at
from iclab.reproduce.plots import error_vs_examples, evals, save

MARGIN = 0.1


def check(runs) -> Verdict:
    evs = evals(runs["model"])
    k = evs[0]["n_points"] - 1
    model, gd, ls = values_at(evs, k), values_at(evs, k, "relu_net_gd"), values_at(evs, k, "least_squares")
    m = mean_ci(model)[0]
    return Verdict(
        f"at k={k}: model {fmt_ci(model)}, 2-layer net by GD {fmt_ci(gd)}, least squares {fmt_ci(ls)}",
        {"k": k, "model": m, "relu_net_gd": mean_ci(gd)[0], "least_squares": mean_ci(ls)[0]},
        [f"model per seed {per_seed(model)}"],
        {"model": model, "2-layer net by GD": gd, "least squares": ls},
    )


def figure(runs, path):
    evs = evals(runs["model"])
    fig, ax = plt.subplots(figsize=(6, 4))
    error_vs_examples(
        ax,
        {"transformer": evs},
        ["relu_net_gd", "least_squares", "knn", "averaging"],
        f"2-layer ReLU nets, d={evs[0]['n_dims']} (Garg et al. Fig. 5)",
        mark_k=None,
    )
    save(fig, path)


REPRODUCTIONS.register("garg-relu", help="2-layer ReLU nets in context: close to a GD-trained net")(
    Entry(
        name="garg-relu",
        source="Garg et al. 2022, Fig. 5",
        claim="On random 2-layer ReLU networks the transformer does as well as a 2-layer net trained by gradient "
        "descent "
        "on the prompt, and better than least squares.",
        criterion=f"at the last position the model's error is within {MARGIN} of the GD-trained net's and below least "
        "squares' (paired by seed)",
        tests=[less("model", "2-layer net by GD", MARGIN), less("model", "least squares")],
        configs={
            "tiny": {"model": "configs/garg/tiny/relu_2nn_regression.yaml"},
            "full": {"model": "configs/garg/relu_2nn_regression.yaml"},
        },
        check=check,
        figure=figure,
        minutes={"tiny": 8},
    )
)
