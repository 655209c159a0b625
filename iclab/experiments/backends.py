"""Run many jobs through one backend: in this process, a local pool of processes, Ray, or SLURM (submitit).

    run_many(jobs, backend="local", workers=None, log=print, options=None) -> list[JobResult]

`jobs` is a list of `Job(config, run_dir)` (or (config, run_dir) tuples); results come back in the same
order. Finished runs of the same config are reused without starting anything, interrupted ones resume, a
failed job is reported (its `failed.json`) without stopping the others; `run_many` raises only for a bad
backend or option. `options["threads"]`: torch threads per run where the config leaves training.threads
unset.

- inline: one job after another in this process (tests, debugging, `iclab compare` by default).
- local: `workers` at a time (default: min(jobs, CPU cores)), each job in a fresh `python -m
  iclab.experiments.worker` process whose output goes to `<run_dir>.log`; threads per run default to
  cores // workers, so workers x threads = cores. A process that dies without a word (killed, out of
  memory) is recorded as failed with its exit code and the last line of its log.
- pool: `workers` persistent processes (spawned once: each imports torch and iclab once, then trains job
  after job in-process; threads default to 1). Many short runs (an optimizer benchmark's trials). In
  iclab/experiments/pool.py.
- ray: one Ray task per job (`pip install 'iclab[ray]'`), on the cluster `ray.init(address=options["address"])`
  joins (default: a local one with `workers` CPUs); each task asks for `threads` CPUs.
- slurm: one submitit job per run in a job array (`pip install 'iclab[slurm]'`); `options` go to
  `executor.update_parameters` (e.g. slurm_partition, timeout_min, gpus_per_node, cpus_per_task), and
  `options["cluster"] = "local"` uses submitit's local executor (what the tests do). Logs under
  `options["folder"]` (default `<parent of the first run>/.submitit`).

Progress: while jobs run, every `progress_s` seconds (when something changed) one line says how many runs
have finished and, for each running one, the steps done of its total, read from its metrics.jsonl:
`progress: 1/4 runs finished; lr=1e-3/seed1 step 120/500, lr=1e-3/seed2 step 80/500`. Any backend whose
run directories this process can read (all of them on one machine or a shared file system).

Interruption (inline, local, pool): once a job reports "interrupted" (Ctrl-C or SIGTERM reached its
trainer, which checkpointed) or this process gets Ctrl-C, no further job starts; the ones not started come
back as "interrupted" ("not started"), and a Ctrl-C of this process is raised again once the running jobs
have stopped. The local backend also passes a SIGTERM of this process (a scheduler's or `kill`'s, which,
unlike a terminal's Ctrl-C, reaches this process alone) on to its running workers, whose trainers
checkpoint, and raises KeyboardInterrupt once they have stopped: no worker trains on, orphaned. The pool
backend does the same with its persistent processes (an idle one takes SIGTERM as "stop", not as death).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from iclab.experiments.errors import ExperimentError
from iclab.experiments.jobs import (
    NOT_STARTED,
    Job,
    JobResult,
    execute_job,
    is_done,
    mark_failed,
    precheck,
    run_state,
)
from iclab.experiments.pool import run_pool
from iclab.experiments.relay import SigtermRelay

BACKENDS = ("inline", "local", "pool", "ray", "slurm")
RESULT_PREFIX = "iclab-sweep-result "  # the worker's last line (iclab/experiments/worker.py, not imported here)
WORKER = [sys.executable, "-m", "iclab.experiments.worker", "-"]  # the local backend's process (JSON spec on stdin)
PROGRESS_S = 30.0  # seconds between progress lines while runs train


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (macOS)
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cpu_cores() // max(1, workers))


_EXTRAS = {  # backend: (the module it imports, what to install)
    "ray": ("ray", "Ray: pip install 'iclab[ray]'"),
    "slurm": ("submitit", "submitit: pip install 'iclab[slurm]'"),
}


def check_backend(backend: str, workers: int | None = None) -> None:
    """Refuse an unknown backend, fewer than one worker, or a backend whose package is missing, before a
    caller creates any file (run_many checks again; commands call this before their first write)."""
    import importlib.util

    if backend not in BACKENDS:
        raise ExperimentError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ExperimentError(f"--workers {workers}: give at least 1")
    if backend in _EXTRAS and importlib.util.find_spec(_EXTRAS[backend][0]) is None:
        raise ExperimentError(f"--backend {backend} needs {_EXTRAS[backend][1]}")


def run_many(
    jobs: list[Job],
    backend: str = "local",
    workers: int | None = None,
    log=print,
    options: dict | None = None,
    progress_s: float | None = PROGRESS_S,
) -> list[JobResult]:
    """Run every job (see the module docstring); never raises for a failed job."""
    jobs = [j if isinstance(j, Job) else Job(j[0], Path(j[1])) for j in jobs]
    check_backend(backend, workers)
    dirs = [str(Path(j.run_dir).resolve()) for j in jobs]
    if len(set(dirs)) != len(dirs):
        raise ExperimentError("two jobs share a run directory: " + next(d for d in dirs if dirs.count(d) > 1))
    results: list[JobResult | None] = [None] * len(jobs)
    todo = []
    for i, job in enumerate(jobs):  # conflicts and finished runs: nothing to start
        results[i] = precheck(job)
        if results[i] is None:
            todo.append(i)
        elif results[i].state == "failed":
            mark_failed(job.run_dir, results[i].error)
            log(f"  {job.run_dir}: failed: {results[i].error}")
        else:
            log(f"  {job.run_dir}: finished, reused")
    if todo:
        workers = min(workers or cpu_cores(), len(todo))
        run = {"inline": _run_inline, "local": _run_local, "pool": _run_pool, "ray": _run_ray, "slurm": _run_slurm}
        monitor = _Progress(jobs, log, progress_s) if progress_s else None
        try:
            for i, res in run[backend]([jobs[i] for i in todo], workers, log, dict(options or {})):
                results[todo[i]] = res
        finally:
            if monitor is not None:
                monitor.stop()
    return results


def _short(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    return f"{run_dir.parent.name}/{run_dir.name}"


def progress_line(jobs: list[Job]) -> str:
    """How many of `jobs` have finished and, for each one that logged a step but has not finished, the last
    logged step of its total (metrics.jsonl; training.steps)."""
    from iclab.experiments.metrics import read_metrics

    done, running = 0, []
    for job in jobs:
        if is_done(job.run_dir, job.evaluate):
            done += 1
            continue
        steps = [r["step"] for r in read_metrics(job.run_dir) if isinstance(r.get("step"), int)]
        if steps:
            running.append(f"{_short(job.run_dir)} step {steps[-1]}/{job.config.training.steps}")
    return f"progress: {done}/{len(jobs)} runs finished" + ("; " + ", ".join(running) if running else "")


class _Progress:
    """A daemon thread logging `progress_line(jobs)` every `every` seconds while it changes."""

    def __init__(self, jobs: list[Job], log, every: float):
        self.jobs, self.log, self.every = jobs, log, every
        self._stop = threading.Event()
        self._last = progress_line(jobs)
        self._thread = threading.Thread(target=self._loop, name="iclab-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                line = progress_line(self.jobs)
            except Exception:  # noqa: BLE001  (a run directory being rewritten: skip this beat, never stop the runs)
                continue
            if line != self._last and not self._stop.is_set():
                self._last = line
                self.log(line)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _report(log, res: JobResult) -> JobResult:
    if res.state == "failed":
        log(f"  {res.run_dir}: failed: {res.error}")
    elif res.error != NOT_STARTED:
        log(f"  {res.run_dir}: {res.state}" + (f" ({res.wall_s:.1f} s)" if res.wall_s else ""))
    return res


def _starting(log, run_dir: Path) -> None:
    log(f"  {run_dir}: {'resuming' if (Path(run_dir) / 'config.yaml').is_file() else 'training'}")


def _not_started(job: Job) -> JobResult:
    return JobResult(Path(job.run_dir), "interrupted", NOT_STARTED, 0.0)


# --- inline: this process ---------------------------------------------------------------------------------------
def _run_inline(jobs: list[Job], workers: int, log, options: dict):
    out, stop = [], False
    for i, job in enumerate(jobs):
        if stop:
            out.append((i, _not_started(job)))
            continue
        _starting(log, job.run_dir)
        res = _report(log, JobResult.from_dict(execute_job(job.spec(options.get("threads")))))
        stop = res.state == "interrupted"
        out.append((i, res))
    return out


# --- local: a fresh process per job -----------------------------------------------------------------------------
def log_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".log")


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


class _Workers(SigtermRelay):
    """The local backend's running worker processes, and the SIGTERM of this process passed on to them."""

    def __init__(self):
        self.stop = threading.Event()
        self.terminated = False
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def start(self, job: Job, threads: int, out) -> subprocess.Popen | None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with self._lock:  # no worker starts after a SIGTERM was passed on
            if self.stop.is_set():
                return None
            proc = subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env)
            self._procs.add(proc)
        proc.communicate(json.dumps(job.spec(threads)).encode())
        with self._lock:
            self._procs.discard(proc)
        return proc

    def _on_sigterm(self, signum, frame) -> None:
        with self._lock:
            self.stop.set()
            self.terminated = True
            for proc in self._procs:
                proc.send_signal(signal.SIGTERM)


def _local_one(job: Job, threads: int, log, workers: _Workers) -> JobResult:
    stop = workers.stop
    if stop.is_set():
        return _not_started(job)
    run_dir = Path(job.run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _starting(log, run_dir)
    with open(log_path(run_dir), "ab") as out:
        proc = workers.start(job, threads, out)
    if proc is None:
        return _not_started(job)
    for ln in reversed(log_path(run_dir).read_text(errors="replace").splitlines()):
        if ln.startswith(RESULT_PREFIX):
            res = _report(log, JobResult.from_dict(json.loads(ln.split(" ", 1)[1])))
            if res.state == "interrupted":
                stop.set()
            return res
    why = f"exit code {proc.returncode}" if proc.returncode >= 0 else f"killed by signal {-proc.returncode}"
    if workers.terminated:  # the passed-on SIGTERM ended it before its trainer could catch it (still starting)
        return _report(log, JobResult(run_dir, "interrupted", f"terminated before training started ({why})", 0.0))
    last = _last_line(log_path(run_dir))
    msg = f"the run's process ended without a result ({why}); last line of {log_path(run_dir).name}: "
    msg += last or "(empty)"
    if run_state(run_dir, job.evaluate) != "done":
        mark_failed(run_dir, msg)
    return _report(log, JobResult(run_dir, "failed", msg))


def _run_local(jobs: list[Job], workers: int, log, options: dict):
    threads = int(options.get("threads") or threads_per_worker(workers))
    log(
        f"local backend: {len(jobs)} run(s), {workers} at a time, {threads} torch thread(s) each where the config "
        "leaves training.threads unset"
    )
    with _Workers() as running, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_local_one, job, threads, log, running) for job in jobs]
        try:
            out = [(i, f.result()) for i, f in enumerate(futures)]
        except BaseException:  # Ctrl-C: the running jobs got it too and checkpoint; queued ones never start
            running.stop.set()
            raise
    if running.terminated:
        raise KeyboardInterrupt("terminated (SIGTERM): the running runs checkpointed, no other run started")
    return out


# --- pool: persistent worker processes (iclab/experiments/pool.py) ----------------------------------------------
def _run_pool(jobs: list[Job], workers: int, log, options: dict):
    return run_pool(jobs, workers, log, options, _report)


# --- ray ------------------------------------------------------------------------------------------------------
def _run_ray(jobs: list[Job], workers: int, log, options: dict):
    try:
        import ray
    except ImportError:
        raise ExperimentError("--backend ray needs Ray: pip install 'iclab[ray]'") from None
    started = False
    if not ray.is_initialized():
        address = options.get("address")
        ray.init(
            address=address,
            **({} if address else {"num_cpus": workers * int(options.get("threads") or 1)}),
            include_dashboard=False,
            log_to_driver=False,
        )
        started = True
    threads = int(options.get("threads") or 1)
    log(f"ray backend: {len(jobs)} run(s), {threads} CPU(s) each")
    remote = ray.remote(num_cpus=threads, max_retries=0)(execute_job)
    refs = {remote.remote(job.spec(threads)): i for i, job in enumerate(jobs)}
    out = []
    try:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = refs[ready[0]]
            try:
                res = JobResult.from_dict(ray.get(ready[0]))
            except Exception as e:  # noqa: BLE001  (the worker died: report, go on)
                res = _died(jobs[i], f"the Ray task failed: {' '.join(str(e).split())[:300]}")
            out.append((i, _report(log, res)))
    finally:
        if started:
            ray.shutdown()
    return out


def _died(job: Job, msg: str) -> JobResult:
    mark_failed(job.run_dir, msg)
    return JobResult(Path(job.run_dir), "failed", msg)


# --- slurm (submitit) -------------------------------------------------------------------------------------------
def _slurm_executor(jobs: list[Job], workers: int, options: dict):
    """(executor, folder, threads per job) from the options."""
    import submitit

    folder = Path(options.pop("folder", None) or Path(jobs[0].run_dir).parent / ".submitit")
    cluster = options.pop("cluster", None)
    threads = options.pop("threads", None)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = {"slurm_array_parallelism": workers, **options} if executor.cluster == "slurm" else {}
    if executor.cluster != "slurm":
        params = {k: v for k, v in options.items() if not k.startswith("slurm_")}
    if threads is None:
        threads = options.get("cpus_per_task") or (threads_per_worker(workers) if executor.cluster != "slurm" else None)
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError) as e:
        raise ExperimentError(f"--slurm-option: {' '.join(str(e).split())[:300]}") from None
    return executor, folder, threads


def _run_slurm(jobs: list[Job], workers: int, log, options: dict):
    try:
        import submitit  # noqa: F401  (only to name the missing extra)
    except ImportError:
        raise ExperimentError("--backend slurm needs submitit: pip install 'iclab[slurm]'") from None
    executor, folder, threads = _slurm_executor(jobs, workers, options)
    log(f"slurm backend ({executor.cluster}): {len(jobs)} run(s), logs in {folder}")
    with executor.batch():
        handles = [executor.submit(execute_job, job.spec(threads)) for job in jobs]
    out = []
    for i, h in enumerate(handles):
        try:
            res = JobResult.from_dict(h.result())
        except Exception as e:  # noqa: BLE001  (the job died: report, go on)
            res = _died(jobs[i], f"submitit job {h.job_id} failed: {' '.join(str(e).split())[-300:]}")
        out.append((i, _report(log, res)))
    return out
