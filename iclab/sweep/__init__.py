"""Many runs: a config over a grid x seeds through a backend (local process pool, Ray, SLURM/submitit).

The Python API other tools call (e.g. an optimizer benchmark running its trials):

    from iclab.sweep import Job, run_many
    results = run_many([Job(cfg, Path("runs/x/seed0")), ...], backend="local", workers=None)
    # -> [JobResult(run_dir, state: "done" | "reused" | "failed" | "interrupted", error, wall_s)], in order

`run_sweep` / `summarize` / `status` are `iclab sweep` (iclab/sweep/core.py).
"""

from iclab.sweep.backends import BACKENDS, SweepError, run_many
from iclab.sweep.grid import GridError, expand, parse_grid, parse_seeds, parse_target
from iclab.sweep.jobs import Job, JobResult, execute_job, is_done, run_state

__all__ = [
    "BACKENDS",
    "GridError",
    "Job",
    "JobResult",
    "SweepError",
    "execute_job",
    "expand",
    "is_done",
    "parse_grid",
    "parse_seeds",
    "parse_target",
    "run_many",
    "run_state",
    "run_sweep",
    "status",
    "summarize",
]


def __getattr__(name):  # core imports the config machinery: load it on first use
    if name in ("run_sweep", "status", "summarize"):
        from iclab.sweep import core

        return getattr(core, name)
    raise AttributeError(name)
