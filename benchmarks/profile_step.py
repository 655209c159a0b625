"""Where a training step's time goes: torch.profiler self-CPU time by kind of operation.

    PYTHONPATH=. python benchmarks/profile_step.py garg_standard seed000_looped [--threads 1] [--steps 2]

For each configuration (suite name or YAML, at full shapes as in `iclab bench`) it prints the share of
the step spent in matmuls, attention, GELU, layer norm, the optimizer, copies and other element-wise
work, and the efficiency of the matmuls and of attention against the fp32 matmul peak measured in the
same process (FLOPs from iclab/models/flops.py). Times are the profiler's per-operator times, which on a
busy machine include waiting for a core: read the shares, and the efficiencies only on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import json

import torch
from torch.profiler import ProfilerActivity, profile

from iclab.bench import resolve_cases
from iclab.experiments.throughput import peak_flops
from iclab.models.flops import seq_lens, train_step_flops
from iclab.training.trainer import Trainer

KINDS = [  # first match wins
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("attention", ("flash_attention",)),
    ("gelu", ("gelu",)),
    ("layer_norm", ("layer_norm",)),
    ("optimizer", ("adam", "lerp", "addcdiv", "_foreach", "optimizer")),
    ("copy/cat", ("copy_", "aten::cat", "clone", "contiguous")),
    (
        "elementwise",
        (
            "aten::add",
            "aten::mul",
            "aten::sum",
            "aten::sub",
            "aten::div",
            "pow",
            "fill_",
            "zero_",
            "norm",
            "where",
            "isfinite",
            "randn",
            "normal",
            "aten::mean",
        ),
    ),
]


def attention_flops(cfg) -> int:
    m, b, T = cfg.model, cfg.model.loops, cfg.model.window
    return sum(
        (3 if t >= b - T else 1) * m.n_layer * 4 * cfg.training.batch_size * L * L * m.n_embd
        for t, L in enumerate(seq_lens(m, 2 * cfg.task.n_points, b))
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, cfg, _ in resolve_cases(args.names, [], [], "cpu"):
        t = Trainer(cfg, "/tmp/iclab-profile")
        for s in range(2):
            t.train_step(s)
        n = args.steps
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for s in range(n):
                t.train_step(s)
        spent = collections.Counter()
        for e in p.key_averages():
            kind = next((k for k, keys in KINDS if any(x.lower() in e.key.lower() for x in keys)), "other")
            spent[kind] += e.self_cpu_time_total / 1e6 / n
        total = sum(spent.values())
        peak = peak_flops(torch.device("cpu"), torch.float32)[0]
        flops = train_step_flops(
            cfg.model, n_dims=cfg.task.n_dims, n_points=cfg.task.n_points, batch=cfg.training.batch_size
        )
        att = attention_flops(cfg)
        print(
            name,
            json.dumps(
                {
                    "step_s_profiled": round(total, 3),
                    "mfu_profiled": round(flops / total / peak, 3),
                    "matmul_efficiency": round((flops - att) / spent["matmul"] / peak, 3),
                    "attention_efficiency": round(att / spent["attention"] / peak, 3) if spent["attention"] else None,
                    "share": {k: round(v / total, 3) for k, v in spent.most_common()},
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
