"""Classification workloads (AlgoPerf-style small problems for `iclab optbench`): a feed-forward network
on a fixed dataset. Importing this package registers the task `classification`."""

from iclab.workloads.classification import workload  # noqa: F401  (classification)
