"""Linear probes: which algorithm's intermediate quantities does each layer's residual stream hold?

Following Fu et al. (2023), a linear (ridge) probe reads a target (targets.py: the task's w, the least-
squares / ridge solution of the prefix, k steps of gradient descent or of Iterative Newton, or any of those
methods' predictions for the query) from the hidden state at a query's x token, for every layer of every
loop iteration. The probe:

    features   h (C,) at the x token of query i; standardized with the training split's mean and std
    fit        W(lam) = argmin (1/N)||Hs W + 1 c^T - Y||^2 + lam ||W||^2, the intercept c unpenalized:
               centre H and Y, then W = V diag(1 / (s + lam)) V^T (Hs^T Yc / N) from one eigendecomposition
               Hs^T Hs / N = V diag(s) V^T, so every candidate lam costs one matrix product
    penalty    the lam in `lambdas` with the highest validation R^2
    score      held-out R^2 = mean over the target's dimensions of 1 - SSE/SST (SST around the held-out
               set's own mean; dimensions with SST = 0 are left out), on a test split

Prompts: three prompt sets (train / validation / test) from three generator seeds (seed, seed+1, seed+2),
so no prompt is shared. Positions: one probe per (iteration, layer, target) pools every query with at
least `min_examples` in-context examples (default 1: i = 1 .. n-1, so least squares differs from w when
i < d); the test R^2 of that pooled probe is also reported per position ("r2_by_position").
Controls in the same run: the same probes on a randomly initialized model of the same architecture
(torch.manual_seed(seed), workload.build_model()), and on the read-in embedding e = read_in(x) of the query
token alone ("embed", layer 0), which holds x_{i+1} and nothing about the prompt.

Writes RUN_DIR/probes.json and probes.png (R^2 vs layer: block j, or "t.j" = block j of loop iteration t in a
looped model, both 0-based as in `iclab surgery`); with options other than the defaults, probes_<options>.json
(or probes_TAG.json with --tag).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from iclab.analysis.targets import TargetError, compute_targets
from iclab.files import write_json
from iclab.runs import RunError, load_run_config, load_run_model
from iclab.training.device import run_device
from iclab.workloads import make_workload
from iclab.workloads.base import check_loops

LAMBDAS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


class ProbeError(RunError):
    pass


# --- the probe ---------------------------------------------------------------------------------------


def r2_score(Y: np.ndarray, P: np.ndarray) -> float:
    """Mean over columns of 1 - SSE/SST (SST around Y's own column means; constant columns left out)."""
    sse = ((Y - P) ** 2).sum(0)
    sst = ((Y - Y.mean(0)) ** 2).sum(0)
    keep = sst > 1e-12 * max(float(sst.max()), 1e-300)
    return float(np.mean(1 - sse[keep] / sst[keep])) if keep.any() else float("nan")


def fit_ridge_probe(
    H_train: np.ndarray, Y_train: np.ndarray, H_val: np.ndarray, Y_val: np.ndarray, lambdas=LAMBDAS
) -> tuple[np.ndarray, float, float]:
    """Ridge probe H (N, p) -> Y (N, k) (or (N,)); returns (W (p+1, k): predict [H, 1] @ W in raw feature
    units, the chosen lam, its validation R^2)."""
    H, Y = np.asarray(H_train, np.float64), np.asarray(Y_train, np.float64).reshape(len(H_train), -1)
    Hv, Yv = np.asarray(H_val, np.float64), np.asarray(Y_val, np.float64).reshape(len(H_val), -1)
    if len(H) != len(Y) or len(Hv) != len(Yv) or not len(lambdas):
        raise ValueError(
            f"probe data: {len(H)} vs {len(Y)} training rows, {len(Hv)} vs {len(Yv)} validation rows, "
            f"{len(lambdas)} penalties"
        )
    mu, sd = H.mean(0), H.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    Hs, ym = (H - mu) / sd, Y.mean(0)
    s, V = np.linalg.eigh(Hs.T @ Hs / len(H))
    proj = V.T @ (Hs.T @ (Y - ym) / len(H))  # (p, k)
    Hvs = (Hv - mu) / sd @ V
    best = None
    for lam in lambdas:
        coef = proj / (s.clip(0) + lam)[:, None]  # W in the eigenbasis
        r2 = r2_score(Yv, Hvs @ coef + ym)
        if best is None or r2 > best[2]:
            best = (coef, float(lam), r2)
    coef, lam, r2 = best
    Ws = V @ coef / sd[:, None]  # back to raw features
    return np.vstack([Ws, ym - mu @ Ws]), lam, r2


def predict(W: np.ndarray, H: np.ndarray) -> np.ndarray:
    return np.asarray(H, np.float64) @ W[:-1] + W[-1]


def layer_labels(pairs) -> list[str]:
    """Labels of (iteration t, block j) pairs, 0-based as everywhere in iclab (`iclab surgery` ops): "j" for a
    single iteration, "t.j" when the model loops."""
    pairs = [(t, j) for t, j, *_ in pairs]
    looped = len({t for t, _ in pairs}) > 1
    return [f"{t}.{j}" if looped else str(j) for t, j in pairs]


LAYER_AXIS = "layer (block, from 0; looped: iteration.block)"


# --- hidden states ------------------------------------------------------------------------------------


def check_linear_task(workload, targets: list[str]) -> None:
    from iclab.workloads.regression.functions.linear import LinearRegression

    if workload.family != "regression" or not isinstance(workload.task, LinearRegression):
        raise ProbeError(
            f"probe targets need a linear-regression task (linear_regression, noisy_linear_regression, "
            f"sparse_linear_regression); this run's task is {workload.cfg.task.name}"
        )


def sample_linear(task, n_prompts: int, n_points: int, seed: int, device) -> tuple[torch.Tensor, ...]:
    """xs (B, n, d), ys (B, n), w (B, d) drawn as the task draws them (LinearRegression.sample), from our generator."""
    task = task.without_pool()
    gen = torch.Generator(device=device).manual_seed(seed)
    d = task.n_dims
    xs = task.sample_xs(n_prompts, n_points, d, gen, device)
    w = task.sample_params(n_prompts, d, gen, device)
    return xs, task.add_noise(task.evaluate(w, xs), gen), w


@torch.no_grad()
def hidden_states(model, xs: torch.Tensor, ys: torch.Tensor, loops: int | None = None, batch: int = 500):
    """(layer labels ["embed", "0", "1", ...] (looped: "0.0", "0.1", ...),
    states (layers, B, n, C) at the x tokens, float32 on the CPU,
    predictions (B, n) of the final iteration)."""
    if model.cfg.drop_tokens:
        raise ProbeError("probes and the logit lens need a model without token dropping (model.drop_tokens=0)")
    from iclab.models.transformer import interleave

    model.eval()
    chunks, preds, labels = [], [], ["embed"]
    for s in range(0, len(xs), batch):
        x, y = xs[s : s + batch], ys[s : s + batch]
        with model.tapped() as taps:
            preds.append(model.predict(x, y, loops=loops).cpu())
        e = model.read_in(interleave(x, y))
        chunks.append(torch.stack([e[:, 0::2]] + [u[:, 0::2] for _, _, u in taps]).float().cpu())
        if s == 0:
            labels += layer_labels(taps)
    return labels, torch.cat(chunks, 1), torch.cat(preds)


# --- the experiment -------------------------------------------------------------------------------------


def _probe_model(states: list[torch.Tensor], tg: list[dict], positions: np.ndarray, lambdas) -> dict:
    """states[split] (layers, B, n, C), tg[split][name] -> per target: r2 per layer, lam, r2 by position."""
    out = {}
    n_layers = states[0].shape[0]
    for name in tg[0]:
        rec = {"r2": [], "lam": [], "r2_val": [], "r2_by_position": []}
        Ys = [t[name][:, positions].reshape(len(t[name]) * len(positions), -1).numpy() for t in tg]
        for layer in range(n_layers):
            Hs = [s[layer][:, positions].reshape(-1, s.shape[-1]).double().numpy() for s in states]
            W, lam, r2v = fit_ridge_probe(Hs[0], Ys[0], Hs[1], Ys[1], lambdas)
            P = predict(W, Hs[2])
            rec["r2"].append(r2_score(Ys[2], P))
            rec["lam"].append(lam)
            rec["r2_val"].append(r2v)
            Yp, Pp = Ys[2].reshape(-1, len(positions), Ys[2].shape[-1]), P.reshape(-1, len(positions), P.shape[-1])
            rec["r2_by_position"].append([r2_score(Yp[:, q], Pp[:, q]) for q in range(len(positions))])
        out[name] = rec
    return out


def run_probes(
    run_dir: Path,
    targets: list[str],
    n_train: int = 2000,
    n_val: int | None = None,
    n_test: int | None = None,
    min_examples: int = 1,
    seed: int = 0,
    loops: int | None = None,
    ridge_lam: float = 0.1,
    lambdas=LAMBDAS,
    write: bool = True,
    tag: str | None = None,
) -> dict:
    """Probe every (iteration, layer) of a linear-regression run for each target; see the module docstring."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    workload = make_workload(cfg, run_dir)
    check_linear_task(workload, targets)
    check_loops(cfg, loops)
    try:
        compute_targets(targets, torch.zeros(1, 1, 1), torch.zeros(1, 1), torch.zeros(1, 1))  # names, before any work
    except TargetError as e:
        raise ProbeError(str(e)) from None
    device = run_device(cfg.training.device)
    model = load_run_model(run_dir, cfg, device, workload)
    n, d = cfg.eval.n_points or cfg.task.n_points, cfg.task.n_dims
    if not 0 <= min_examples < n:
        raise ProbeError(f"--min-examples {min_examples} must be in 0..{n - 1} (prompts have {n} points)")
    positions = np.arange(min_examples, n)
    sizes = (n_train, n_val or max(n_train // 4, 50), n_test or max(n_train // 2, 50))
    data = [sample_linear(workload.task, size, n, seed + k, device) for k, size in enumerate(sizes)]
    tg = [{k: v.cpu() for k, v in compute_targets(targets, xs, ys, w, ridge_lam).items()} for xs, ys, w in data]
    torch.manual_seed(seed)
    random_model = workload.build_model().to(device)
    record: dict = {
        "task": cfg.task.name,
        "n_dims": d,
        "n_points": n,
        "min_examples": min_examples,
        "positions": positions.tolist(),
        "n_prompts": dict(zip(("train", "val", "test"), sizes)),
        "seed": seed,
        "loops": loops or model.cfg.loops,
        "ridge_lam": ridge_lam,
        "lambdas": list(lambdas),
        "targets": targets,
    }
    for key, m in (("trained", model), ("random_init", random_model)):
        outs = [hidden_states(m, xs, ys, loops) for xs, ys, _ in data]
        record["layers"] = outs[0][0]
        record[key] = _probe_model([o[1] for o in outs], tg, positions, lambdas)
    if write:
        suffix = f"_{tag}" if tag else ""
        write_json(run_dir / f"probes{suffix}.json", record)
        plot_probes(record, run_dir / f"probes{suffix}.png")
    return record


def best_layers(record: dict) -> list[tuple[str, str, float, str, float, float]]:
    """(target, best layer, its R^2, random-init best layer, its R^2, embed R^2) per target (embed excluded
    from the best-layer search)."""
    rows = []
    for name in record["targets"]:
        tr, rn = record["trained"][name]["r2"], record["random_init"][name]["r2"]
        bt, br = 1 + int(np.nanargmax(tr[1:])), 1 + int(np.nanargmax(rn[1:]))
        rows.append((name, record["layers"][bt], tr[bt], record["layers"][br], rn[br], tr[0]))
    return rows


def plot_probes(record: dict, path: Path) -> Path:
    from iclab.plotting import plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = list(range(len(record["layers"])))
    for i, name in enumerate(record["targets"]):
        color = plt.cm.tab10(i % 10)
        tr, rn = record["trained"][name]["r2"], record["random_init"][name]["r2"]
        ax.plot(xs[1:], tr[1:], color=color, lw=2, marker="o", ms=3, label=name)
        ax.plot(xs[1:], rn[1:], color=color, lw=1.2, ls="--")
        ax.plot([0], [tr[0]], color=color, marker="s", ls="none")
    ax.plot([], [], color="gray", ls="--", label="random init")
    ax.plot([], [], color="gray", marker="s", ls="none", label="embed (read-in)")
    ax.set_xticks(xs, record["layers"])
    ax.axhline(0, color="gray", lw=0.8, alpha=0.6)
    ax.set_xlabel(LAYER_AXIS)
    ax.set_ylabel("held-out R$^2$ of a linear probe")
    low = np.nanmin([record[k][t]["r2"] for k in ("trained", "random_init") for t in record["targets"]])
    ax.set_ylim(max(min(-0.1, float(low) - 0.05), -1.0), 1.05)
    ax.set_title(
        f"probes at queries with >= {record['min_examples']} examples ({record['task']}, d={record['n_dims']})"
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
