"""Function classes for in-context learning. Importing this package registers every task."""

from iclab.tasks.base import TASKS, Task, make_task
from iclab.tasks import linear  # noqa: F401  (registers linear_regression)

__all__ = ["TASKS", "Task", "make_task"]
