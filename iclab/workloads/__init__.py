"""Workloads: what a model is trained on and how it is scored. Every task is a `Workload` class in
`iclab.registry.TASKS`, which imports the families on first use:

    regression/      in-context learning of function classes (Garg et al.): prompts of (x, f(x)) points;
                     one task per function class (registry FUNCTIONS)
    sequence/        token sequences: language modelling, sorting, modular arithmetic, multiple choice
    classification/  a feed-forward network on a fixed dataset (iclab optbench)

The scoring functions they compose (pure: tensors in, numbers out) live one layer down, in iclab/evaluation.
"""

from __future__ import annotations

from iclab.registry import TASKS
from iclab.workloads.base import Workload


def make_workload(cfg, run_dir=None) -> Workload:
    """The workload of a config; `run_dir` (an existing run) lets it read what the run recorded, e.g.
    the tokenizer a language model was trained with."""
    return TASKS.get(cfg.task.name)(cfg, run_dir=run_dir)
