"""Launch stress: start the 2-process quickstart N times and count the launches that fail.

    python benchmarks/launch_stress.py                              # 50 launches, torchrun and --nproc alternating
    python benchmarks/launch_stress.py -n 100 --steps 20 --load 2 --no-eval --out runs/launch_stress
    python benchmarks/launch_stress.py --mode torchrun -n 20        # only `torchrun --standalone ...`

Each launch is a fresh subprocess, one of
  torchrun --standalone --nproc_per_node 2 --log-dir L --tee 3 -m iclab train CONFIG --out RUN training.steps=S ...
  python -m iclab train CONFIG --out RUN training.steps=S ... --nproc 2    (torchrun's options: PET_LOG_DIR, PET_TEE)
in a fresh run directory (with training.warmup_steps=S/5, so that a short run still has its schedule;
--set adds overrides). A launch fails when it exits non-zero, runs past --timeout, or leaves no
model.safetensors. `--mode kill` instead SIGKILLs rank 1 of an `--nproc 2` launch once its first step
checkpoint exists (logging.ckpt_every=S/4) and fails unless the launch exits non-zero naming rank 1 as the
rank that failed first (what tests/training/test_distributed.py checks).
`--load K` keeps K busy-looping processes running for the whole stress (a loaded
machine is where launches failed). Every failing launch keeps, under OUT/failures/NNN/: the full
output (output.txt), torchrun's per-rank logs (ranks/), the run directory and the command; passing
launches are deleted. Prints the failure rate per mode and writes OUT/launch_stress.json:
{"launches": [{i, mode, rc, wall_s, failed, key_lines}], "summary": {mode: {n, failed, rate}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"error|exception|failed|timed? ?out|refused|address already in use|traceback|signal", re.I)


def command(
    mode: str, config: Path, run: Path, logs: Path, steps: int, no_eval: bool, extra_overrides: list[str]
) -> tuple[list[str], dict]:
    """The command line and extra environment of one launch."""
    overrides = [f"training.steps={steps}", f"training.warmup_steps={steps // 5}"]
    if mode == "kill":  # checkpoints early enough that rank 1 is killed mid-run
        overrides.append(f"logging.ckpt_every={max(1, steps // 4)}")
    overrides += extra_overrides
    train = [str(config), "--out", str(run), *overrides, *(["--no-eval"] if no_eval else [])]
    if mode == "torchrun":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        return [*launcher, "--log-dir", str(logs), "--tee", "3", "-m", "iclab", "train", *train], {}
    # iclab's own launcher: torchrun's arguments default to PET_<NAME> environment variables
    return [sys.executable, "-m", "iclab", "train", *train, "--nproc", "2"], {"PET_LOG_DIR": str(logs), "PET_TEE": "3"}


def key_lines(text: str, limit: int = 30) -> list[str]:
    """The lines of a failing launch that name what went wrong (torchrun's warnings about OMP threads aside)."""
    lines = [ln.strip() for ln in text.splitlines() if KEY.search(ln) and "OMP_NUM_THREADS" not in ln]
    return lines[-limit:]


def rank_pid(tag: str, rank: int) -> int | None:
    """The pid of torchrun's worker `rank` among the processes started with ICLAB_STRESS_TAG=tag."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (d / "environ").read_text().split("\0") if "=" in kv)
        except OSError:
            continue
        if env.get("ICLAB_STRESS_TAG") == tag and env.get("RANK") == str(rank) and "TORCHELASTIC_RUN_ID" in env:
            return int(d.name)
    return None


def kill_rank1(p: subprocess.Popen, run: Path, tag: str, deadline: float) -> str:
    """`--mode kill`: SIGKILL rank 1 once the run's first step checkpoint exists; what happened, in words."""
    ckpts = run / "checkpoints"
    while p.poll() is None and time.time() < deadline:
        if ckpts.is_dir() and any(f.name.startswith("step_") for f in ckpts.iterdir()):
            pid = rank_pid(tag, 1)
            if pid is None:
                return "rank 1 not found"
            os.kill(pid, signal.SIGKILL)
            return "killed"
        time.sleep(0.02)
    return "the run ended before rank 1 could be killed"


def stop_launch(p: subprocess.Popen, tag: str) -> None:
    """Stop a launch and its ranks (torchrun starts each rank in a session of its own)."""
    os.killpg(p.pid, signal.SIGTERM)  # torchrun passes it on to the ranks
    try:
        p.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
    for rank in (0, 1):
        if (pid := rank_pid(tag, rank)) is not None:
            os.kill(pid, signal.SIGKILL)


def one_launch(i: int, mode: str, args, work: Path) -> dict:
    run, logs = work / f"run{i:03d}", work / f"logs{i:03d}"
    cmd, extra = command(mode, args.config, run, logs, args.steps, args.no_eval, args.set)
    tag = f"{os.getpid()}-{i}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), "ICLAB_STRESS_TAG": tag, **extra}
    t0 = time.perf_counter()
    p = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )  # its own process group: a hung launch is killed whole
    try:
        killed = kill_rank1(p, run, tag, time.time() + args.timeout) if mode == "kill" else None
        out, _ = p.communicate(timeout=max(1.0, args.timeout - (time.perf_counter() - t0)))
        rc = p.returncode
    except subprocess.TimeoutExpired:  # a hang counts as a failure
        stop_launch(p, tag)
        out, _ = p.communicate()
        rc, out = None, out + f"\n[launch_stress] TIMEOUT after {args.timeout} s\n"
    except BaseException:  # Ctrl-C / SIGTERM of the stress itself: take the launch down with it
        stop_launch(p, tag)
        raise
    wall = time.perf_counter() - t0
    if mode == "kill":  # expected: a non-zero exit that names rank 1 as the rank that failed first
        failed = killed != "killed" or rc in (0, None) or "rank 1 failed first (signal 9)" not in out
        out += f"\n[launch_stress] kill: {killed}\n"
    else:
        failed = rc != 0 or not (run / "model.safetensors").is_file()
    rec = {"i": i, "mode": mode, "rc": rc, "wall_s": round(wall, 2), "failed": failed}
    if failed:
        keep = args.out / "failures" / f"{i:03d}"
        keep.mkdir(parents=True, exist_ok=True)
        (keep / "output.txt").write_text(out)
        (keep / "command.txt").write_text(" ".join(cmd) + "\n" + json.dumps(extra) + "\n")
        for src, name in ((logs, "ranks"), (run, "run")):
            if src.exists():
                shutil.move(str(src), str(keep / name))
        rec["key_lines"] = key_lines(out)
        rec["kept"] = str(keep)
    elif args.keep_all:
        (args.out / "outputs").mkdir(exist_ok=True)
        (args.out / "outputs" / f"{i:03d}.txt").write_text(out)
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    return rec


def start_load(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def summary(records: list[dict]) -> dict:
    out = {}
    for mode in sorted({r["mode"] for r in records}) + ["all"]:
        rs = [r for r in records if mode in ("all", r["mode"])]
        n, f = len(rs), sum(r["failed"] for r in rs)
        out[mode] = {"n": n, "failed": f, "rate": f / n if n else 0.0}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=50, help="launches (default 50)")
    ap.add_argument(
        "--mode",
        choices=["both", "torchrun", "nproc", "kill"],
        default="both",
        help="both: torchrun and nproc alternating; kill: --nproc, rank 1 SIGKILLed after the first checkpoint",
    )
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    ap.add_argument("--steps", type=int, default=30, help="training.steps of each launch (default 30)")
    ap.add_argument("--set", nargs="*", default=[], help="more config overrides, e.g. logging.log_every=5")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    ap.add_argument("--load", type=int, default=0, help="busy-looping processes kept running meanwhile")
    ap.add_argument("--keep-all", action="store_true", help="keep every launch's output (OUT/outputs/NNN.txt)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a launch counts as hung")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "launch_stress")
    args = ap.parse_args(argv)
    args.config, args.out = args.config.resolve(), args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    modes = ["torchrun", "nproc"] if args.mode == "both" else [args.mode]
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the stress as Ctrl-C does
    load = start_load(args.load)
    records: list[dict] = []
    try:
        for i in range(args.n):
            rec = one_launch(i, modes[i % len(modes)], args, work)
            records.append(rec)
            status = "FAIL " + " | ".join(rec["key_lines"][-3:]) if rec["failed"] else "ok"
            print(f"[{i + 1}/{args.n}] {rec['mode']:8s} rc={rec['rc']} {rec['wall_s']:6.1f} s  {status}", flush=True)
            (args.out / "launch_stress.json").write_text(
                json.dumps({"launches": records, "summary": summary(records)}, indent=1)
            )
    finally:
        for p in load:
            p.kill()
            p.wait()
    for mode, s in summary(records).items():
        print(f"{mode:8s}: {s['failed']} of {s['n']} launches failed ({100 * s['rate']:.1f}%)")
    print(
        f"wrote {args.out / 'launch_stress.json'}"
        + (f"; failures kept in {args.out / 'failures'}" if any(r["failed"] for r in records) else "")
    )
    return 1 if any(r["failed"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
