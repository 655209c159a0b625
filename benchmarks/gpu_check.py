"""The first run on a GPU machine: everything iclab has never run on CUDA, timed, in one JSON.

    benchmarks/gpu_check.sh                       # or: make gpu-check   (on a machine with CUDA)
    benchmarks/gpu_check.sh --dry                 # or: GPU_CHECK_DRY=1: the same steps on the CPU, tiny settings

Steps (each records its command, exit status, seconds and output tail; a failing step does not stop the
others, the script's exit status is 1 if any failed):

1. tests     the CUDA tests: pytest -m "" -k "cuda or bf16 or bfloat16 or nccl": tests/cuda/test_on_device.py
             (every workload's loss and gradients against the CPU, samplers on the device, train/checkpoint/
             resume/evaluate, bf16 autocast, inductor) and the CUDA cases elsewhere; they skip without CUDA
             (dry: the CUDA-dtype resolution test only). The gloo DDP tests are CPU tests: CI runs them.
2. bench     what `iclab bench --mfu` measures, in two calls (eager here, compiled as the last step, so a slow
             compile loses none of the other numbers): the LM shape (lm_char) and the regression reference shapes
             (garg_standard, looped_paper, seed000_looped) in fp32/bf16, against the measured matmul peak;
             the records and the MFU table (dry: quickstart at batch 4, fp32 eager, one short round).
2b. lm       with --nanogpt PATH (nanoGPT's model.py): benchmarks/lm_vs_nanogpt.py on the device, iclab fp32/
             bf16 against nanoGPT's train.py step (fp32, bf16 autocast, compiled bf16 = its CUDA defaults).
3. ddp       with two or more GPUs: `torchrun --standalone --nproc_per_node 2 -m iclab train
             configs/quickstart.yaml` (NCCL), its wall time and final loss (dry, and on one GPU: skipped).
4. garg      the Garg et al. reference training (configs/garg/linear_regression.yaml: 12 layers, width 256,
             batch 64, 500k steps, curriculum dims 5->20 and points 11->41 over the first 30k steps) for
             --slice-s seconds (default 600) through `Trainer.train_step`, the step `iclab train` runs:
             first half: steps 0, 1, 2, ... in order (the loss must fall); second half: a few steps at the
             start of every curriculum stage (step data and curriculum are pure functions of the step, so
             any step can be timed on its own). Projection of the 500k-step time:
             sum over stages of (steps in the stage) x (measured seconds per step there); logging,
             checkpoints and evaluation not included.

Output: one JSON (--out, default benchmarks/results/gpu-check-<device>.json; dry: a temporary directory
(the system's temporary directory) unless --out) with the machine, and one record per step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GARG = "configs/garg/linear_regression.yaml"
TOTAL_STEPS = 500_000


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


def run_cmd(name: str, cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, ((e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")) + "\nTIMEOUT"
    secs = time.perf_counter() - t0
    print(f"[{name}] rc={rc} in {secs:.1f} s: {' '.join(cmd)}", flush=True)
    return {"step": name, "cmd": cmd, "rc": rc, "ok": rc == 0, "seconds": secs, "output_tail": _tail(out)}


def machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }
    if torch.cuda.is_available():
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        info["capability"] = list(torch.cuda.get_device_capability(0))
    return info


def step_tests(dry: bool, py: str, timeout: float = 900) -> dict:
    k = "dtype_resolution_on_cuda" if dry else "cuda or bf16 or bfloat16 or nccl"
    where = "tests/training/test_speed_switches.py" if dry else "tests"  # dry: collect one file, not the suite
    cmd = [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist", "-m", "", "-k", k, where]
    rec = run_cmd("tests", cmd, timeout=300 if dry else timeout)
    last = [ln for ln in rec["output_tail"].splitlines() if ln.strip()]
    rec["summary"] = last[-1] if last else ""
    return rec


def step_bench(
    dry: bool, py: str, out_dir: Path, rounds: int = 3, seconds: float = 8.0, compiled: bool = False, timeout=1200
) -> dict:
    """Eager (compiled=False) or compiled: one `iclab bench` call over the MFU suite x float32/bfloat16."""
    if dry:
        args = ["quickstart", "--quick", "--device", "cpu", "--threads", "1", "--no-eval", "--seconds", "0.05"]
        args += ["--set", "training.batch_size=4", "--ablate", "training.dtype=float32"]
        calls = {"eager": args + ["--ablate", "training.compile=false"]}
    else:
        from iclab.bench import MFU_SUITE

        args = [*MFU_SUITE, "--device", "cuda", "--no-eval", "--rounds", str(rounds), "--seconds", str(seconds)]
        args += ["--ablate", "training.dtype=float32,bfloat16"]
        mode = "compiled" if compiled else "eager"
        calls = {mode: args + ["--ablate", f"training.compile={str(compiled).lower()}"]}
    rec = {"step": "bench_compiled" if compiled else "bench", "calls": {}, "records": []}
    for mode, a in calls.items():
        path = out_dir / f"bench-{mode}.json"
        r = run_cmd(
            f"bench {mode}", [py, "-m", "iclab", "bench", *a, "--out", str(path)], timeout=600 if dry else timeout
        )
        if path.is_file():
            rec["records"] += json.loads(path.read_text())
        elif r["ok"]:
            r.update(ok=False, error=f"{path} was not written")
        rec["calls"][mode] = r
    rec["ok"] = all(r["ok"] for r in rec["calls"].values())
    if rec["records"]:
        from iclab.bench import mfu_table

        rec["mfu_table"] = mfu_table(rec["records"])
    return rec


def step_lm(py: str, nanogpt: Path, out_dir: Path) -> dict:
    path = out_dir / "lm_vs_nanogpt.json"
    cmd = [py, "benchmarks/lm_vs_nanogpt.py", str(nanogpt), "--device", "cuda", "--batch", "64", "--rounds", "3"]
    cmd += ["--steps", "10", "--warmup", "3", "--variant", "fp32:training.dtype=float32"]
    cmd += ["--variant", "bf16:training.dtype=bfloat16", "--variant", "bf16_compile:training.dtype=bfloat16;"]
    cmd[-1] += "training.compile=true"
    cmd += ["--nanogpt", "fp32", "--nanogpt", "bf16", "--nanogpt", "bf16_compile", "--out", str(path)]
    rec = run_cmd("lm", cmd, timeout=900)
    if path.is_file():
        rec["result"] = json.loads(path.read_text())
    return rec


def step_ddp(dry: bool, py: str, out_dir: Path) -> dict:
    import torch

    n = torch.cuda.device_count()
    if dry or n < 2:
        reason = "dry run" if dry else f"{n} GPU(s): a 2-process NCCL run needs 2"
        print(f"[ddp] skipped: {reason}", flush=True)
        return {"step": "ddp", "ok": True, "skipped": reason}
    run_dir = out_dir / "ddp-quickstart"
    cmd = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "iclab", "train"]
    cmd += ["configs/quickstart.yaml", "--out", str(run_dir), "--overwrite", "training.device=cuda"]
    rec = run_cmd("ddp", cmd, timeout=1800)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        from iclab.files import read_jsonl

        rows = [r for r in read_jsonl(metrics) if "loss" in r]
        if rows:
            rec["final"] = {k: rows[-1].get(k) for k in ("step", "loss", "steps_per_s", "train_seconds")}
    return rec


def _stage_starts(cfg) -> list[int]:
    """The steps where the curriculum's shapes change (0 first), up to the last change."""
    from iclab.training.curriculum import Curriculum

    cur = Curriculum(cfg)
    starts, last, step = [0], cur.at(0), 0
    c = cfg.curriculum
    intervals = [x.interval for x in (c.dims, c.points, c.loops, c.seq_len) if x is not None]
    if not intervals:
        return starts
    every = math.gcd(*intervals)
    while step < cfg.training.steps:
        step += every
        now = cur.at(step)
        if now == last:
            if step > 64 * every:  # no change for a long while: the curriculum is over
                break
            continue
        starts.append(step)
        last = now
    return starts


def project(starts: list[int], per_step: dict[int, float], total: int) -> float:
    """Seconds for steps 0..total-1 given seconds per step measured at each stage start."""
    bounds = [*starts[1:], total]
    return sum((min(b, total) - s) * per_step[s] for s, b in zip(starts, bounds) if s < total)


def step_garg(dry: bool, slice_s: float, out_dir: Path) -> dict:
    import torch

    from iclab.config import load_config
    from iclab.experiments.throughput import sync
    from iclab.training.trainer import Trainer

    overrides = [f"training.steps={TOTAL_STEPS}", "logging.progress=false", "logging.tensorboard=false"]
    if dry:
        overrides += ["training.device=cpu", "training.batch_size=4", "model.n_layer=1", "model.n_embd=32"]
        overrides += ["model.n_head=2"]
    cfg = load_config(REPO / GARG, overrides)
    rec = {"step": "garg", "config": GARG, "overrides": overrides, "slice_s": slice_s}
    t_start = time.perf_counter()
    try:
        tr = Trainer(cfg, out_dir / "garg")
        dev = tr.device
        rec.update(device=str(dev), dtype=str(tr.amp_dtype or torch.float32).removeprefix("torch."))
        # first half: the real run from step 0 (the loss must fall), timed in blocks of `chunk` steps
        chunk = 5 if dry else 100
        losses, blocks, step = [], [], 0
        deadline = time.perf_counter() + slice_s / 2
        while time.perf_counter() < deadline:
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(chunk):
                loss, _ = tr.train_step(step)
                step += 1
            losses.append(float(loss))  # one host read per chunk
            sync(dev)
            blocks.append((step, (time.perf_counter() - t0) / chunk))
        rec["sequential"] = {
            "steps": step,
            "seconds": sum(b[1] * chunk for b in blocks),
            "first_loss": losses[0],
            "last_loss": losses[-1],
            "sec_per_step_by_block": blocks,
        }
        # second half: a few steps at the start of every curriculum stage (the first, untimed, builds the shape)
        starts = _stage_starts(cfg)
        budget = slice_s / 2 / len(starts)
        per_step = {}
        for s in starts:
            tr.train_step(s)
            sync(dev)
            t0, n = time.perf_counter(), 0
            while n < 3 or (time.perf_counter() - t0 < budget and n < 200):
                loss, _ = tr.train_step(s + 1 + n)
                n += 1
            float(loss)
            sync(dev)
            per_step[s] = (time.perf_counter() - t0) / n
        total = project(starts, per_step, TOTAL_STEPS)
        rec.update(
            ok=bool(losses[-1] < losses[0]) or dry,
            stage_starts=starts,
            sec_per_step_at_stage=per_step,
            projected_500k_s=total,
            projected_500k_h=total / 3600,
            wall_s=time.perf_counter() - t_start,
        )
        print(
            f"[garg] {step} steps in order (loss {losses[0]:.3f} -> {losses[-1]:.3f}); {len(starts)} curriculum "
            f"stages; projected {TOTAL_STEPS} steps: {total / 3600:.2f} h",
            flush=True,
        )
    except Exception as e:  # a failed step is recorded, the others still run
        rec.update(ok=False, error=f"{type(e).__name__}: {e}", wall_s=time.perf_counter() - t_start)
        print(f"[garg] failed: {rec['error']}", flush=True)
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="iclab's GPU check (see the module docstring)")
    ap.add_argument("--dry", action="store_true", default=os.environ.get("GPU_CHECK_DRY") == "1")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--slice-s", type=float, default=None, help="seconds of Garg training (default 600; dry 4)")
    ap.add_argument("--skip", action="append", default=[], choices=["tests", "bench", "lm", "ddp", "garg"])
    ap.add_argument("--bench-rounds", type=int, default=3, help="iclab bench --rounds (GPU)")
    ap.add_argument("--bench-seconds", type=float, default=8.0, help="iclab bench --seconds (GPU)")
    ap.add_argument("--tests-timeout", type=float, default=900, help="seconds for the tests step")
    ap.add_argument("--compiled-timeout", type=float, default=1200, help="seconds for the compiled bench call")
    ap.add_argument("--nanogpt", type=Path, default=None, help="nanoGPT's model.py: adds the LM side-by-side (GPU)")
    args = ap.parse_args(argv)
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; use --dry (or GPU_CHECK_DRY=1) for the CPU dry run")
        return 2
    sys.path.insert(0, str(REPO))
    slice_s = args.slice_s if args.slice_s is not None else (4.0 if args.dry else 600.0)
    py = sys.executable
    tmp = tempfile.TemporaryDirectory(prefix="gpu-check-")
    work = Path(tmp.name)
    if args.out is None:
        name = "dry" if args.dry else torch.cuda.get_device_name(0).replace(" ", "_")
        args.out = (Path(tempfile.gettempdir()) if args.dry else REPO / "benchmarks/results") / f"gpu-check-{name}.json"
    result = {"dry": args.dry, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    steps = result["steps"] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def done(rec: dict) -> None:  # the JSON is rewritten after every step: a run cut short keeps what it measured
        steps.append(rec)
        result["ok"] = all(s.get("ok") for s in steps)
        args.out.write_text(json.dumps(result, indent=1, default=str))

    if "tests" not in args.skip:
        done(step_tests(args.dry, py, args.tests_timeout))
    if "bench" not in args.skip:
        done(step_bench(args.dry, py, work, args.bench_rounds, args.bench_seconds))
    if "lm" not in args.skip and args.nanogpt is not None and not args.dry:
        done(step_lm(py, args.nanogpt, work))
    if "ddp" not in args.skip:
        done(step_ddp(args.dry, py, work))
    if "garg" not in args.skip:
        done(step_garg(args.dry, slice_s, work))
    if "bench" not in args.skip and not args.dry:  # last: compiling 8 configurations is the slowest part
        done(step_bench(False, py, work, args.bench_rounds, args.bench_seconds, True, args.compiled_timeout))
    print(f"gpu_check: {'ok' if result['ok'] else 'FAILED: ' + ', '.join(s['step'] for s in steps if not s.get('ok'))}")
    print(f"wrote {args.out}")
    tmp.cleanup()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
