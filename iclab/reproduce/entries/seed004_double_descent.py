"""Seed 004: double descent of minimum-norm least squares on random features, vs width and vs samples."""

import math

import matplotlib.pyplot as plt

from iclab.analysis.double_descent import run_double_descent
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Command, Entry, Verdict, equivalent, greater, per_seed
from iclab.reproduce.plots import save, seed_band

WINDOW, RISE = (0.8, 1.25), 10.0
SWEEPS = (
    ("width_sweep", "widths", "random features P (model width)", "n_train"),
    ("sample_sweep", "n_samples", "training samples n", "width"),
)


def _recs(runs):
    return [r.json("double_descent.json") for r in runs["random features"]]


def _sweep_check(sw: dict) -> dict:
    err = sw["test_error"]
    peak = sw["peak_error"]
    return {
        "peak_at": sw["peak_at"],
        "threshold": sw["threshold"],
        "peak_over_start": peak / err[0],
        "peak_over_end": peak / err[-1],
        "ok": WINDOW[0] * sw["threshold"] <= sw["peak_at"] <= WINDOW[1] * sw["threshold"]
        and peak >= RISE * err[0]
        and peak >= RISE * err[-1],
    }


def check(runs) -> Verdict:
    recs = _recs(runs)
    parts, numbers, details, values = [], {}, [], {}
    for key, *_ in SWEEPS:
        checks = [_sweep_check(r[key]) for r in recs]
        ok = sum(c["ok"] for c in checks)
        name = key.split("_")[0]
        values[f"{name} peak / threshold"] = [c["peak_at"] / c["threshold"] for c in checks]
        values[f"{name} peak / smallest"] = [c["peak_over_start"] for c in checks]
        values[f"{name} peak / largest"] = [c["peak_over_end"] for c in checks]
        thr = checks[0]["threshold"]
        peaks = [c["peak_at"] for c in checks]
        parts.append(
            f"{key.split('_')[0]}: peak at {per_seed(peaks, 0)} (threshold {thr}), at least "
            f"{min(c['peak_over_start'] for c in checks):.0f}x the error at the smallest and "
            f"{min(c['peak_over_end'] for c in checks):.0f}x at the largest (min over seeds; {ok}/{len(checks)} "
            "seeds in the window and above the rise)"
        )
        numbers[key] = checks
    poly = [r["polynomial"]["peak_at"] for r in recs]
    details.append(
        f"polynomial fitting (m={recs[0]['polynomial']['m']} points): test error peaks at degree "
        f"{per_seed(poly, 0)} (interpolation at degree {recs[0]['polynomial']['threshold']})"
    )
    return Verdict("; ".join(parts), numbers, details, values)


def figure(runs, path):
    recs = _recs(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, xkey, xlabel, _) in zip(axes, SWEEPS):
        xs = recs[0][key][xkey]
        seed_band(ax, xs, [[math.log10(v) for v in r[key]["test_error"]] for r in recs], "test error", "tab:red")
        thr = recs[0][key]["threshold"]
        ax.axvline(thr, color="k", ls="--", lw=1, label=f"interpolation threshold ({thr})")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("log10 test mean squared error")
        ax.set_title(f"{key.replace('_', ' ')} ({recs[0]['trials']} draws per point per seed)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"double descent: min-norm least squares on ReLU random features, label noise {recs[0]['noise']}", fontsize=10
    )
    save(fig, path)


REPRODUCTIONS.register("seed004-double-descent", help="test error peaks at the interpolation threshold")(
    Entry(
        name="seed004-double-descent",
        source="Seed 004 / Belkin et al. 2019",
        claim="Test error of minimum-norm least squares on random features rises to a peak where the model can just "
        "interpolate the training set (width = samples) and falls again past it, both as the width grows and as "
        "the number of samples grows.",
        criterion=f"in both sweeps the test error peaks within {WINDOW[0]:g}-{WINDOW[1]:g}x of the interpolation "
        f"threshold (geometric mean over seeds) and at least {RISE:g}x above the error at both ends of the sweep",
        tests=[
            t
            for name in ("width", "sample")
            for t in (
                equivalent(f"{name} peak / threshold", 1.0, math.log(WINDOW[1]), log=True),
                greater(f"{name} peak / smallest", 1.0, math.log(RISE), log=True),
                greater(f"{name} peak / largest", 1.0, math.log(RISE), log=True),
            )
        ],
        configs={
            "tiny": {"random features": Command(run_double_descent, {"trials": 10})},
            "full": {"random features": Command(run_double_descent, {"trials": 50})},
        },
        check=check,
        figure=figure,
        seeds={"tiny": 5, "full": 5},
        minutes={"tiny": 2},
    )
)
