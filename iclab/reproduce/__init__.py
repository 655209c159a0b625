"""`iclab reproduce`: the headline results of the seeds and papers, each one command that checks itself.

base.py: what an entry is; runner.py: train/reuse, evaluate, check, draw, report; entries/: one file each.
"""

from iclab.reproduce.base import Entry, Planned, Run, Verdict

__all__ = ["Entry", "Planned", "Run", "Verdict"]
