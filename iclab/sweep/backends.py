"""Run many jobs with an existing engine: a local process pool (default), Ray, or SLURM through submitit.

    run_many(jobs, backend="local", workers=None, log=print, options=None) -> list[JobResult]

`jobs` is a list of `iclab.sweep.Job(config, run_dir)` (or (config, run_dir) tuples); results come back in the same order. Finished runs
are reused without starting a process, interrupted ones resume, and a failed job is reported (its
`failed.json`) without stopping the others; `run_many` raises only for a bad backend or option.

- local: `workers` processes at a time (default: min(jobs, CPU cores)), each job in a fresh
  `python -m iclab.sweep.jobs` process whose output goes to `<run_dir>.log`; torch threads per worker are
  cores // workers (unless the config sets training.threads), so workers x threads = cores. A process that
  dies without a word (killed, out of memory) is recorded as failed with its exit code and last log line.
- ray: one Ray task per job (`pip install 'iclab[ray]'`), on the cluster `ray.init(address=options["address"])`
  joins (default: a local one with `workers` CPUs); each task asks for `threads` CPUs.
- slurm: one submitit job per run in a job array (`pip install 'iclab[slurm]'`); `options` go to
  `executor.update_parameters` (e.g. slurm_partition, timeout_min, gpus_per_node, cpus_per_task), and
  `options["cluster"] = "local"` uses submitit's local executor (what the tests do). Logs under
  `options["folder"]` (default `<parent of the first run>/.submitit`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from iclab.errors import IclabError
from iclab.sweep.jobs import Job, JobResult, config_conflict, is_done, mark_failed, run_state

BACKENDS = ("local", "ray", "slurm")


class SweepError(IclabError, ValueError):
    """A sweep that cannot start (bad backend, option or directory); the message names it."""


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (macOS)
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cpu_cores() // max(1, workers))


def run_many(
    jobs: list[Job], backend: str = "local", workers: int | None = None, log=print, options: dict | None = None
) -> list[JobResult]:
    """Run every job (see the module docstring); never raises for a failed job. A job may also be given as a
    (config, run_dir) tuple. `options["threads"]`: torch threads per run (default cores // workers)."""
    jobs = [j if isinstance(j, Job) else Job(j[0], Path(j[1])) for j in jobs]
    if backend not in BACKENDS:
        raise SweepError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise SweepError(f"--workers {workers}: give at least 1")
    dirs = [str(Path(j.run_dir).resolve()) for j in jobs]
    if len(set(dirs)) != len(dirs):
        raise SweepError("two jobs share a run directory: " + next(d for d in dirs if dirs.count(d) > 1))
    results: list[JobResult | None] = [None] * len(jobs)
    todo = []
    for i, job in enumerate(jobs):  # finished runs: nothing to start
        conflict = config_conflict(job.config, job.run_dir) if (Path(job.run_dir) / "config.yaml").is_file() else None
        if conflict:
            mark_failed(job.run_dir, conflict)
            results[i] = JobResult(Path(job.run_dir), "failed", conflict)
            log(f"  {job.run_dir}: failed: {conflict}")
        elif is_done(job.run_dir, job.evaluate):
            results[i] = JobResult(Path(job.run_dir), "reused", None, 0.0)
            log(f"  {job.run_dir}: finished, reused")
        else:
            todo.append(i)
    if todo:
        workers = min(workers or cpu_cores(), len(todo))
        run = {"local": _run_local, "ray": _run_ray, "slurm": _run_slurm}[backend]
        for i, res in run([jobs[i] for i in todo], workers, log, dict(options or {})):
            results[todo[i]] = res
    return results


def _report(log, res: JobResult) -> JobResult:
    if res.state == "failed":
        log(f"  {res.run_dir}: failed: {res.error}")
    else:
        log(f"  {res.run_dir}: {res.state}" + (f" ({res.wall_s:.1f} s)" if res.wall_s else ""))
    return res


def _from_dict(d: dict) -> JobResult:
    return JobResult(Path(d["run_dir"]), d["state"], d.get("error"), d.get("wall_s"))


# --- local: a pool of fresh processes -----------------------------------------------------------------------
def log_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".log")


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _local_one(job: Job, threads: int, log) -> JobResult:
    run_dir = Path(job.run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log(f"  {run_dir}: {'resuming' if (run_dir / 'config.yaml').is_file() else 'training'}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log_path(run_dir), "ab") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "iclab.sweep.jobs", "-"],
            input=json.dumps(job.spec(threads)).encode(),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    for ln in reversed(log_path(run_dir).read_text(errors="replace").splitlines()):
        if ln.startswith("iclab-sweep-result "):
            return _report(log, _from_dict(json.loads(ln.split(" ", 1)[1])))
    why = f"exit code {proc.returncode}" if proc.returncode >= 0 else f"killed by signal {-proc.returncode}"
    last = _last_line(log_path(run_dir))
    msg = (
        f"the run's process ended without a result ({why}); last line of {log_path(run_dir).name}: {last or '(empty)'}"
    )
    if run_state(run_dir, job.evaluate) != "done":
        mark_failed(run_dir, msg)
    return _report(log, JobResult(run_dir, "failed", msg))


def _run_local(jobs: list[Job], workers: int, log, options: dict):
    threads = int(options.get("threads") or threads_per_worker(workers))
    log(
        f"local backend: {len(jobs)} run(s), {workers} at a time, {threads} torch thread(s) each where the config "
        "leaves training.threads unset"
    )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_local_one, job, threads, log) for job in jobs]
        return [(i, f.result()) for i, f in enumerate(futures)]


# --- ray ------------------------------------------------------------------------------------------------------
def _run_ray(jobs: list[Job], workers: int, log, options: dict):
    try:
        import ray
    except ImportError:
        raise SweepError("--backend ray needs Ray: pip install 'iclab[ray]'") from None
    from iclab.sweep.jobs import execute_job

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
                res = _from_dict(ray.get(ready[0]))
            except Exception as e:  # noqa: BLE001  (the worker died: report, go on)
                msg = f"the Ray task failed: {' '.join(str(e).split())[:300]}"
                mark_failed(jobs[i].run_dir, msg)
                res = JobResult(Path(jobs[i].run_dir), "failed", msg)
            out.append((i, _report(log, res)))
    finally:
        if started:
            ray.shutdown()
    return out


# --- slurm (submitit) -------------------------------------------------------------------------------------------
def _run_slurm(jobs: list[Job], workers: int, log, options: dict):
    try:
        import submitit
    except ImportError:
        raise SweepError("--backend slurm needs submitit: pip install 'iclab[slurm]'") from None
    from iclab.sweep.jobs import execute_job

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
        raise SweepError(f"--slurm-option: {' '.join(str(e).split())[:300]}") from None
    log(f"slurm backend ({executor.cluster}): {len(jobs)} run(s), logs in {folder}")
    with executor.batch():
        handles = [executor.submit(execute_job, job.spec(threads)) for job in jobs]
    out = []
    for i, h in enumerate(handles):
        try:
            res = _from_dict(h.result())
        except Exception as e:  # noqa: BLE001  (the job died: report, go on)
            msg = f"submitit job {h.job_id} failed: {' '.join(str(e).split())[-300:]}"
            mark_failed(jobs[i].run_dir, msg)
            res = JobResult(Path(jobs[i].run_dir), "failed", msg)
        out.append((i, _report(log, res)))
    return out
