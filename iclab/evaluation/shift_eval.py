"""Evaluation under distribution shifts and on other function classes (`iclab eval --shift/--task/--all-shifts`;
the regression workload opens the run and writes the files, iclab/workloads/regression/workload.py).

Writes `eval_<tag>.json` (the eval.json schema plus `shift`, `shift_options`, `eval_task`, `zero_predictor`)
and its figure; `--all-shifts` also writes a summary figure with one panel per shift.

Errors are normalized by the evaluated task's zero_error (the same constant as its standard evaluation),
so under a shift that changes E[y^2] (scaled_x, scaled_y, label_noise, ...) 1.0 is no longer "predicting
zero": the record's `zero_predictor` curve is that error, measured on the same prompts.

Query shifts evaluate position i on the prompt's first i points followed by the query xq_i; to give
every position every prompt, each prompt is expanded into n rows (row i holds xq_i at position i), so
the model and the baselines cost about n times the standard evaluation (rows count toward eval.batch_size).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from iclab.evaluation import EvalError
from iclab.evaluation.baselines import resolve
from iclab.evaluation.regression import Task, eval_generator, model_predictions, summarize
from iclab.evaluation.shifts import Shift


def query_rows(xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor):
    """(B, n, D) prompts and queries -> (B*n, n, D) rows: row (b, i) is prompt b with point i replaced by
    query i (later points do not matter to the prediction at i)."""
    B, n, D = xs.shape
    eye = torch.eye(n, dtype=torch.bool, device=xs.device)
    rx = torch.where(eye[None, :, :, None], xq[:, None], xs[:, None])
    ry = torch.where(eye[None], yq[:, None], ys[:, None])
    return rx.reshape(B * n, n, D), ry.reshape(B * n, n)


def _diag(pred: torch.Tensor, B: int, n: int) -> torch.Tensor:
    return pred.reshape(B, n, n).diagonal(dim1=1, dim2=2)


@torch.no_grad()
def evaluate_shift(
    model,
    task: Task,
    shift: Shift,
    *,
    n_prompts: int,
    n_points: int,
    n_dims: int | None = None,
    loops: int | None = None,
    baselines=(),
    seed: int = 12345,
    batch_size: int = 500,
    device="cpu",
) -> dict:
    model.eval()
    d = n_dims or task.n_dims
    why = shift.applies_to(task)
    if why:
        raise ValueError(f"shift {type(shift).__name__} does not apply to {type(task).__name__}: {why}")
    n = shift.n_points(n_points, d)
    gen = eval_generator(seed, device)
    norm = task.zero_error(d)
    resolved = resolve(baselines)  # names or {name, options, label} mappings
    errs: dict[str, list[torch.Tensor]] = {"model": [], "zero": []} | {b.label: [] for b in resolved}
    per_prompt = n if shift.query else 1
    step = max(1, batch_size // per_prompt)
    for s in range(0, n_prompts, step):
        bs = min(step, n_prompts - s)
        p = shift.sample(task, bs, n, d, gen, device)
        if p.xq is None:
            xs, ys, target = p.xs, p.ys, p.ys

            def pick(pred):
                return pred
        else:
            xs, ys = query_rows(p.xs, p.ys, p.xq, p.yq)
            target = p.yq

            def pick(pred, bs=bs):
                return _diag(pred, bs, n)

        errs["model"].append((pick(model_predictions(model, xs, ys, loops)) - target).pow(2) / norm)
        errs["zero"].append(target.pow(2) / norm)
        for b in resolved:
            errs[b.label].append((pick(b(xs, ys, task)) - target).pow(2) / norm)
    positions = {b.label: b.positions for b in resolved}
    summ = {k: summarize(torch.cat(v), positions.get(k)) for k, v in errs.items()}
    return {
        "task": type(task).__name__,
        "n_dims": d,
        "n_points": n,
        "n_prompts": n_prompts,
        "loops": loops or model.cfg.loops,
        "seed": seed,
        "normalization": norm,
        "model": summ.pop("model"),
        "zero_predictor": summ.pop("zero"),
        "baselines": summ,
    }


def parse_options(items: list[str] | None, what: str) -> dict:
    """['factor=3', 'noise_std=0.5'] -> {'factor': 3, 'noise_std': 0.5} (values parsed as YAML)."""
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise EvalError(f"{what} '{item}' is not of the form key=value")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v) if v != "" else ""
    return out


def shift_tag(shift: str, shift_options: dict | None = None, task_name: str | None = None) -> str:
    tag = shift + "".join(f"_{k}{v}" for k, v in sorted((shift_options or {}).items()))
    if task_name:
        tag += f"_on_{task_name}"
    return re.sub(r"[^A-Za-z0-9_.=-]", "-", tag)


SPARE_COLORS = ("tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")  # never the model's blue


def plot_shift_grid(results: dict[str, dict], path: Path, title: str | None = None) -> Path:
    """One panel per shift: the model, every baseline and the zero predictor, error vs in-context examples."""
    import math

    from iclab.evaluation.plots import BASELINE_STYLE
    from iclab.plotting import plt

    k = len(results)
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (name, ev) in zip(axes.flat, results.items()):
        xs = list(range(ev["n_points"]))
        curves = [("Transformer", ev["model"], dict(color="tab:blue", lw=2))]
        spare = iter(SPARE_COLORS)
        for b, c in ev["baselines"].items():
            lab, color, ls = BASELINE_STYLE.get(b) or (b, next(spare, None), "--")
            curves.append((lab, c, dict(color=color, ls=ls, lw=1.3)))
        for lab, c, kw in curves:
            (line,) = ax.plot(xs, c["mean"], label=lab, **kw)
            lo = [m - h for m, h in zip(c["mean"], c["ci95"])]
            hi = [m + h for m, h in zip(c["mean"], c["ci95"])]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.12)
        ax.plot(xs, ev["zero_predictor"]["mean"], color="gray", lw=0.8, alpha=0.7, label="predict 0")
        top = max(1.3, min(6.0, 1.15 * max(max(ev["zero_predictor"]["mean"]), max(ev["model"]["mean"]))))
        ax.set_ylim(-0.05, top)
        if ev["n_dims"] < ev["n_points"]:
            ax.axvline(ev["n_dims"], color="gray", lw=0.6, ls=":", alpha=0.6)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.supxlabel("in-context examples", fontsize=9, y=0.06)
    fig.supylabel("squared error / zero_error", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
