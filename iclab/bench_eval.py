"""`iclab bench`'s timing of an evaluation: sampling the prompts, the model's predictions and each classical
baseline of a regression config, one by one on the same prompts (iclab/bench.py runs it after the steps)."""

from __future__ import annotations

import time

import torch

from iclab.config import Config, ConfigError
from iclab.experiments.throughput import MemoryMeter, device_name, measure_peak, sync
from iclab.models.flops import predict_flops


class BenchError(ConfigError):
    pass


def bench_eval(
    cfg: Config,
    n_prompts: int,
    n_points: int,
    mem: MemoryMeter,
    threads: int,
    peak_n: int | None = None,
    peak: float | None = None,
    whole: bool = True,
    log=print,
) -> dict:
    """Time the evaluation of n_prompts prompts: sampling, the model's predictions and each of the config's
    baselines, one by one on the same prompts in `evaluate`'s batches; with `whole`, also `evaluate`
    itself (`eval_s`; otherwise eval_s is the sum of the parts).

    Regression only, by design: it times the parts of the in-context regression evaluation (the suite's
    EVAL_CONFIG), the model against the classical baselines on the same prompts. The model and the
    function class come from the config's workload; the token workloads have no baselines to time, and
    their evaluation is a forward pass per batch, which the training cases already time.

    Length: each timed part of the evaluation is a few lines in the order `evaluate` runs them, followed by
    the record; they share the prompts and the timer.
    """
    from iclab.evaluation.baselines import resolve, resolve_baselines
    from iclab.evaluation.regression import eval_generator, evaluate, model_predictions
    from iclab.training.device import resolve_device
    from iclab.workloads import make_workload
    from iclab.workloads.regression.workload import RegressionWorkload

    workload = make_workload(cfg)
    if not isinstance(workload, RegressionWorkload):
        raise BenchError(f"bench eval times an in-context regression evaluation; task {cfg.task.name} is not one")
    device = resolve_device(cfg.training.device)
    model = workload.build_model().to(device).eval()
    task = workload.task
    bs = cfg.eval.batch_size
    entries = resolve_baselines(task, cfg.eval.baselines)
    baselines = resolve(entries)
    peak = peak or measure_peak(device, torch.float32, peak_n)
    evaluate(
        model, task, n_prompts=min(n_prompts, 20), n_points=n_points, baselines=entries, batch_size=bs, device=device
    )  # warm-up
    mem.start()
    secs = {}

    def timed(key, fn):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        secs[key] = time.perf_counter() - t0
        return out

    gen = eval_generator(cfg.eval.seed, device)
    batches = timed(
        "sample",
        lambda: [
            task.sample(min(bs, n_prompts - s), n_points, cfg.task.n_dims, gen, device) for s in range(0, n_prompts, bs)
        ],
    )
    with torch.no_grad():
        timed("model", lambda: [model_predictions(model, xs, ys) for xs, ys in batches])
        for b in baselines:
            timed(b.label, lambda b=b: [b(xs, ys, task) for xs, ys in batches])
    total = sum(secs.values())
    if whole:
        timed(
            "evaluate",
            lambda: evaluate(
                model, task, n_prompts=n_prompts, n_points=n_points, baselines=entries, batch_size=bs, device=device
            ),
        )
        total = secs["evaluate"]
    peak_mem = mem.peak()
    flops = predict_flops(cfg.model, n_dims=cfg.task.n_dims, n_points=n_points, batch=n_prompts)
    base = {b.label: secs[b.label] for b in baselines}
    log(f"  eval: {total:.2f} s; model {secs['model']:.2f} s, " + ", ".join(f"{k} {v:.3f} s" for k, v in base.items()))
    return {
        "name": f"eval[{n_prompts}x{n_points}]",
        "kind": "eval",
        "device": device_name(device),
        "dtype": "float32",
        "threads": threads,
        "n_prompts": n_prompts,
        "n_points": n_points,
        "n_dims": cfg.task.n_dims,
        "n_layer": cfg.model.n_layer,
        "n_embd": cfg.model.n_embd,
        "loops": cfg.model.loops,
        "steps_per_s": 1 / total,
        "tokens_per_s": n_prompts * 2 * n_points / total,
        "flops_per_step": flops,
        "achieved_flops": flops / secs["model"],
        "peak_flops": peak,
        "mfu": flops / secs["model"] / peak,
        "peak_mem_bytes": peak_mem,
        "base_mem_bytes": mem.base,
        "mem_kind": mem.kind,
        "eval_s": total,
        "eval_s_kind": "evaluate()" if whole else "sum of parts",
        "sample_s": secs["sample"],
        "model_s": secs["model"],
        "baselines_s": base,
        "baselines_total_s": sum(base.values()),
    }


# --- the suite -------------------------------------------------------------------------------------------------
