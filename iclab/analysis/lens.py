"""Logit lens for in-context regression: read every layer out as if it were the last.

For the hidden state u after block j of loop iteration t (Trunk.tapped: the residual stream before any
final norm) the lens prediction at the query x_{i+1} is

    yhat_{t,j,i} = read_out(ln_f(u))[x token of query i]

i.e. the model's own read-out path (ln_f, then the linear read-out), so the lens of the last block of the
last iteration is exactly the model's prediction. Its error is normalized as in the evaluation:

    err_{t,j}(i) = E_prompts[(yhat_{t,j,i} - y_{i+1})^2] / zero_error(d)     (1 = predicting 0)

reported per number of in-context examples i = 0..n-1 and averaged over the queries with at least
`min_examples` examples (per layer). Works for every regression task (fresh functions, task.without_pool()).
Writes RUN_DIR/lens.json and lens.png.

Token workloads (language model, sorting, modular arithmetic): the LM head's own path, logits =
ln_f(u) @ wte^T, on the workload's fixed analysis batches (`SequenceWorkload.fixed_batches`, as layer surgery): the
cross-entropy (nats and bits per counted token) and the token accuracy of every layer; the last block of the last
iteration reproduces the model's own numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from iclab.analysis.probes import LAYER_AXIS, ProbeError, layer_labels
from iclab.files import write_json
from iclab.runs import load_run_config, load_run_model
from iclab.training.device import run_device
from iclab.workloads import make_workload
from iclab.workloads.base import check_loops


@torch.no_grad()
def lens_predictions(model, xs: torch.Tensor, ys: torch.Tensor, loops: int | None = None, batch: int = 500):
    """(labels ["0", "1", ...] (looped: "0.0", ...), lens predictions (layers, B, n), the model's predictions
    (B, n))."""
    if model.cfg.drop_tokens:
        raise ProbeError("probes and the logit lens need a model without token dropping (model.drop_tokens=0)")
    model.eval()
    lens, preds, labels = [], [], []
    for s in range(0, len(xs), batch):
        with model.tapped() as taps:
            preds.append(model.predict(xs[s : s + batch], ys[s : s + batch], loops=loops))
        lens.append(torch.stack([model._read_out(model.ln_f(u[:, 0::2])) for _, _, u in taps]))
        labels = layer_labels(taps)
    return labels, torch.cat(lens, 1), torch.cat(preds)


#: prompts of the regression lens by default; sequences of the token lens by default and at most
N_PROMPTS, TOKEN_CAP = 2000, 512


def logit_lens(
    run_dir: Path,
    n_prompts: int | None = None,
    seed: int = 0,
    loops: int | None = None,
    min_examples: int | None = None,
    write: bool = True,
    tag: str | None = None,
) -> dict:
    """The lens record of a run; written to RUN/lens[_TAG].json and lens[_TAG].png (the record's "path")."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    check_loops(cfg, loops)
    workload = make_workload(cfg, run_dir)
    suffix = f"_{tag}" if tag else ""
    if workload.family != "regression":
        if n_prompts is not None and n_prompts > TOKEN_CAP:
            raise ProbeError(
                f"--n-prompts {n_prompts}: the logit lens of a token workload reads at most {TOKEN_CAP} sequences"
            )
        n = n_prompts or TOKEN_CAP
        device = run_device(cfg.training.device)
        model = load_run_model(run_dir, cfg, device, workload)
        record = token_lens(model, workload, device, n=n, seed=seed, loops=loops)
        record |= {"n_prompts": n, "seed": seed}
        if write:
            write_json(run_dir / f"lens{suffix}.json", record)
            plot_token_lens(record, run_dir / f"lens{suffix}.png")
        return record | {"path": str(run_dir / f"lens{suffix}.json")}
    n_prompts = n_prompts or N_PROMPTS
    device = run_device(cfg.training.device)
    model = load_run_model(run_dir, cfg, device, workload)
    n, d = cfg.eval.n_points or cfg.task.n_points, cfg.task.n_dims
    min_examples = d if min_examples is None else min_examples
    if not 0 <= min_examples < n:
        raise ProbeError(f"--min-examples {min_examples} must be in 0..{n - 1} (prompts have {n} points)")
    task = workload.task.without_pool()
    xs, ys = task.sample(n_prompts, n, d, torch.Generator(device=device).manual_seed(seed), device)
    labels, lens, preds = lens_predictions(model, xs, ys, loops)
    z = task.zero_error(d)
    by_pos = ((lens - ys) ** 2).mean(1).double().cpu() / z  # (layers, n)
    model_pos = ((preds - ys) ** 2).mean(0).double().cpu() / z
    record = {
        "task": cfg.task.name,
        "n_dims": d,
        "n_points": n,
        "n_prompts": n_prompts,
        "seed": seed,
        "loops": loops or model.cfg.loops,
        "min_examples": min_examples,
        "layers": labels,
        "error": by_pos[:, min_examples:].mean(1).tolist(),
        "error_last": by_pos[:, -1].tolist(),
        "error_by_position": by_pos.tolist(),
        "model_error_by_position": model_pos.tolist(),
    }
    if write:
        write_json(run_dir / f"lens{suffix}.json", record)
        plot_lens(record, run_dir / f"lens{suffix}.png")
    return record | {"path": str(run_dir / f"lens{suffix}.json")}


def plot_lens(record: dict, path: Path) -> Path:
    from iclab.plotting import plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    xs = list(range(1, len(record["layers"]) + 1))
    ax1.plot(xs, record["error"], marker="o", lw=2, label=f"mean over >= {record['min_examples']} examples")
    ax1.plot(xs, record["error_last"], marker="s", lw=1.5, ls="--", label=f"at {record['n_points'] - 1} examples")
    ax1.set_xticks(xs, record["layers"])
    ax1.set(xlabel=LAYER_AXIS, ylabel="normalized squared error", title="logit lens vs layer")
    ax1.set_yscale("log")
    cmap = plt.cm.viridis
    pos = list(range(record["n_points"]))
    for k, (label, curve) in enumerate(zip(record["layers"], record["error_by_position"])):
        ax2.plot(pos, curve, color=cmap(k / max(len(xs) - 1, 1)), lw=1.5, label=f"layer {label}")
    ax2.plot(pos, record["model_error_by_position"], color="k", ls=":", lw=1.5, label="model")
    ax2.axvline(record["n_dims"], color="gray", lw=0.8, ls=":", alpha=0.6)
    ax2.set(xlabel="in-context examples", ylabel="normalized squared error", title="logit lens vs in-context examples")
    ax2.set_ylim(-0.05, max(1.3, min(3.0, max(max(c) for c in record["error_by_position"]))))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{record['task']}, d={record['n_dims']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


@torch.no_grad()
def token_lens(model, workload, device, *, n: int, seed: int, loops: int | None = None) -> dict:
    """Loss and token accuracy of the LM head applied after every block (see the module docstring)."""
    import torch.nn.functional as F

    from iclab.workloads.sequence.base import IGNORE

    model.eval()
    loss_sum, right, counted, labels = None, None, 0, []
    model_loss = 0.0
    for x, y in workload.fixed_batches(n, seed, device):
        with model.tapped() as taps:
            logits = model.logits(x, loops=loops)
        keep = y != IGNORE
        model_loss += F.cross_entropy(logits[keep].float(), y[keep], reduction="sum").item()
        ls, rs = [], []
        for _, _, u in taps:
            t = y[:, y.shape[1] - u.shape[1] :]
            k = t != IGNORE
            lg = model.lm_head(model.ln_f(u))[k].float()
            ls.append(F.cross_entropy(lg, t[k], reduction="sum").item())
            rs.append((lg.argmax(-1) == t[k]).sum().item())
        labels = layer_labels(taps)
        loss_sum = ls if loss_sum is None else [a + b for a, b in zip(loss_sum, ls)]
        right = rs if right is None else [a + b for a, b in zip(right, rs)]
        counted += int(keep.sum())
    return {
        "task": workload.cfg.task.name,
        "family": "sequence",
        "layers": labels,
        "n_tokens": counted,
        "loops": loops or model.cfg.loops,
        "loss": [v / counted for v in loss_sum],
        "bits": [v / counted / math.log(2) for v in loss_sum],
        "token_accuracy": [v / counted for v in right],
        "model_loss": model_loss / counted,
        "model_bits": model_loss / counted / math.log(2),
    }


def plot_token_lens(record: dict, path: Path) -> Path:
    from iclab.plotting import plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = list(range(1, len(record["layers"]) + 1))
    ax1.plot(xs, record["loss"], marker="o", lw=2)
    ax1.axhline(record["model_loss"], color="k", ls=":", label="model")
    ax1.set(ylabel="cross-entropy (nats per counted token)", title="logit lens: loss vs layer")
    bits = ax1.secondary_yaxis("right", functions=(lambda v: v / math.log(2), lambda v: v * math.log(2)))
    bits.set_ylabel("bits per counted token")
    ax2.plot(xs, record["token_accuracy"], marker="o", lw=2, color="tab:red")
    ax2.set(ylabel="token accuracy", title="logit lens: accuracy vs layer", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.set_xticks(xs, record["layers"])
        ax.set_xlabel(LAYER_AXIS)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(f"{record['task']}: {record['n_tokens']:,} tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
