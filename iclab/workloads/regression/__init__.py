"""In-context regression of function classes (Garg et al. 2022): the function classes (functions/)
and the workload that trains and evaluates a model on them (workload.py)."""

from iclab.workloads.regression import functions  # noqa: F401  (register the function classes)
