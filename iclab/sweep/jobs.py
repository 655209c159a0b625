"""One job of a sweep: train (or resume, or reuse) one run directory, and the state of such a directory.

A job is a `Job(config, run_dir)`. Executing it is idempotent: a finished run (model.safetensors, and
eval.json unless the job skips evaluation) with the same config is reused without starting anything; a
run with a config.yaml but no final weights is resumed from its latest checkpoint; anything else starts
fresh. A job that fails writes `RUN_DIR/failed.json` (the one-line error and the traceback) and never
raises: the other jobs go on. A run directory holding a different config is a failure, not a silent reuse.

States (`run_state`): done, running (another process holds the run's lock), failed, interrupted (has
checkpoints, not finished), pending.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from iclab.config import Config
from iclab.files import write_json

FAILED = "failed.json"
TIMING = "timing.json"


@dataclass
class Job:
    """Train `config` into `run_dir` (evaluate after training unless `evaluate` is False)."""

    config: Config
    run_dir: Path
    evaluate: bool = True

    def spec(self, threads: int | None = None) -> dict:
        """What a worker process needs (JSON-able)."""
        return {
            "config": self.config.model_dump(mode="json"),
            "run_dir": str(self.run_dir),
            "evaluate": self.evaluate,
            "threads": threads,
        }


@dataclass
class JobResult:
    run_dir: Path
    state: str  # done | reused | failed | interrupted
    error: str | None = None
    wall_s: float | None = None


def is_done(run_dir: Path, evaluate: bool = True) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "model.safetensors").is_file() and (not evaluate or (run_dir / "eval.json").is_file())


def config_conflict(cfg: Config, run_dir: Path) -> str | None:
    """A message when `run_dir` already holds a run of another config, else None."""
    from iclab.runs import load_run_config

    if not (Path(run_dir) / "config.yaml").is_file():
        return None
    saved = load_run_config(run_dir)
    if saved.model_dump() != cfg.model_dump():
        a, b = saved.model_dump(mode="json"), cfg.model_dump(mode="json")
        diff = ", ".join(_diff(a, b)[:3])
        return f"{run_dir} holds a run of another config ({diff}); remove it or choose another --out"
    return None


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: saved {a!r}, now {b!r}"]


def is_running(run_dir: Path) -> bool:
    """Whether a process holds the run's lock (a lock left by a killed process is free)."""
    from filelock import FileLock, Timeout

    lock_path = Path(run_dir) / ".lock"
    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def run_state(run_dir: Path, evaluate: bool = True) -> str:
    run_dir = Path(run_dir)
    if is_done(run_dir, evaluate):
        return "done"
    if is_running(run_dir):
        return "running"
    if (run_dir / FAILED).is_file():
        return "failed"
    if any((run_dir / "checkpoints").glob("step_*.safetensors")):
        return "interrupted"
    return "pending"


def failure(run_dir: Path) -> dict | None:
    path = Path(run_dir) / FAILED
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def mark_failed(run_dir: Path, error: str, tb: str = "") -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / FAILED, {"error": error, "traceback": tb, "time": time.time(), "pid": os.getpid()})


def one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg if msg else type(e).__name__


def execute_job(spec: dict) -> dict:
    """Run one job in this process (a worker of any backend); returns {"run_dir", "state", "error", "wall_s"}
    and never raises for a failed run."""
    run_dir = Path(spec["run_dir"])
    t0, started = time.perf_counter(), time.time()
    threads = spec.get("threads")
    try:
        import torch

        from iclab.config import validate
        from iclab.runs import train_run
        from iclab.training.trainer import Interrupted

        cfg = validate(spec["config"], str(run_dir / "config.yaml"))
        if threads and cfg.training.threads is None:
            torch.set_num_threads(int(threads))
        conflict = config_conflict(cfg, run_dir)
        if conflict:
            raise ValueError(conflict)
        if is_done(run_dir, spec.get("evaluate", True)):
            return {"run_dir": str(run_dir), "state": "reused", "error": None, "wall_s": 0.0}
        (run_dir / FAILED).unlink(missing_ok=True)
        resume = (run_dir / "config.yaml").is_file()
        prev = _timing(run_dir) if resume else 0.0
        try:
            train_run(
                cfg,
                run_dir,
                resume=resume,
                overwrite=not resume and run_dir.exists(),
                evaluate_after=spec.get("evaluate", True),
            )
        except Interrupted as e:
            write_json(
                run_dir / TIMING, {"wall_s": prev + time.perf_counter() - t0, "started": started, "ended": time.time()}
            )
            return {
                "run_dir": str(run_dir),
                "state": "interrupted",
                "error": str(e),
                "wall_s": time.perf_counter() - t0,
            }
        write_json(
            run_dir / TIMING, {"wall_s": prev + time.perf_counter() - t0, "started": started, "ended": time.time()}
        )
        return {"run_dir": str(run_dir), "state": "done", "error": None, "wall_s": time.perf_counter() - t0}
    except KeyboardInterrupt:
        return {
            "run_dir": str(run_dir),
            "state": "interrupted",
            "error": "interrupted",
            "wall_s": time.perf_counter() - t0,
        }
    except Exception as e:  # noqa: BLE001  (a failed run is reported, never stops the other runs)
        line = one_line(e)
        try:
            mark_failed(run_dir, line, traceback.format_exc())
        except OSError:
            pass
        return {"run_dir": str(run_dir), "state": "failed", "error": line, "wall_s": time.perf_counter() - t0}


def _timing(run_dir: Path) -> float:
    try:
        return float(json.loads((Path(run_dir) / TIMING).read_text())["wall_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def main(argv=None) -> int:  # `python -m iclab.sweep.jobs [SPEC.json]`: one job in a fresh process (local backend)
    import sys

    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text() if argv and argv[0] != "-" else sys.stdin.read())
    res = execute_job(spec)
    print(f"iclab-sweep-result {json.dumps(res)}", flush=True)
    return {"done": 0, "reused": 0, "interrupted": 130}.get(res["state"], 1)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
