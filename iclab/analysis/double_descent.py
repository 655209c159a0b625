"""Double descent (Belkin et al. 2019; seed 004's lecture): the test error of the minimum-norm least-squares
fit rises to a peak where the model can just interpolate its training data, and falls again beyond it.

    iclab dynamics double-descent --out DIR [--seed S] [--trials T] [--n-train N] [--width P] [--noise SIGMA]

Three experiments, each the average over `trials` independent draws (float64 numpy, seeded):

    width sweep    random-features regression: inputs x ~ N(0, I_d) (d = 20), targets y = <beta, x> + noise with
                   beta ~ N(0, I_d / d) and noise N(0, sigma^2); features relu(W x / sqrt(d)) with W ~ N(0, 1) of
                   shape (P, d); the weights of the features are the minimum-norm least-squares solution
                   (numpy.linalg.lstsq). P sweeps 1..10 n for n training samples: the interpolation threshold
                   is P = n.
    sample sweep   the same model at a fixed width P, the number of training samples n sweeping 2..10 P: the
                   threshold is n = P (more data hurts near it).
    polynomial     the lecture's picture: m = 15 noisy samples of sin(pi x) on [-1, 1], Legendre features
                   P_0..P_k (each scaled by 1/(j+1), so the minimum-norm fit prefers smooth polynomials), k from 0 to
                   100; the threshold is k + 1 = m. Beside the error curve: the fits at a low degree, at the
                   threshold and far past it.

The test error is the mean squared error against the noiseless targets on 2,000 fresh inputs. DIR/double_descent.json:

    {"seed", "trials", "noise", "width_sweep": {"n_train", "d", "widths", "test_error", "test_error_se",
     "train_error", "threshold", "peak_at", "peak_error"}, "sample_sweep": {... "width", "n_samples" ...},
     "polynomial": {"m", "degrees", "test_error", "threshold", "peak_at", "fits": {...}}, "seconds"}

and double_descent.png (the three error curves, log y, the threshold marked) and double_descent_poly.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from iclab.files import write_json

D_IN = 20
N_TEST = 2000


def _min_norm_fit(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(F, y, rcond=None)[0]


def random_features_error(
    n_train: int, width: int, *, d: int = D_IN, noise: float = 0.5, rng: np.random.Generator
) -> tuple[float, float]:
    """(test, train) mean squared error of one min-norm random-features fit (see the module docstring)."""
    beta = rng.standard_normal(d) / np.sqrt(d)
    W = rng.standard_normal((width, d))
    X, Xt = rng.standard_normal((n_train, d)), rng.standard_normal((N_TEST, d))
    y = X @ beta + noise * rng.standard_normal(n_train)
    feats = lambda Z: np.maximum(Z @ W.T / np.sqrt(d), 0.0)  # noqa: E731
    a = _min_norm_fit(feats(X), y)
    return float(np.mean((feats(Xt) @ a - Xt @ beta) ** 2)), float(np.mean((feats(X) @ a - y) ** 2))


def _sweep(values, make, trials: int, rng: np.random.Generator) -> dict:
    both = np.array([[make(v, rng) for _ in range(trials)] for v in values])  # (values, trials, 2)
    test, train = both[..., 0], both[..., 1]
    mean = test.mean(1)
    i = int(np.argmax(mean))
    return {
        "test_error": mean.tolist(),
        "test_error_se": (test.std(1, ddof=1) / np.sqrt(trials)).tolist() if trials > 1 else [0.0] * len(values),
        "train_error": train.mean(1).tolist(),
        "peak_at": int(values[i]),
        "peak_error": float(mean[i]),
    }


def _grid(n: int, lo: int, hi_factor: float) -> list[int]:
    """Integers from lo to hi_factor * n, dense around n (n itself included)."""
    g = set(np.unique(np.geomspace(lo, hi_factor * n, 28).astype(int)).tolist())
    g |= {max(lo, int(round(n * f))) for f in (0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5)}
    return sorted(g)


def width_sweep(n_train: int = 100, *, trials: int = 10, noise: float = 0.5, seed: int = 0) -> dict:
    rng = np.random.default_rng([seed, 1])
    widths = _grid(n_train, 1, 10)
    res = _sweep(widths, lambda w, r: random_features_error(n_train, w, noise=noise, rng=r), trials, rng)
    return {"n_train": n_train, "d": D_IN, "widths": widths, "threshold": n_train, **res}


def sample_sweep(width: int = 100, *, trials: int = 10, noise: float = 0.5, seed: int = 0) -> dict:
    rng = np.random.default_rng([seed, 2])
    ns = _grid(width, 2, 10)
    res = _sweep(ns, lambda n, r: random_features_error(n, width, noise=noise, rng=r), trials, rng)
    return {"width": width, "d": D_IN, "n_samples": ns, "threshold": width, **res}


# --- polynomial fitting ------------------------------------------------------------------------------------
def legendre_features(x: np.ndarray, degree: int) -> np.ndarray:
    """(len(x), degree + 1): P_j(x) / (j + 1), j = 0..degree."""
    V = np.polynomial.legendre.legvander(x, degree)
    return V / np.arange(1, degree + 2)


def polynomial_fit(x: np.ndarray, y: np.ndarray, degree: int):
    coef = _min_norm_fit(legendre_features(x, degree), y)
    return lambda z: legendre_features(z, degree) @ coef


def polynomial_sweep(
    m: int = 15, max_degree: int = 100, *, trials: int = 10, noise: float = 0.2, seed: int = 0
) -> dict:
    rng = np.random.default_rng([seed, 3])
    f = lambda z: np.sin(np.pi * z)  # noqa: E731
    xt = np.linspace(-1, 1, N_TEST)
    degrees = list(range(0, max_degree + 1))
    errs = np.zeros((len(degrees), trials))
    draws = []
    for t in range(trials):
        x = rng.uniform(-1, 1, m)
        y = f(x) + noise * rng.standard_normal(m)
        draws.append((x, y))
        for i, k in enumerate(degrees):
            errs[i, t] = np.mean((polynomial_fit(x, y, k)(xt) - f(xt)) ** 2)
    mean = errs.mean(1)
    i = int(np.argmax(mean))
    x, y = draws[0]
    show = sorted({3, m - 1, max_degree})
    fits = {str(k): polynomial_fit(x, y, k)(xt[::10]).tolist() for k in show}
    return {
        "m": m,
        "noise": noise,
        "degrees": degrees,
        "test_error": mean.tolist(),
        "test_error_median": np.median(errs, 1).tolist(),
        "threshold": m - 1,
        "peak_at": degrees[i],
        "peak_error": float(mean[i]),
        "sample": {"x": x.tolist(), "y": y.tolist()},
        "grid": xt[::10].tolist(),
        "fits": fits,
    }


# --- the experiment ---------------------------------------------------------------------------------------------
def run_double_descent(
    out: Path, *, seed: int = 0, trials: int = 10, n_train: int = 100, width: int = 100, noise: float = 0.5
) -> dict:
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(1):  # small matrices: one BLAS thread is faster, and kind to a shared CPU
        rec = {
            "seed": seed,
            "trials": trials,
            "noise": noise,
            "width_sweep": width_sweep(n_train, trials=trials, noise=noise, seed=seed),
            "sample_sweep": sample_sweep(width, trials=trials, noise=noise, seed=seed),
            "polynomial": polynomial_sweep(trials=trials, seed=seed),
        }
    rec["seconds"] = time.perf_counter() - t0
    write_json(out / "double_descent.json", rec)
    rec["figures"] = [
        str(plot_double_descent(rec, out / "double_descent.png")),
        str(plot_polynomial(rec["polynomial"], out / "double_descent_poly.png")),
    ]
    rec["path"] = str(out / "double_descent.json")
    return rec


def _plt():
    from iclab.plotting import plt

    return plt


def _curve(ax, xs, r: dict, xlabel: str, thr_label: str):
    ax.plot(xs, r["test_error"], "-o", ms=3, lw=2, color="tab:red", label="test (noiseless targets)")
    if "train_error" in r:
        ax.plot(xs, np.maximum(r["train_error"], 1e-12), "-", lw=1.2, color="tab:blue", label="train")
    ax.axvline(r["threshold"], color="k", ls="--", lw=1, label=thr_label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.3 * min(r["test_error"]), 3 * max(r["test_error"]))  # train error ~1e-30 past the threshold
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean squared error")
    ax.legend(fontsize=7)


def plot_double_descent(rec: dict, path: Path) -> Path:
    plt = _plt()
    w, s, p = rec["width_sweep"], rec["sample_sweep"], rec["polynomial"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    _curve(
        axes[0], w["widths"], w, "random features P (model width)", f"interpolation threshold P = n = {w['n_train']}"
    )
    axes[0].set_title(f"vs width: n = {w['n_train']} samples, d = {w['d']}", fontsize=9)
    _curve(axes[1], s["n_samples"], s, "training samples n", f"interpolation threshold n = P = {s['width']}")
    axes[1].set_title(f"vs samples: P = {s['width']} random features", fontsize=9)
    ax = axes[2]
    ax.plot(p["degrees"], p["test_error_median"], "-", lw=2, color="tab:red", label="test, median of draws")
    ax.plot(p["degrees"], p["test_error"], "-", lw=1, color="tab:orange", label="test, mean")
    ax.axvline(p["threshold"], color="k", ls="--", lw=1, label=f"degree + 1 = m = {p['m']}")
    ax.set_yscale("log")
    ax.set_xlabel("polynomial degree")
    ax.set_ylabel("mean squared error")
    ax.set_title(f"polynomial fitting: m = {p['m']} points of sin(pi x) + noise", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(
        f"double descent of minimum-norm least squares (label noise {rec['noise']}, mean of "
        f"{rec['trials']} draws, seed {rec['seed']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_polynomial(p: dict, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, len(p["fits"]), figsize=(4.3 * len(p["fits"]), 3.6), sharey=True)
    for ax, (k, ys) in zip(axes, p["fits"].items()):
        ax.plot(p["grid"], np.sin(np.pi * np.asarray(p["grid"])), color="gray", lw=1, label="sin(pi x)")
        ax.plot(p["grid"], ys, color="tab:red", lw=1.8, label=f"degree {k} fit")
        ax.plot(p["sample"]["x"], p["sample"]["y"], "o", color="k", ms=4, label=f"{p['m']} samples")
        where = "below" if int(k) < p["threshold"] else ("at" if int(k) == p["threshold"] else "past")
        ax.set_title(f"degree {k} ({where} the threshold)", fontsize=9)
        ax.set_ylim(-2.5, 2.5)
        ax.set_xlabel("x")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("minimum-norm polynomial fits (Legendre basis, P_j / (j+1))", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
