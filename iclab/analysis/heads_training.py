"""The phase change over training (`iclab heads RUN --over-training`), from the checkpoints a run kept.

At every kept checkpoint (keep more with `logging.milestone_every`), on the same data as `iclab heads`:
  language model   the loss on the evaluation windows, the in-context score (heads.py) and every head's
                   induction score on repeated random blocks;
  regression       the normalized squared error at k = 2d and every head's x_to_x score;
  other tokens     the loss and every head's induction score;
  token runs also  the loss on the second copy of a repeated random block minus that on the first (what an
                   induction head buys).
With the logged training loss, against the step, on one figure. `marks`: the first kept step at which the best
head's score reaches half of its largest value, and (language model) the first at which the in-context score
reaches half of its lowest: if induction heads and in-context learning form together, the two coincide.

Writes RUN/heads_over_training.json and heads_over_training.png.
"""

from __future__ import annotations

from pathlib import Path

import torch

from iclab.analysis.heads import Evaluator, HeadsError, induction_summary, score_heads, score_key, uniform_reference
from iclab.files import read_jsonl, write_json


def first_reaching(steps: list[int], values: list[float], frac: float = 0.5, lower: bool = False) -> int | None:
    """The first step whose value reaches `frac` of the extreme (the max; the min when lower) of the series,
    measured from the first value; None when the series never rises (drops) above (below) its first value."""
    if not values:
        return None
    v0 = values[0]
    ext = min(values) if lower else max(values)
    if ext == v0:
        return None
    thr = v0 + frac * (ext - v0)
    for s, v in zip(steps, values):
        if (v <= thr) if lower else (v >= thr):
            return s
    return None


@torch.no_grad()
def over_training(run_dir: Path, n_sequences: int | None = None, seed: int = 0, write: bool = True) -> dict:
    """The phase change of a run: the head scores and the in-context score at every kept checkpoint.

    Length: one pass over the kept checkpoints computing every score of the phase-change figure on the same
    batches; most lines are the record it writes.
    """
    from iclab.analysis.heads_run import _kind, analysis_data
    from iclab.runs import load_run_config
    from iclab.training.checkpoint import identity, list_checkpoints, load_checkpoint
    from iclab.training.device import run_device
    from iclab.training.optim import eval_weights_from_state
    from iclab.workloads import make_workload

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if len(ckpts) < 2:
        raise HeadsError(
            f"{run_dir} kept {len(ckpts)} checkpoint(s); --over-training needs several: train with "
            f"logging.milestone_every=N (checkpoints at multiples of N are kept) and logging.ckpt_every <= N"
        )
    workload = make_workload(cfg, run_dir)
    device = run_device(cfg.training.device)
    model = workload.build_model().to(device)
    ident = identity(cfg, workload)
    kind = _kind(workload)
    n = n_sequences or (500 if kind == "regression" else 128)
    data, batches, k = analysis_data(workload, cfg, n, seed, device)
    key = score_key(workload.family)
    from iclab.analysis.heads_controls import repeated_in_context

    steps, eval_loss, icl, best, per_head, gain = [], [], [], [], {}, []
    for step, path in ckpts:
        state = load_checkpoint(path, ident)
        model.load_state_dict(state["model"])
        eval_weights_from_state(model, cfg.training, state["optim"])
        model.eval()
        vals = Evaluator(model, workload, batches, kind, k).values()
        recs = score_heads(model, workload.family, data, copying=False)
        steps.append(step)
        if kind == "regression":
            eval_loss.append(None)  # the error is the middle panel
            icl.append(float(vals["error"].mean()))
        else:
            eval_loss.append(float(vals["loss"].mean()))
            icl.append(float(vals["in_context"].mean()) if kind == "language_model" else float(vals["loss"].mean()))
        if kind != "regression":
            rep = repeated_in_context(model, data["repeated"])
            gain.append(rep["loss_second_copy"] - rep["loss_first_copy"])
        for r in recs:
            lab = r["label"] if r["iteration"] == 0 else f"{r['iteration']}:{r['label']}"
            per_head.setdefault(lab, []).append(r[key])
        best.append(max(r[key] for r in recs))
    logged = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r and "step" in r]
    labels = {
        "regression": (f"error at k={k} (eval prompts)", f"normalized squared error at k={k}"),
        "language_model": ("loss on the evaluation windows", "in-context score (late - early loss, nats)"),
        "sequence": ("loss on the evaluation sequences", "loss on the evaluation sequences"),
    }[kind]
    rec = {
        "task": cfg.task.name,
        "kind": kind,
        "score_key": key,
        "steps": steps,
        "eval_loss": eval_loss,
        "eval_label": labels[0],
        "in_context": icl,
        "in_context_label": labels[1],
        "best": best,
        "repeat_gain": gain,  # token runs: loss on the second copy of a repeated block minus on the first
        "per_head": per_head,
        "train_steps": [r["step"] for r in logged],
        "train_loss": [r["loss"] for r in logged],
        "n_sequences": n,
        "seed": seed,
    }
    if kind == "regression":
        rec["uniform"] = uniform_reference(2 * data["patterns"][0].shape[1], True)[key]
    else:
        T = data["repeated"].shape[1]
        P = torch.ones(T, T).tril()
        rec["uniform"] = float(induction_summary((P / P.sum(-1, keepdim=True))[None, None])[key][0])
    rec["score_half_step"] = first_reaching(steps, best)
    rec["in_context_half_step"] = first_reaching(steps, icl, lower=True) if kind == "language_model" else None
    rec["marks"] = [s for s in (rec["score_half_step"], rec["in_context_half_step"]) if s is not None]
    if write:
        from iclab.analysis.heads_plots import plot_over_training

        write_json(run_dir / "heads_over_training.json", rec)
        fig = plot_over_training(rec, run_dir / "heads_over_training.png", title=f"phase change: {run_dir.name}")
        rec = {**rec, "path": str(run_dir / "heads_over_training.json"), "figure": str(fig)}
    return rec
