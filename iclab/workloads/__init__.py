"""Workloads: what a model is trained on. Every task registers in `iclab.registry.TASKS`, which
imports the two families on first use:

    regression/   in-context learning of function classes (Garg et al.): prompts of (x, f(x)) points
    sequence/     token sequences: language modelling, sorting, modular arithmetic, multiple choice
"""

from __future__ import annotations

from iclab.registry import TASKS
from iclab.workloads.base import Workload


def make_workload(cfg, run_dir=None) -> Workload:
    """The workload of a config; `run_dir` (an existing run) lets it read what the run recorded, e.g.
    the tokenizer a language model was trained with."""
    entry = TASKS.get(cfg.task.name)
    if entry.family == "regression":
        from iclab.workloads.regression.workload import RegressionWorkload

        return RegressionWorkload(cfg)
    return entry(cfg, run_dir=run_dir)
