"""Layer surgery: evaluate a trained model with its blocks rearranged (seed 001: "duplicating or
shuffling the layers of a trained standard model does not help").

    iclab surgery RUN --op duplicate:1 --op swap:1,2 --op shuffle:0 [--n-prompts N] [--seed S] [--out-tag TAG]

Each --op is one variant; the untouched model ("original") is always evaluated first. With n blocks
(model.n_layer; in a looped model, the blocks of one loop iteration), an op gives the block order every
loop iteration applies (`Trunk.rearranged`), or a loop count:

    identity          0..n-1 (the original; implied, listing it adds nothing)
    duplicate:i       layer i applied twice in place: 0..i, i, i+1..n-1
    repeat:i-j:xN     the range i..j (inclusive) applied N times in place: 0..i-1, (i..j) x N, j+1..n-1
    drop:i            every block but i (at least one must stay)
    swap:i,j          blocks i and j exchanged
    reverse           n-1..0
    shuffle[:S]       numpy.random.default_rng(S).permutation(n) (S defaults to 0)
    loops:N           N loop iterations of the unchanged blocks (any model; for a standard model the whole
                      trunk runs N times, with its input injection and position embedding per its config)

A rearranged looped model keeps its trained number of iterations, each applying the new order.
Bad ops raise `SurgeryError` (a ValueError) with one line naming the op and the valid range or format.

What is measured, on the same data for every variant:
  regression   the normalized squared error at every prompt position (iclab.evaluation.regression.evaluate,
               eval.seed / --seed, eval.n_prompts / --n-prompts prompts of eval.n_points points), and the
               least-squares baseline once, on the same prompts, for reference;
  sequence     loss and token accuracy (teacher forcing, `SequenceWorkload.metrics_of`) on fixed batches:
               language_model: n evenly spaced validation windows of the trained length (n = --n-prompts or
               eval.n_prompts; the seed plays no part); sorting: the workload's evaluation sequences at the
               trained length (as in its eval.json); modular_arithmetic: the held-out equations; others:
               `workload.sample` at the trained length from a generator seeded with the seed.

RUN/surgery.json (surgery_TAG.json with --out-tag):
    {"task", "family", "n_blocks", "trained_loops", "n_prompts", "seed", "metric", "summary_position",
     "variants": {name: {"order": [block indices per iteration], "loops": b, "metric": str,
                         regression: "mean": [per position], "ci95": [per position], "at_k": float
                         sequence:   "value": token accuracy, "loss": float, "metrics": {...}}},
     "reference": {"least_squares": {"mean", "ci95", "at_k"}}          (regression only)
and RUN/surgery.png: error vs in-context examples, one line per variant, the original bold (regression);
bars of token accuracy and loss per variant (sequence). The summary position k is 2d (or the last).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from iclab.errors import IclabError
from iclab.files import check_replace, write_json


class SurgeryError(IclabError, ValueError):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    order: list[int] | None  # None: the blocks in their trained order (no rearrangement)
    loops: int

    def resolved_order(self, n_blocks: int) -> list[int]:
        return list(range(n_blocks)) if self.order is None else list(self.order)


FORMATS = "identity, duplicate:i, repeat:i-j:xN, drop:i, swap:i,j, reverse, shuffle, shuffle:SEED, loops:N"


def parse_op(op: str, n_blocks: int, trained_loops: int = 1) -> Variant:
    """One op -> the variant it names (see the module docstring)."""
    op = op.strip()
    last = n_blocks - 1
    rng = f"0..{last} (the model has {n_blocks} block{'s' if n_blocks != 1 else ''})"

    def bad(why: str) -> SurgeryError:
        return SurgeryError(f"op {op!r}: {why}")

    def layer(s: str) -> int:
        if not s.isdigit():
            raise bad(f"{s!r} is not a layer index; expected an integer in {rng}")
        i = int(s)
        if i > last:
            raise bad(f"layer {i} out of range {rng}")
        return i

    name, _, arg = op.partition(":")
    base = list(range(n_blocks))
    if name == "identity" and not arg:
        return Variant("original", None, trained_loops)
    if name == "duplicate":
        i = layer(arg)
        return Variant(op, base[: i + 1] + [i] + base[i + 1 :], trained_loops)
    if name == "repeat":
        m = re.fullmatch(r"(\d+)-(\d+):x(\d+)", arg)
        if not m:
            raise bad("expected repeat:i-j:xN (blocks i..j inclusive, N >= 1 times), e.g. repeat:1-2:x3")
        i, j, n = layer(m[1]), layer(m[2]), int(m[3])
        if i > j:
            raise bad(f"range {i}-{j} is empty; expected i <= j within {rng}")
        if n < 1:
            raise bad(f"x{n}: the repeat count must be >= 1")
        return Variant(op, base[:i] + base[i : j + 1] * n + base[j + 1 :], trained_loops)
    if name == "drop":
        i = layer(arg)
        if n_blocks == 1:
            raise bad("dropping the only block leaves none (the model has 1 block)")
        return Variant(op, [k for k in base if k != i], trained_loops)
    if name == "swap":
        parts = arg.split(",")
        if len(parts) != 2:
            raise bad(f"expected swap:i,j with i, j in {rng}")
        i, j = layer(parts[0]), layer(parts[1])
        order = base.copy()
        order[i], order[j] = order[j], order[i]
        return Variant(op, order, trained_loops)
    if name == "reverse" and not arg:
        return Variant(op, base[::-1], trained_loops)
    if name == "shuffle":
        if arg and not arg.isdigit():
            raise bad(f"{arg!r} is not a seed; expected shuffle or shuffle:SEED with SEED a non-negative integer")
        seed = int(arg or 0)
        return Variant(
            f"shuffle:{seed}", [int(k) for k in np.random.default_rng(seed).permutation(n_blocks)], trained_loops
        )
    if name == "loops":
        if not arg.isdigit() or int(arg) < 1:
            raise bad("expected loops:N with N >= 1 loop iterations")
        return Variant(f"loops:{int(arg)}", None, int(arg))
    raise bad(f"unknown op; expected one of {FORMATS}")


def parse_ops(ops: list[str], n_blocks: int, trained_loops: int = 1) -> list[Variant]:
    """The original first, then each op's variant once (in the given order; repeats ignored)."""
    out = {"original": Variant("original", None, trained_loops)}
    for op in ops:
        v = parse_op(op, n_blocks, trained_loops)
        out.setdefault(v.name, v)
    return list(out.values())


def _rearranged(model, v: Variant):
    return contextlib.nullcontext() if v.order is None else model.rearranged(v.order)


# --- regression ----------------------------------------------------------------------------------------
def regression_surgery(
    model, workload, variants: list[Variant], *, n_prompts: int, n_points: int, seed: int, batch_size: int, device
) -> dict:
    from iclab.evaluation.regression import evaluate

    task = workload.task.without_pool()  # fresh functions: the test distribution, as `iclab eval`
    k = min(2 * task.n_dims, n_points - 1)
    common = dict(n_prompts=n_prompts, n_points=n_points, seed=seed, batch_size=batch_size, device=device)
    out, ref = {}, {}
    for v in variants:
        baselines = ["least_squares"] if v.name == "original" else []
        with _rearranged(model, v):
            ev = evaluate(model, task, loops=v.loops, baselines=baselines, **common)
        m = ev["model"]
        out[v.name] = {
            "order": v.resolved_order(len(model.blocks)),
            "loops": v.loops,
            "metric": "normalized_squared_error",
            "mean": m["mean"],
            "ci95": m["ci95"],
            "at_k": m["mean"][k],
        }
        for name, c in ev["baselines"].items():
            ref[name] = {**c, "at_k": c["mean"][k]}
    return {
        "task": ev["task"],
        "n_dims": task.n_dims,
        "n_points": n_points,
        "metric": "normalized_squared_error",
        "summary_position": k,
        "variants": out,
        "reference": ref,
    }


# --- token sequences -----------------------------------------------------------------------------------
def eval_batches(workload, n: int, seed: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed (inputs, targets) batches every variant of a sequence run is measured on."""
    try:  # the workload's own: validation windows (LM), its evaluation sequences (sorting), held-out pairs
        return workload.fixed_batches(n, seed, device)
    except NotImplementedError:
        raise SurgeryError(
            f"task {workload.cfg.task.name!r} has no sampler; surgery supports regression, "
            f"language_model, sorting, modular_arithmetic and tasks with `sample`"
        ) from None


def sequence_surgery(model, workload, variants: list[Variant], *, n_prompts: int, seed: int, device) -> dict:
    batches = eval_batches(workload, n_prompts, seed, device)
    out = {}
    for v in variants:
        with _rearranged(model, v):
            m = workload.metrics_of(model, batches, loops=v.loops)
        out[v.name] = {
            "order": v.resolved_order(len(model.blocks)),
            "loops": v.loops,
            "metric": "token_accuracy",
            "value": m["token_accuracy"],
            "loss": m["loss"],
            "metrics": m,
        }
    return {
        "task": workload.cfg.task.name,
        "seq_len": workload.seq_len,
        "metric": "token_accuracy",
        "n_sequences": sum(len(x) for x, _ in batches),
        "variants": out,
    }


# --- figures -------------------------------------------------------------------------------------------
def plot_surgery(res: dict, path: Path, title: str | None = None) -> Path:
    from iclab.evaluation.plots import baseline_style
    from iclab.plotting import plt

    variants = res["variants"]
    if res["family"] == "regression":
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = list(range(res["n_points"]))
        colors = list(plt.get_cmap("tab10").colors[1:])  # blue is the original's
        for i, (name, v) in enumerate(variants.items()):
            orig = name == "original"
            style = (
                dict(lw=3, color="tab:blue", zorder=3)
                if orig
                else dict(lw=1.4, color=colors[(i - 1) % len(colors)], ls=("-", "--", "-.")[(i - 1) // len(colors) % 3])
            )
            ax.plot(xs, v["mean"], label=name, **style)
        for name, c in res.get("reference", {}).items():
            lab, color, ls = baseline_style(name)
            ax.plot(xs, c["mean"], label=lab, color=color, ls=ls, lw=1.5)
        ax.axvline(res["n_dims"], color="gray", lw=0.8, ls=":", alpha=0.6)
        ax.set_yscale("log")  # the floor: the variants' best, not least squares' ~1e-15 beyond d examples
        ax.set_ylim(bottom=max(0.3 * min(min(v["mean"]) for v in variants.values()), 1e-6))
        ax.set_xlabel("in-context examples")
        ax.set_ylabel("normalized squared error (1 = predicting 0)")
        ax.legend(fontsize=7, ncol=2)
    else:
        names = list(variants)
        fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.0 * len(names) + 3), 4))
        for ax, key, label in ((axes[0], "value", "token accuracy"), (axes[1], "loss", "loss (nats/token)")):
            ax.bar(
                range(len(names)),
                [variants[n][key] for n in names],
                color=["tab:blue" if n == "original" else "tab:gray" for n in names],
            )
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel(label)
    fig.suptitle(title or f"layer surgery: {res['task']}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- the run-level entry point ---------------------------------------------------------------------------
def run_surgery(
    run_dir: Path,
    ops: list[str],
    n_prompts: int | None = None,
    seed: int | None = None,
    tag: str | None = None,
    force: bool = False,
) -> dict:
    """Evaluate every variant of a saved run on the same data; write surgery[_TAG].json and .png into it.
    Returns the record, with "path" and "figure" added."""
    from iclab.runs import load_run_config, open_run
    from iclab.workloads import make_workload

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if n_prompts is not None and n_prompts < 1:
        raise SurgeryError(f"--n-prompts {n_prompts}: must be >= 1")
    if seed is not None and not 0 <= seed < 2**63:
        raise SurgeryError(f"--seed {seed}: must be in 0..2^63-1")
    variants = parse_ops(ops, cfg.model.n_layer, cfg.eval.loops or cfg.model.loops)  # fail before loading
    suffix = f"_{tag}" if tag else ""
    check_replace(  # another set of ops into the same file: refused (an earlier result is never lost in silence)
        run_dir / f"surgery{suffix}.json", {"variants": [v.name for v in variants]}, ("variants",), force, "--out-tag"
    )
    workload = make_workload(cfg, run_dir)
    cfg, device, model, n_points = open_run(run_dir, cfg, workload=workload)
    model.eval()
    n_prompts = n_prompts or cfg.eval.n_prompts
    seed = cfg.eval.seed if seed is None else seed
    if workload.family == "regression":
        res = regression_surgery(
            model,
            workload,
            variants,
            n_prompts=n_prompts,
            n_points=n_points,
            seed=seed,
            batch_size=cfg.eval.batch_size,
            device=device,
        )
    else:
        res = sequence_surgery(model, workload, variants, n_prompts=n_prompts, seed=seed, device=device)
    res = {
        "family": workload.family,
        "n_blocks": cfg.model.n_layer,
        "trained_loops": cfg.model.loops,
        "n_prompts": n_prompts,
        "seed": seed,
        **res,
    }
    write_json(run_dir / f"surgery{suffix}.json", res)
    fig = plot_surgery(res, run_dir / f"surgery{suffix}.png", title=f"layer surgery: {run_dir.name}")
    return {**res, "path": str(run_dir / f"surgery{suffix}.json"), "figure": str(fig)}


def summary_rows(res: dict) -> list[tuple[str, str, float]]:
    """(variant, order/loops, metric value) per variant: the error at the summary position (regression) or
    token accuracy (sequence); regression adds the reference baselines with an empty order."""
    rows = []
    for name, v in res["variants"].items():
        order = " ".join(map(str, v["order"])) + (f" x{v['loops']} loops" if v["loops"] != 1 else "")
        rows.append((name, order, v["at_k"] if res["family"] == "regression" else v["value"]))
    for name, c in res.get("reference", {}).items():
        rows.append((name, "", c["at_k"]))
    return rows
