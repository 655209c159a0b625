"""`iclab sweep`: a config over a grid x seeds, run through the engine (iclab/experiments), in one table.

    core.py       plan (sweep.json), run_sweep, summarize, status
    aggregate.py  per point: every final metric as mean +- 95% CI over seeds, time to target; table and figure

The engine itself (jobs, backends, grid and seed parsing) is `iclab.experiments`.
"""

from iclab.sweep.core import SweepError, run_sweep, status, summarize

__all__ = ["SweepError", "run_sweep", "status", "summarize"]
