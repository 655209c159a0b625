"""Evaluation functions and reference baselines: pure scoring (a model or predictions and data in,
numbers out; some also write their record or figure). This package sits under the workloads, which
compose it (iclab/workloads/*/workload.py); it imports nothing of workloads, training or runs.

    regression.py      per-position error of a model and the baselines; error per loop iteration
    shifts.py          distribution shifts at test time (registry SHIFTS);  shift_eval.py: evaluation under one
    baselines/         least squares, k-NN, LASSO, trees, nets ... (registry BASELINES)
    multiple_choice.py ARC-style questions scored by log-likelihood
    ngram.py           n-gram baselines of language modelling
    plots.py           the figures of these records
"""

from __future__ import annotations

from iclab.errors import IclabError


class EvalError(IclabError, ValueError):
    """An evaluation that cannot run as asked (the message names the option or file)."""
