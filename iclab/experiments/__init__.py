"""One engine for many runs: a job is (config, run directory); the engine trains it, resumes an interrupted
run, reuses a finished one of the same config and records a failure, through one of five backends.

    jobs.py        Job, JobResult, execute_job (train / resume / reuse / record failure), run states
    backends.py    run_many(jobs, backend="inline" | "local" | "pool" | "ray" | "slurm", workers, log, options)
    pool.py        the pool backend: persistent worker processes, SIGTERM passed on to them
    relay.py       SigtermRelay: this process's SIGTERM passed on to a backend's workers
    grid.py        --grid axes and their product, compare's config axis, --seeds, --target, a point's config
    metrics.py     metrics.jsonl of a run: the training clock and the one time-to-target
    throughput.py  the one step-throughput timer (iclab bench, reproduce's speed claims)
    plots.py       per-seed dots around a mean and its interval

Layer: above `runs` (a run directory), below the tools that run many: `iclab compare` (a sweep over a
config axis), `iclab sweep`, `iclab reproduce`, `iclab optbench`. From Python:

    from iclab.experiments import Job, run_many
    results = run_many([Job(cfg, Path("runs/x/seed0")), ...], backend="local", workers=None)
    # -> [JobResult(run_dir, state: "done" | "reused" | "failed" | "interrupted", error, wall_s)], in order
"""

from iclab.experiments.backends import BACKENDS, check_backend, run_many
from iclab.experiments.errors import ExperimentError, GridError
from iclab.experiments.grid import Point, config_axis, expand, parse_grid, parse_seeds, parse_target, point_config
from iclab.experiments.jobs import Job, JobResult, execute_job, is_done, run_state, wall_seconds
from iclab.experiments.metrics import TargetHit, read_metrics, time_to_target, training_clock

__all__ = [
    "BACKENDS",
    "ExperimentError",
    "GridError",
    "Job",
    "JobResult",
    "Point",
    "TargetHit",
    "check_backend",
    "config_axis",
    "execute_job",
    "expand",
    "is_done",
    "parse_grid",
    "parse_seeds",
    "parse_target",
    "point_config",
    "read_metrics",
    "run_many",
    "run_state",
    "time_to_target",
    "training_clock",
    "wall_seconds",
]
