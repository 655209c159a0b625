"""`iclab bench`: training-step and evaluation throughput of named configurations.

For each configuration (a YAML config at its full shapes: any curriculum is dropped, so dims, points
and loops are at their maxima) the benchmark builds the real `Trainer`, runs warm-up steps (this is
where torch.compile compiles; reported as `warmup_s`), then times `Trainer.train_step` in rounds that
go round-robin over the configurations (and --ablate variants), so that on a shared, noisy machine
slow spells hit every configuration alike. Before each timing the device's matmul peak is measured (a
square matmul, 2048 on the CPU, 8192 on CUDA, in the training dtype: fp32 on the CPU, bf16 under CUDA
autocast); a run's `peak_flops` is the median of all its peak measurements of that dtype. Reported
rates are medians over rounds.

    flops_per_step   matmul FLOPs of one step from the config (iclab/models/flops.py documents the formula)
    achieved_flops   flops_per_step * steps_per_s
    mfu              achieved_flops / peak_flops (the measured peak, not the data-sheet one)
    mfu_cpu_time     (CPU only) the same ratio with both rates taken per second of process CPU time
                     instead of wall time: time the process waits for a core shared with other jobs
                     does not count, which makes it the steadier number on a busy machine
    steps_per_cpu_s  (CPU only) steps per second of process CPU time (summed over threads): the steadier
                     basis for speed ratios on a busy machine
    tokens_per_s     tokens per second: regression, prompt tokens (2 per point), batch_size * 2 * n_points *
                     steps_per_s; token workloads, batch_size * seq_len * steps_per_s
    peak_mem_bytes   CUDA: torch.cuda.max_memory_allocated during the timed steps. CPU: the process's
                     resident-set high-water mark (VmHWM of /proc/self/status, reset before each timing
                     by malloc_trim and writing 5 to /proc/self/clear_refs); it includes the Python
                     process, torch and the other configurations' weights, whose sum at the reset is
                     base_mem_bytes. Without /proc: resource.getrusage's ru_maxrss (a process-lifetime
                     maximum; mem_kind says which).

Evaluation records (kind "eval"): `eval_s` is the time of `evaluate` on 1,000 prompts of 41 points with
the config's baselines (--quick: the sum of the parts), `model_s`, `sample_s` and `baselines_s` the
parts timed one by one on the same prompts; flops_per_step, achieved_flops and mfu are those of the
model's predictions (flops / model_s).

Synchronization: the timed loop reads nothing from the device; after the last step the loss is read
once (and torch.cuda.synchronize() is called on CUDA before and after), so queued work is included.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from iclab.bench_eval import BenchError, bench_eval
from iclab.config import Config, CurriculumConfig, load_config, validate
from iclab.experiments.throughput import MemoryMeter, device_name, peak_flops, time_steps

REPO = Path(__file__).resolve().parents[1]

# name -> (config path relative to the repository, what it is)
SUITE: dict[str, tuple[str, str]] = {
    "quickstart": ("configs/quickstart.yaml", "the README's quickstart (d=5, 11 points, 4 layers, width 64)"),
    "garg_standard": (
        "benchmarks/configs/garg_standard.yaml",
        "Garg et al.: d=20, 41 points, 12 layers, width 256, 8 heads, batch 64",
    ),
    "looped_paper": (
        "benchmarks/configs/looped_paper.yaml",
        "Yang et al. looped: d=20, 41 points, 1 layer, width 256, b=30, T=15, batch 64",
    ),
    "seed000_looped": (
        "benchmarks/configs/seed000_looped.yaml",
        "seed 000: d=10, 20 points, 1 layer, width 256, b=20, T=5, batch 64",
    ),
    "seed000_looped_drop": (
        "benchmarks/configs/seed000_looped_drop.yaml",
        "seed 000 with token dropping: 2 fewer tokens per iteration, at least 20",
    ),
    "lm_char": (
        "benchmarks/configs/lm_char.yaml",
        "nanoGPT shakespeare-char shape: char LM, 6 layers, width 384, 6 heads, block 256, batch 64",
    ),
}
EVAL_CONFIG = "garg_standard"  # the evaluation is timed on this model: 1,000 prompts of 41 points
# `iclab bench --mfu`: the LM shape and the regression reference shapes, each in every supported precision,
# eager and compiled (see `mfu_ablate` and `mfu_table`)
MFU_SUITE = ["lm_char", "garg_standard", "looped_paper", "seed000_looped"]


def suite_path(name: str) -> Path:
    path = REPO / SUITE[name][0]
    if not path.is_file():
        raise BenchError(
            f"benchmark config {name!r} expects {path}, which is missing (run from a source checkout "
            "or pass a YAML path)"
        )
    return path


def bench_config(cfg: Config, device: str | None = None) -> Config:
    """The config at its full shapes, without curriculum, logging or progress output."""
    data = cfg.model_dump(mode="json")
    data["curriculum"] = CurriculumConfig().model_dump(mode="json")
    data["logging"].update(tensorboard=False, wandb=False, progress=False)
    if device is not None:
        data["training"]["device"] = device
    return validate(data, "<bench>")


def resolve_cases(
    names: list[str], overrides: list[str], ablate: list[str], device: str | None
) -> list[tuple[str, Config, dict]]:
    """(label, config, variant) for each name (suite name or YAML path) x each combination of --ablate values."""
    axes = []
    for item in ablate:
        if "=" not in item:
            raise BenchError(f"--ablate '{item}' is not of the form key=v1,v2 (e.g. training.compile=false,true)")
        key, vals = item.split("=", 1)
        axes.append([f"{key}={v}" for v in vals.split(",")])
    cases = []
    for name in names:
        if name in SUITE:
            path, label = suite_path(name), name
        elif name.endswith((".yaml", ".yml")):
            path, label = Path(name), Path(name).stem
        else:
            raise BenchError(f"unknown benchmark {name!r}: use one of {', '.join(SUITE)} or a YAML config path")
        for combo in itertools.product(*axes) if axes else [()]:
            cfg = bench_config(load_config(path, list(overrides) + list(combo)), device)
            variant = dict(c.split("=", 1) for c in combo)
            cases.append((label + (f"[{','.join(combo)}]" if combo else ""), cfg, variant))
    return cases


def mfu_ablate(device: str | None) -> list[str]:
    """The --ablate axes of the MFU table: training.dtype over float32 and, where the device runs bf16 natively
    (CUDA with bf16, a CPU with AVX512-BF16/AMX), bfloat16; training.compile over false, true."""
    from iclab.training.device import cpu_bf16_supported, resolve_device

    dev = resolve_device(device or "auto")
    bf16 = torch.cuda.is_bf16_supported() if dev.type == "cuda" else dev.type == "cpu" and cpu_bf16_supported()
    return ["training.dtype=float32" + (",bfloat16" if bf16 else ""), "training.compile=false,true"]


def mfu_table(recs: list[dict]) -> dict:
    """Training records of an --mfu run -> {"peaks": {dtype: FLOP/s}, "rows": {config: {column: cell}}}, a
    column per (dtype, eager|compiled), a cell {mfu, steps_per_s, mfu_cpu_time}."""
    peaks: dict[str, float] = {}
    rows: dict[str, dict] = {}
    for r in recs:
        if r["kind"] != "train":
            continue
        base = r["name"].split("[", 1)[0]
        col = f"{r['dtype']} {'compiled' if r['compile'] else 'eager'}"
        peaks[r["dtype"]] = r["peak_flops"]
        rows.setdefault(base, {})[col] = {
            "mfu": r["mfu"],
            "steps_per_s": r["steps_per_s"],
            "mfu_cpu_time": r.get("mfu_cpu_time"),
            "warmup_s": r["warmup_s"],
        }
    return {"peaks": peaks, "rows": rows}


def print_mfu_table(recs: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    tab = mfu_table(recs)
    cols = sorted({c for row in tab["rows"].values() for c in row}, key=lambda c: (c.split()[0] != "float32", c))
    peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in tab["peaks"].items())
    t = Table(title="MFU (steps/s)", caption=f"against the measured matmul peak: {peaks}")
    t.add_column("config")
    for c in cols:
        t.add_column(c, justify="right")
    for name, row in tab["rows"].items():
        t.add_row(
            name,
            *(f"{row[c]['mfu']:.1%} ({row[c]['steps_per_s']:.3g}/s)" if c in row else "-" for c in cols),
        )
    Console(width=160).print(t)


# --- training-step benchmark ---------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    cfg: Config
    variant: dict
    trainer: object = None
    steps: int = 0
    next_step: int = 0
    warmup_s: float = 0.0
    rounds: list = field(default_factory=list)
    threads: int = 1

    @property
    def flops(self) -> int:
        """Matmul FLOPs of a step, from the workload's formula (iclab/models/flops.py)."""
        return self.trainer.workload.step_flops()

    @property
    def tokens(self) -> int:
        return self.trainer.workload.tokens_per_step(self.cfg.training.batch_size)


def _run_steps(case: Case, n: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of the next n training steps (the shared timer)."""
    secs = time_steps(case.trainer, range(case.next_step, case.next_step + n))
    case.next_step += n
    return secs


def prepare(case: Case, warmup: int, target_s: float, min_steps: int, tmp: Path, log=print) -> None:
    from iclab.training.trainer import Trainer

    torch.set_num_threads(case.threads)
    case.trainer = Trainer(case.cfg, tmp / re.sub(r"[^\w.-]", "_", case.name))
    t = [_run_steps(case, 1)[0] for _ in range(warmup)]
    case.warmup_s = sum(t)
    per_step = t[-1]
    case.steps = max(min_steps, math.ceil(target_s / max(per_step, 1e-6)))
    log(f"  {case.name}: warm-up {case.warmup_s:.1f} s ({warmup} steps), timing {case.steps} steps per round")


def amp_dtype(case: Case) -> torch.dtype:
    return case.trainer.amp_dtype or torch.float32


def record(case: Case, device: torch.device, mem_kind: str, peak: float) -> dict:
    sps = statistics.median(r["steps_per_s"] for r in case.rounds)
    cpu_mfu = statistics.median(r["mfu_cpu_time"] for r in case.rounds)
    c = case.cfg
    return {
        "name": case.name,
        "kind": "train",
        "device": device_name(device),
        "dtype": str(amp_dtype(case)).removeprefix("torch."),
        "threads": case.threads,
        "compile": c.training.compile and c.training.compile_scope,
        "optimizer": c.training.optimizer.name,
        "optimizer_impl": _impl(case),
        "task": c.task.name,
        "batch_size": c.training.batch_size,
        "n_dims": c.task.n_dims,
        "n_points": c.task.n_points,
        "seq_len": getattr(case.trainer.workload, "seq_len", None),
        "vocab_size": getattr(case.trainer.workload, "vocab_size", None),
        "n_layer": c.model.n_layer,
        "n_embd": c.model.n_embd,
        "loops": c.model.loops,
        "window": c.model.window,
        "drop_tokens": c.model.drop_tokens,
        "min_tokens": c.model.min_tokens,
        "steps_per_s": sps,
        "tokens_per_s": sps * case.tokens,
        "flops_per_step": case.flops,
        "achieved_flops": sps * case.flops,
        "peak_flops": peak,
        "mfu": sps * case.flops / peak,
        "steps_per_s_best": max(r["steps_per_s"] for r in case.rounds),
        "steps_per_cpu_s": statistics.median(r["steps_per_cpu_s"] for r in case.rounds)
        if device.type == "cpu"
        else None,
        "mfu_cpu_time": cpu_mfu if device.type == "cpu" else None,
        "peak_mem_bytes": max(r["peak_mem_bytes"] for r in case.rounds),
        "base_mem_bytes": min(r["base_mem_bytes"] for r in case.rounds),
        "mem_kind": mem_kind,
        "warmup_s": case.warmup_s,
        "steps_timed": case.steps,
        "rounds": case.rounds,
        "variant": case.variant,
    }


def _impl(case: Case) -> str:
    from iclab.registry import OPTIMIZERS
    from iclab.training.optim import resolve_impl

    spec = OPTIMIZERS.get(case.cfg.training.optimizer.name)
    return resolve_impl(spec, case.cfg.training.optimizer.impl, case.trainer.device)


def run_suite(
    names: list[str] | None = None,
    *,
    quick: bool = False,
    device: str | None = None,
    overrides: list[str] = (),
    ablate: list[str] = (),
    threads: int | None = None,
    rounds: int | None = None,
    eval_: bool = True,
    peak_n: int | None = None,
    target_s: float | None = None,
    log=print,
) -> list[dict]:
    """Benchmark `names` (suite names or YAML paths; default the whole suite); returns the records.
    target_s: seconds of timed steps per configuration and round (default 8; --quick 2).

    Length: the suite's loop (build, warm up, time, record, free) per case with its memory meter; splitting it
    would pass the same six values around.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    # one process compiles many configurations (and variants); Dynamo's cache is per code object, so
    # the later configurations may reuse shape-generic graphs of the earlier ones (as a curriculum would)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    threads = torch.get_num_threads()
    names = list(names or SUITE)
    cases = [
        Case(n, c, v, threads=c.training.threads or threads)
        for n, c, v in resolve_cases(names, list(overrides), list(ablate), device)
    ]
    if not cases:
        raise BenchError("nothing to benchmark")
    rounds = rounds or (1 if quick else 3)
    warmup, default_s, min_steps = (1, 2.0, 1) if quick else (3, 8.0, 3)
    target_s = default_s if target_s is None else target_s
    recs = []
    with tempfile.TemporaryDirectory(prefix="iclab-bench-") as tmp:
        log(f"warm-up ({len(cases)} configurations, {threads} threads)")
        for case in cases:
            prepare(case, warmup, target_s, min_steps, Path(tmp), log)
        dev = cases[0].trainer.device
        mem = MemoryMeter(dev)
        for r in range(rounds):
            log(f"round {r + 1}/{rounds}")
            for case in cases:
                torch.set_num_threads(case.threads)
                peak, peak_cpu = peak_flops(case.trainer.device, amp_dtype(case), peak_n)
                mem.start()
                secs, cpu_s = _run_steps(case, case.steps)
                case.rounds.append(
                    {
                        "steps_per_s": case.steps / secs,
                        "steps_per_cpu_s": case.steps / max(cpu_s, 1e-9),
                        "peak_flops_here": peak,
                        "mfu_cpu_time": case.flops * case.steps / max(cpu_s, 1e-9) / peak_cpu,
                        "peak_mem_bytes": mem.peak(),
                        "base_mem_bytes": mem.base,
                    }
                )
                log(
                    f"  {case.name}: {case.steps / secs:.3f} steps/s, {case.flops * case.steps / secs / peak:.1%} of "
                    f"{peak / 1e9:.0f} GFLOP/s"
                )
        # one peak per (dtype, threads) for the whole run: the median of every measurement taken between timings
        peaks = {}
        for c in cases:
            peaks.setdefault((amp_dtype(c), c.threads), []).extend(r["peak_flops_here"] for r in c.rounds)
        recs = [record(c, c.trainer.device, mem.kind, statistics.median(peaks[amp_dtype(c), c.threads])) for c in cases]
        torch.set_num_threads(threads)
        for c in cases:
            c.trainer = None
        if eval_:
            cfg = bench_config(load_config(suite_path(EVAL_CONFIG), list(overrides)), device)
            fp32 = peaks.get((torch.float32, threads))
            recs.append(
                bench_eval(
                    cfg,
                    n_prompts=1000,
                    n_points=41,
                    mem=mem,
                    threads=threads,
                    peak_n=peak_n,
                    peak=statistics.median(fp32) if fp32 else None,
                    whole=not quick,
                    log=log,
                )
            )
    return recs


def print_table(recs: list[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console() if Console().is_terminal else Console(width=160)
    t = Table(title=f"iclab bench ({recs[0]['device']})" if recs else "iclab bench")
    cpu = any(r.get("mfu_cpu_time") is not None for r in recs)
    for col in (
        ("name", "threads", "steps/s", "tokens/s", "GFLOP/step", "GFLOP/s", "peak GFLOP/s", "MFU")
        + (("MFU (CPU time)",) if cpu else ())
        + ("peak mem MiB",)
    ):
        t.add_column(col, justify="left" if col == "name" else "right", overflow="fold")
    for r in recs:
        t.add_row(
            escape(r["name"]),
            str(r["threads"]),
            f"{r['steps_per_s']:.3f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['flops_per_step'] / 1e9:.2f}",
            f"{r['achieved_flops'] / 1e9:.1f}",
            f"{r['peak_flops'] / 1e9:.1f}",
            f"{r['mfu']:.1%}",
            *((f"{r['mfu_cpu_time']:.1%}" if r.get("mfu_cpu_time") is not None else "-",) if cpu else ()),
            f"{r['peak_mem_bytes'] / 2**20:.0f}",
        )
    console.print(t)
    for r in recs:
        if r["kind"] == "eval":
            console.print(
                f"evaluation of {r['n_prompts']} prompts x {r['n_points']} points: {r['eval_s']:.2f} s "
                f"({r['eval_s_kind']}; model {r['model_s']:.2f} s; "
                + ", ".join(f"{k} {v:.3f} s" for k, v in r["baselines_s"].items())
                + f"; baselines together {r['baselines_total_s']:.3f} s)"
            )


def write_json(recs: list[dict], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recs, indent=1))
