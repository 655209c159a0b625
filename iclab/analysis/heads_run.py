"""`iclab heads RUN`: every head's scores and ablation on a saved run, its controls, heads.json and heads.png.
The definitions are in iclab/analysis/heads.py; the phase change over training in heads_training.py.

RUN/heads.json:
    {"family", "task", "n_layer", "n_head", "loops", "n_sequences", "seed", "score_key",
     "headline": {"metric", "description", "values": {metric: {"mean", "ci95"}}},   the unablated model
     "repeated": {"in_context", "loss_first_copy", "loss_second_copy"}   token runs, on the repeated blocks
     "uniform": {score: value}                 the pattern scores of evenly spread attention (no preference)
     "heads": [{"iteration", "layer", "head", "label", "reads", scores...}],
     "ablation": {"L.H": {"zero": {metric: {"value", "delta", "ci95"}}, "mean": {...}}},
     "top_set": {"heads": [...], "zero": ..., "mean": ...}, "random_sets": [{"heads", "zero", "mean"}, ...],
     "ablate_set": {"heads", "zero", "mean"} (with --ablate),
     "controls": {"random_init": {...}, "planted": {...} (token runs)}}
"""

from __future__ import annotations

from pathlib import Path

import torch

from iclab.analysis.heads import (
    Evaluator,
    HeadsError,
    ablate,
    ablation_sets,
    as_heads,
    best,
    head_label,
    headline_of,
    parse_heads,
    repeated_tokens,
    score_heads,
    score_key,
    summarize_values,
    uniform_reference,
)
from iclab.files import write_json


def _kind(workload) -> str:
    if workload.family == "regression":
        return "regression"
    return "language_model" if workload.cfg.task.name == "language_model" else "sequence"


def analysis_data(workload, cfg, n: int, seed: int, device) -> tuple[dict, list, int | None]:
    """(pattern / induction data, evaluation batches for ablation, k) of a run: regression prompts from the
    task (fresh functions, generator `seed`); token runs: the workload's fixed evaluation batches and repeated
    random blocks over its vocabulary."""
    gen = torch.Generator(device=device).manual_seed(seed)
    if workload.family == "regression":
        task, d = workload.task.without_pool(), cfg.task.n_dims
        n_points = cfg.eval.n_points or cfg.task.n_points
        k = min(2 * d, n_points - 1)
        norm = task.zero_error(d)
        bs = cfg.eval.batch_size
        batches = [(*task.sample(min(bs, n - i), n_points, d, gen, device), norm) for i in range(0, n, bs)]
        xs, ys = task.sample(min(n, 64), n_points, d, gen, device)
        return {"patterns": (xs, ys)}, batches, k
    try:
        batches = workload.fixed_batches(n, seed, device)
    except NotImplementedError:
        raise HeadsError(f"task {cfg.task.name!r} has no evaluation batches for iclab heads") from None
    x_all = torch.cat([x for x, _ in batches])
    x0 = x_all[:64]
    weights = None
    if _kind(workload) == "language_model":
        weights = torch.bincount(x_all.flatten().cpu(), minlength=workload.vocab_size).float()
    rep = repeated_tokens(min(n, 64), workload.vocab_size, x0.shape[1], gen, device, weights)
    return {"patterns": x0, "repeated": rep}, batches, None


def ablation_study(ev: Evaluator, base, means, n_layer: int, n_head: int, sets: dict) -> dict:
    """Every head alone, then each named set, under zero and mean ablation."""
    out = {"ablation": {}}
    for L in range(n_layer):
        for H in range(n_head):
            out["ablation"][head_label(L, H)] = {m: ablate(ev, base, means, [(L, H)], m) for m in ("zero", "mean")}
    for name, heads in sets.items():
        res = [{"heads": hs, **{m: ablate(ev, base, means, as_heads(hs), m) for m in ("zero", "mean")}} for hs in heads]
        out[name] = res if name == "random_sets" else res[0]
    return out


def run_heads(
    run_dir: Path,
    *,
    ablate_spec: str | None = None,
    n_sequences: int | None = None,
    seed: int = 0,
    top: int = 2,
    n_random: int = 5,
    controls: bool = True,
    tag: str | None = None,
    write: bool = True,
) -> dict:
    """Score, ablate and control every head of a saved run; write heads[_TAG].json and .png into it.

    Length: scores, ablations, controls and the record of one run on shared batches, in the order heads.json
    lists them.
    """
    from iclab.analysis.heads_controls import planted_control, random_init_control
    from iclab.runs import load_run_config, open_run
    from iclab.workloads import make_workload

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    m = cfg.model
    if m.drop_tokens:
        raise HeadsError("iclab heads needs a model without token dropping (model.drop_tokens=0)")
    if top < 1 or top >= m.n_layer * m.n_head:
        raise HeadsError(f"--top {top}: must be in 1..{m.n_layer * m.n_head - 1} (the model has that many heads + 1)")
    extra = parse_heads(ablate_spec, m.n_layer, m.n_head) if ablate_spec else None
    workload = make_workload(cfg, run_dir)
    cfg, device, model, _ = open_run(run_dir, cfg, workload=workload)
    model.eval()
    kind = _kind(workload)
    n = n_sequences or (cfg.eval.n_prompts if kind == "regression" else 128)
    data, batches, k = analysis_data(workload, cfg, n, seed, device)
    records = score_heads(model, workload.family, data)
    key = score_key(workload.family)
    ev = Evaluator(model, workload, batches, kind, k)
    base, means = ev.means()
    per_head = {}
    for r in records:  # a looped model: the best iteration of each head ranks it
        per_head[r["label"]] = max(per_head.get(r["label"], -1.0), r[key])
    top_set, random_sets = ablation_sets(per_head, top, n_random, seed)
    sets = {"top_set": [top_set], "random_sets": random_sets}
    if extra:
        sets["ablate_set"] = [[head_label(L, H) for L, H in extra]]
    metric, description = headline_of(kind, k)
    n_tokens = 2 * data["patterns"][0].shape[1] if kind == "regression" else data["patterns"].shape[1]
    res = {
        "family": workload.family,
        "kind": kind,
        "task": cfg.task.name,
        "n_layer": m.n_layer,
        "n_head": m.n_head,
        "loops": m.loops,
        "attention": m.attention.name,
        "n_sequences": n,
        "seed": seed,
        "score_key": key,
        "uniform": uniform_reference(n_tokens, kind == "regression"),
        "headline": {"metric": metric, "description": description, "values": summarize_values(base)},
        "heads": records,
        **ablation_study(ev, base, means, m.n_layer, m.n_head, sets),
    }
    if kind != "regression":
        from iclab.analysis.heads_controls import repeated_in_context

        res["repeated"] = repeated_in_context(model, data["repeated"])
    if controls:
        res["controls"] = {"random_init": random_init_control(workload, workload.family, data, seed, device)}
        if workload.family != "regression":
            res["controls"]["planted"] = planted_control(seed=seed)
    if write:
        from iclab.analysis.heads_plots import plot_heads

        suffix = f"_{tag}" if tag else ""
        write_json(run_dir / f"heads{suffix}.json", res)
        plot_heads(res, model, data, run_dir / f"heads{suffix}.png", title=f"heads: {run_dir.name}")
        res = {**res, "path": str(run_dir / f"heads{suffix}.json"), "figure": str(run_dir / f"heads{suffix}.png")}
    return res


def top_rows(res: dict, n: int = 5) -> list[dict]:
    """The n head records (best iteration each) of highest score, with their ablation effects."""
    key, metric = res["score_key"], res["headline"]["metric"]
    seen, rows = set(), []
    for r in sorted(res["heads"], key=lambda r: -r[key]):
        if r["label"] in seen:
            continue
        seen.add(r["label"])
        ab = res["ablation"][r["label"]]
        rows.append({**r, "zero": ab["zero"][metric], "mean": ab["mean"][metric]})
        if len(rows) == n:
            break
    return rows


def set_effect(res: dict, name: str, mode: str = "mean") -> float | list[float]:
    """The headline change of ablating a named set (random_sets: one value per set)."""
    metric = res["headline"]["metric"]
    if name == "random_sets":
        return [s[mode][metric]["delta"] for s in res["random_sets"]]
    return res[name][mode][metric]["delta"]


__all__ = ["run_heads", "top_rows", "set_effect", "best"]
