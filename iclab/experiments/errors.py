"""The one error of the run engine: a plan, grid, seed list, backend or option that cannot run."""

from __future__ import annotations

from iclab.errors import IclabError


class ExperimentError(IclabError, ValueError):
    """A request for many runs that cannot start (the message names the option and the value)."""


class GridError(ExperimentError):
    """A grid, seed or target specification that cannot be read."""
