"""The pool backend of `run_many` (iclab/experiments/backends.py): `workers` persistent processes, spawned
once, each importing torch and iclab once and then training job after job in-process (threads default to 1):
many short runs, such as an optimizer benchmark's trials.

Ctrl-C in any process sets the pool's shared stop event: running jobs checkpoint (their trainers got the
signal too), queued ones come back "not started". A SIGTERM of the parent (a scheduler's, or `kill`'s, which
reaches the parent alone) is passed on to the pool's processes the same way and ends in KeyboardInterrupt
once they stopped; an idle pool process takes SIGTERM as "stop", not as death.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from iclab.experiments.jobs import NOT_STARTED, Job, JobResult, execute_job
from iclab.experiments.relay import SigtermRelay

_POOL_STOP = None  # in a pool worker: the pool's shared stop event (set by Ctrl-C in any process)


def _pool_worker_init(threads: int, stop) -> None:
    import warnings

    global _POOL_STOP
    _POOL_STOP = stop
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    warnings.filterwarnings("ignore")  # resume warnings etc. are reported through the job's state
    for sig in (signal.SIGINT, signal.SIGTERM):  # between jobs (the trainer has its own handlers while it trains)
        signal.signal(sig, lambda *_: stop.set())


def _pool_execute(spec: dict) -> dict:
    if _POOL_STOP is not None and _POOL_STOP.is_set():
        return JobResult(Path(spec["run_dir"]), "interrupted", NOT_STARTED, 0.0).as_dict()
    res = execute_job(spec)
    if res["state"] == "interrupted" and _POOL_STOP is not None:
        _POOL_STOP.set()
    return res


def run_pool(jobs: list[Job], workers: int, log, options: dict, report):
    """Results as (index, JobResult) pairs in job order; `report(log, result)` logs each as it comes back."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = int(options.get("threads") or 1)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    log(f"pool backend: {len(jobs)} run(s), {workers} worker process(es) x {threads} thread(s)")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_worker_init, initargs=(threads, stop))
    out = []
    with _PoolTerm(pool, stop) as term:
        try:
            futures = [pool.submit(_pool_execute, job.spec(threads)) for job in jobs]
            for i, f in enumerate(futures):
                out.append((i, report(log, JobResult.from_dict(f.result()))))
        except BaseException:  # Ctrl-C: the running jobs checkpoint (they got the signal too); none else starts
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
    if term.terminated:
        raise KeyboardInterrupt("terminated (SIGTERM): the running runs checkpointed, no other run started")
    return out


class _PoolTerm(SigtermRelay):
    """A SIGTERM of this process during a pool run: set the pool's stop event (no queued job starts) and pass the
    signal on to the pool's processes, whose trainers checkpoint and report "interrupted"; then
    KeyboardInterrupt, as with the local backend, instead of dying and leaving the workers training on."""

    def __init__(self, pool, stop):
        self.pool, self.stop, self.terminated = pool, stop, False

    def _on_sigterm(self, signum, frame) -> None:
        self.stop.set()
        self.terminated = True
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.terminate()  # SIGTERM on POSIX
