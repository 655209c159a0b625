"""Function classes for in-context learning. Importing this package registers every task."""

from iclab.tasks.base import TASKS, Task, TaskOptions, make_task, resolve_baselines
from iclab.tasks import linear, noisy, quadratic, relu, sparse, tree  # noqa: F401  (register the tasks)

__all__ = ["TASKS", "Task", "TaskOptions", "make_task", "resolve_baselines"]
