"""Garg et al. 2022, Fig. 2 (sparse): on sparse linear functions the transformer tracks LASSO, not least squares."""

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import PLATEAU, Entry, Verdict, at, fmt_ci, k2d, less, mean_ci, per_seed
from iclab.reproduce.plots import error_vs_examples, evals, save

MARGIN = 0.1
LEARNED = {"learned_below": PLATEAU, "learned_on": ("model at 2d",)}  # seeds that left the plateau


def check(runs) -> Verdict:
    evs = evals(runs["model"])
    d = evs[0]["n_dims"]
    k_small, k = max(1, d // 2), k2d(evs[0])
    lasso_key = next(b for b in evs[0]["baselines"] if b.startswith("lasso"))
    get = lambda curve, kk: [at(ev[curve] if curve == "model" else ev["baselines"][curve], kk) for ev in evs]  # noqa: E731
    model_s, ls_s, lasso_s = get("model", k_small), get("least_squares", k_small), get(lasso_key, k_small)
    model_k, lasso_k = get("model", k), get(lasso_key, k)
    m_s, m_k = mean_ci(model_s)[0], mean_ci(model_k)[0]
    return Verdict(
        f"at k={k_small} (< d={d}): model {fmt_ci(model_s)}, least squares {fmt_ci(ls_s)}, LASSO "
        f"{fmt_ci(lasso_s)}; at k={k}: model {fmt_ci(model_k)}, LASSO {fmt_ci(lasso_k)}",
        {
            "k_small": k_small,
            "model_small": m_s,
            "least_squares_small": mean_ci(ls_s)[0],
            "lasso_small": mean_ci(lasso_s)[0],
            "k": k,
            "model": m_k,
            "lasso": mean_ci(lasso_k)[0],
        },
        [f"model at k={k_small} per seed {per_seed(model_s)}", f"model at k={k} per seed {per_seed(model_k)}"],
        {
            "model at d/2": model_s,
            "least squares at d/2": ls_s,
            "LASSO at d/2": lasso_s,
            "model at 2d": model_k,
            "LASSO at 2d": lasso_k,
        },
    )


def figure(runs, path):
    evs = evals(runs["model"])
    lasso_key = next(b for b in evs[0]["baselines"] if b.startswith("lasso"))
    fig, ax = plt.subplots(figsize=(6, 4))
    error_vs_examples(
        ax,
        {"transformer": evs},
        ["least_squares", lasso_key, "knn", "averaging"],
        f"sparse linear regression, d={evs[0]['n_dims']} (Garg et al. Fig. 2)",
        mark_k=evs[0]["n_dims"] // 2,
    )
    save(fig, path)


REPRODUCTIONS.register("garg-sparse", help="sparse linear regression in context tracks LASSO")(
    Entry(
        name="garg-sparse",
        source="Garg et al. 2022, Fig. 2",
        claim="On sparse linear functions the transformer exploits sparsity: it tracks LASSO and beats least squares "
        "with fewer examples than dimensions.",
        criterion=f"at k=d/2 the model's error is below least squares' and within {MARGIN} of LASSO's; at k=2d within "
        f"{MARGIN} of LASSO's (paired by seed, on the seeds that left the in-context plateau)",
        tests=[
            less("model at d/2", "least squares at d/2", **LEARNED),
            less("model at d/2", "LASSO at d/2", MARGIN, **LEARNED),
            less("model at 2d", "LASSO at 2d", MARGIN, **LEARNED),
        ],
        configs={
            "tiny": {"model": "configs/garg/tiny/sparse_linear_regression.yaml"},
            # 4x the steps: using sparsity (LASSO's error below d) comes later than leaving the plateau
            "small": {"model": "configs/garg/tiny/sparse_linear_regression.yaml"},
            "full": {"model": "configs/garg/sparse_linear_regression.yaml"},
        },
        check=check,
        figure=figure,
        overrides={"small": ["training.steps=8000", "logging.ckpt_every=2000"]},
        seeds={"tiny": 5, "small": 5, "full": 3},
        minutes={"tiny": 6, "small": 40},
    )
)
