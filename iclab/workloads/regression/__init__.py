"""In-context regression of function classes (Garg et al. 2022): the function classes (functions/,
registry FUNCTIONS) and the workload that trains and evaluates a model on them (workload.py), which
registers one task per function class in TASKS."""

from iclab.workloads.regression import workload  # noqa: F401  (registers the tasks)
