"""Function classes for in-context learning. Importing this package registers every class."""

from iclab.workloads.regression.functions import linear, noisy, quadratic, relu, sparse, tree  # noqa: F401  (register the classes)
from iclab.workloads.regression.functions.base import Task, TaskOptions, make_task

__all__ = ["Task", "TaskOptions", "make_task"]
