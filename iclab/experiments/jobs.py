"""One job: train (or resume, or reuse) one run directory, and the state of such a directory.

A job is a `Job(config, run_dir)`. Executing it (`execute_job`, in whatever process a backend chose) is
idempotent:

- reuse: a finished run (model.safetensors, and eval.json unless the job skips evaluation) of the same
  config is reused without starting anything;
- resume: a run with a config.yaml but no final weights continues from its latest checkpoint, with the
  config it started with;
- train: anything else starts fresh;
- identity: a run directory holding another config is a failure, not a silent reuse. Settings that do not
  change results (`VOLATILE`: torch threads, the progress bar, TensorBoard) are not compared;
- failure: a job that fails writes `RUN_DIR/failed.json` (the one-line error and the traceback; nothing
  when it failed before the directory existed) and never raises, so the other jobs go on; Ctrl-C or
  SIGTERM make it "interrupted" (the trainer checkpointed).

Every job that trained writes `RUN_DIR/timing.json`: wall_s (its training + evaluation time, summed over
resumed attempts), started and ended (Unix times of the last attempt).

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
NOT_STARTED = "not started (interrupted)"  # the error of a job no backend started after an interruption
TIMING = "timing.json"
# (section, key) of the settings that do not change a run's results: not part of a run's identity
VOLATILE = frozenset({("training", "threads"), ("logging", "progress"), ("logging", "tensorboard")})


@dataclass
class Job:
    """Train `config` into `run_dir` (evaluate after training unless `evaluate` is False)."""

    config: Config
    run_dir: Path
    evaluate: bool = True

    @property
    def seed(self) -> int:
        return self.config.seed

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

    @property
    def finished(self) -> bool:
        return self.state in ("done", "reused")

    def as_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "state": self.state, "error": self.error, "wall_s": self.wall_s}

    @classmethod
    def from_dict(cls, d: dict) -> JobResult:
        return cls(Path(d["run_dir"]), d["state"], d.get("error"), d.get("wall_s"))


def is_done(run_dir: Path, evaluate: bool = True) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "model.safetensors").is_file() and (not evaluate or (run_dir / "eval.json").is_file())


def _identity(cfg: Config) -> dict:
    data = cfg.model_dump(mode="json")
    for section, key in VOLATILE:
        data.get(section, {}).pop(key, None)
    return data


def config_conflict(cfg: Config, run_dir: Path) -> str | None:
    """A message when `run_dir` already holds a run of another config (up to `VOLATILE`), else None."""
    from iclab.runs import load_run_config

    if not (Path(run_dir) / "config.yaml").is_file():
        return None
    a, b = _identity(load_run_config(run_dir)), _identity(cfg)
    if a != b:
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
    """Write failed.json into the run directory; a run that failed before creating it (a bad device, a model
    that does not build) leaves nothing behind and is reported through its result only."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    write_json(run_dir / FAILED, {"error": error, "traceback": tb, "time": time.time(), "pid": os.getpid()})


def one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg if msg else type(e).__name__


def wall_seconds(run_dir: Path) -> float | None:
    """The run's own training + evaluation time (timing.json), None when it has none."""
    try:
        return float(json.loads((Path(run_dir) / TIMING).read_text())["wall_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def precheck(job: Job) -> JobResult | None:
    """The result of a job that needs no process: a config conflict (failed) or a finished run (reused)."""
    conflict = config_conflict(job.config, job.run_dir)
    if conflict:
        return JobResult(Path(job.run_dir), "failed", conflict)
    if is_done(job.run_dir, job.evaluate):
        return JobResult(Path(job.run_dir), "reused", None, 0.0)
    return None


def _train(cfg: Config, run_dir: Path, evaluate: bool) -> None:
    """Train or resume; timing.json is written when training finished or was interrupted."""
    from iclab.runs import train_run

    t0, started = time.perf_counter(), time.time()
    resume = (run_dir / "config.yaml").is_file()
    prev = (wall_seconds(run_dir) or 0.0) if resume else 0.0

    def timing() -> None:
        wall = prev + time.perf_counter() - t0
        write_json(run_dir / TIMING, {"wall_s": wall, "started": started, "ended": time.time()})

    try:  # on resume the saved config runs (equal to `cfg` up to the volatile settings)
        overwrite = not resume and run_dir.exists()
        train_run(None if resume else cfg, run_dir, resume=resume, overwrite=overwrite, evaluate_after=evaluate)
    except KeyboardInterrupt:
        if (run_dir / "config.yaml").is_file():
            timing()
        raise
    timing()


def execute_job(spec: dict) -> dict:
    """Run one job in this process (a worker of any backend); returns JobResult.as_dict() and never raises
    for a failed run."""
    run_dir = Path(spec["run_dir"])
    t0 = time.perf_counter()

    def result(state: str, error: str | None = None, wall: float | None = None) -> dict:
        return JobResult(run_dir, state, error, time.perf_counter() - t0 if wall is None else wall).as_dict()

    try:
        import torch

        from iclab.config import validate

        cfg = validate(spec["config"], str(run_dir / "config.yaml"))
        if spec.get("threads") and cfg.training.threads is None:
            torch.set_num_threads(int(spec["threads"]))
        known = precheck(Job(cfg, run_dir, spec.get("evaluate", True)))
        if known is not None and known.state == "failed":
            raise ValueError(known.error)
        if known is not None:
            return known.as_dict()
        (run_dir / FAILED).unlink(missing_ok=True)
        _train(cfg, run_dir, spec.get("evaluate", True))
        return result("done")
    except KeyboardInterrupt as e:  # the trainer's Interrupted (it checkpointed) or a Ctrl-C before training
        return result("interrupted", str(e) or "interrupted")
    except Exception as e:  # noqa: BLE001  (a failed run is reported, never stops the other runs)
        line = one_line(e)
        try:
            mark_failed(run_dir, line, traceback.format_exc())
        except OSError:
            pass
        return result("failed", line)
