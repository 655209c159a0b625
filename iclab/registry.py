"""Name -> object registries: every pluggable part of iclab (tasks, models, optimizers, curriculum
shapes, baselines, shifts) lives in one of these, so a new part is one file plus one decorator.

The registries are declared here, in a module that imports nothing of iclab, and each one fills itself
on first use by importing the packages that register its parts (`loaders`). So the config schema can
check a name against a registry without importing the parts (no import cycle config <-> models), and
a part registers with `@TASKS.register("name")` wherever it lives.

Every `TASKS` entry is a `Workload` class (iclab/workloads/base.py). The function classes of in-context
regression register in `FUNCTIONS`; the regression workload registers one task per function class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from iclab.errors import IclabError

T = TypeVar("T")


class UnknownNameError(IclabError, ValueError):
    """A name that is not in a registry; the message lists the valid names."""


class Registry(Generic[T]):
    def __init__(self, kind: str, *loaders: str):
        self.kind = kind
        self.loaders = loaders  # modules whose import registers the parts
        self._loaded = not loaders
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._checks: dict[str, Callable] = {}

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first: the loader's own imports may look names up
            for module in self.loaders:
                importlib.import_module(module)

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            doc = help or (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return obj

        return deco

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} '{name}'; valid: {', '.join(sorted(self._items))}")
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def set_check(self, name: str, fn: Callable) -> None:
        """A validation function that the package of the parts provides (e.g. the checks of `eval.baselines`
        entries), so the config schema calls it through the registry instead of importing a higher layer."""
        self._checks[name] = fn

    def check(self, name: str) -> Callable:
        """The validation function `name` (loads the parts first, which registers it)."""
        self._load()
        return self._checks[name]

    def describe(self) -> dict[str, str]:
        return {n: self._help[n] for n in self.names()}


# --- iclab's registries -------------------------------------------------------------------------------
# every task is a Workload class; the regression workload registers one per function class of FUNCTIONS
TASKS: Registry[Any] = Registry(
    "task", "iclab.workloads.regression", "iclab.workloads.sequence", "iclab.workloads.classification"
)
FUNCTIONS: Registry[Any] = Registry("function class", "iclab.workloads.regression.functions")
MODELS: Registry[Any] = Registry("model", "iclab.models")
OPTIMIZERS: Registry[Any] = Registry("optimizer", "iclab.training.optim")
SHAPES: Registry[Any] = Registry("curriculum shape", "iclab.training.curriculum")
BASELINES: Registry[Any] = Registry("baseline", "iclab.evaluation.baselines")
SHIFTS: Registry[Any] = Registry("shift", "iclab.evaluation.shifts")
REPRODUCTIONS: Registry[Any] = Registry("reproduction", "iclab.reproduce.entries")
