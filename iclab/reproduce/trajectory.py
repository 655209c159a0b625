"""The error at k = 2d over training, from the checkpoints a run kept (`logging.milestone_every`)."""

from __future__ import annotations

import json

import torch

from iclab.files import write_json
from iclab.reproduce.base import Run

NAME = "error_vs_step.json"


def error_over_training(run: Run, n_prompts: int = 500) -> dict:
    """{steps, error, k}: the model's error at k = 2d (fresh functions, the evaluation seed) at every kept
    checkpoint and at the end; computed once, then read from the run's error_vs_step.json."""
    path = run.dir / NAME
    if path.is_file():
        return json.loads(path.read_text())
    from iclab.evaluation.regression import evaluate
    from iclab.training.checkpoint import identity, list_checkpoints, load_checkpoint
    from iclab.workloads import make_workload

    cfg = run.cfg
    workload = make_workload(cfg, run.dir)
    model = workload.build_model()
    ident = identity(cfg, workload)
    task = workload.task.without_pool()
    n_points = cfg.eval.n_points or cfg.task.n_points
    k = min(2 * cfg.task.n_dims, n_points - 1)
    steps, errors = [], []
    for step, ckpt in list_checkpoints(run.dir / "checkpoints"):
        model.load_state_dict(load_checkpoint(ckpt, ident)["model"])
        with torch.no_grad():
            ev = evaluate(
                model, task, n_prompts=n_prompts, n_points=n_points, seed=cfg.eval.seed, batch_size=cfg.eval.batch_size
            )
        steps.append(step)
        errors.append(ev["model"]["mean"][k])
    out = {"k": k, "steps": steps, "error": errors, "n_prompts": n_prompts}
    write_json(path, out)
    return out


def steps_to(curve: dict, target: float) -> float:
    """The first kept checkpoint's step at which the error is at or below `target` (inf if never): read from
    the evaluated checkpoints, not interpolated."""
    for s, e in zip(curve["steps"], curve["error"]):
        if e <= target:
            return float(s)
    return float("inf")
