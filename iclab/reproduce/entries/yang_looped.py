"""Yang et al. 2023, Fig. 2: one looped block matches the multi-layer transformer with a fraction of the parameters."""

import matplotlib.pyplot as plt

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import PLATEAU, Entry, Verdict, fmt_ci, k2d, less, mean_ci, per_seed, values_at
from iclab.reproduce.plots import error_vs_examples, evals, save

MARGIN = 0.05


def _params(run) -> int:
    from iclab.models import count_params
    from iclab.workloads import make_workload

    return count_params(make_workload(run.cfg).build_model())


def check(runs) -> Verdict:
    looped, std = evals(runs["looped"]), evals(runs["standard"])
    k = k2d(looped[0])
    lo, st, ls = values_at(looped, k), values_at(std, k), values_at(looped, k, "least_squares")
    p_lo, p_st = _params(runs["looped"][0]), _params(runs["standard"][0])
    ratio = p_lo / p_st
    layers = runs["standard"][0].cfg.model.n_layer
    cfg = runs["looped"][0].cfg.model
    return Verdict(
        f"at k={k}: looped (1 block, b={cfg.loops}) {fmt_ci(lo)}, standard ({layers} layers) {fmt_ci(st)}, "
        f"least squares {fmt_ci(ls)}; parameters {p_lo:,} vs {p_st:,} ({ratio:.2f}x)",
        {
            "k": k,
            "looped": mean_ci(lo)[0],
            "standard": mean_ci(st)[0],
            "least_squares": mean_ci(ls)[0],
            "params_looped": p_lo,
            "params_standard": p_st,
            "param_ratio": ratio,
        },
        [f"looped per seed {per_seed(lo)}", f"standard per seed {per_seed(st)}"],
        {
            "looped": lo,
            "standard": st,
            "parameter ratio x layers": [ratio * layers] * len(lo),  # exact: the same for every seed
        },
    )


def figure(runs, path):
    looped, std = evals(runs["looped"]), evals(runs["standard"])
    b, layers = runs["looped"][0].cfg.model.loops, runs["standard"][0].cfg.model.n_layer
    fig, ax = plt.subplots(figsize=(6, 4))
    error_vs_examples(
        ax,
        {f"looped, 1 block x b={b}": looped, f"standard, {layers} layers": std},
        ["least_squares", "knn", "averaging"],
        f"linear regression, d={looped[0]['n_dims']} (Yang et al. Fig. 2)",
        mark_k=k2d(looped[0]),
    )
    save(fig, path)


REPRODUCTIONS.register("yang-looped", help="one looped block matches the multi-layer model")(
    Entry(
        name="yang-looped",
        source="Yang et al. 2023, Fig. 2",
        claim="A single transformer block looped b times with input injection reaches the error of the standard "
        "multi-layer transformer with about 1/L of its parameters.",
        criterion=f"at k=2d the looped model's error is at most {MARGIN} above the standard "
        "model's (paired by seed, on "
        "the seeds where both left the in-context plateau), with at most 1.5/L of its parameters (L = the standard "
        "model's layers)",
        tests=[
            less("looped", "standard", MARGIN, learned_below=PLATEAU),
            less("parameter ratio x layers", 1.5, label="1/L of the parameters"),
        ],
        configs={
            "tiny": {
                "looped": "configs/looped/tiny/lr_b30_T15.yaml",
                "standard": "configs/looped/tiny/lr_standard.yaml",
            },
            "full": {"looped": "configs/looped/lr_b30_T15.yaml", "standard": "configs/garg/linear_regression.yaml"},
        },
        check=check,
        figure=figure,
        minutes={"tiny": 15},
    )
)
