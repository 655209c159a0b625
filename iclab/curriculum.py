"""Curricula: each of dims, points and loops follows a schedule, a pure function of the step.

shape=step (Garg et al.): value = min(end, start + inc * (step // interval)).
Any other shape is a function g: progress p in [0, 1] -> fraction in [0, 1]; with p = step / duration,
value = start + inc * floor(g(p) * ceil((end - start) / inc)), capped at end. A new shape is one
function plus `@SHAPES.register`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from iclab.registry import Registry

SHAPES: Registry[Callable[[float], float] | None] = Registry("curriculum shape")
SHAPES.register("step", help="Garg et al.: +inc every `interval` steps")(None)


@SHAPES.register("linear", help="value grows linearly with progress")
def linear(p: float) -> float:
    return p


@SHAPES.register("sqrt", help="fast early, the time spent on each level grows linearly")
def sqrt(p: float) -> float:
    return math.sqrt(p)


@SHAPES.register("cos", help="half cosine: slow at both ends, fast in the middle")
def cos(p: float) -> float:
    return (1 - math.cos(math.pi * p)) / 2


@SHAPES.register("log2", help="log2(1 + p): fastest early, each later level lasts longer")
def log2(p: float) -> float:
    return math.log2(1 + p)


@dataclass(frozen=True)
class Schedule:
    start: int
    end: int
    shape: str = "step"
    inc: int = 1
    interval: int = 2000
    duration: int = 1

    def __call__(self, step: int) -> int:
        if self.shape == "step":
            return min(self.end, self.start + self.inc * (step // self.interval))
        g = SHAPES.get(self.shape)
        levels = math.ceil((self.end - self.start) / self.inc)
        p = min(1.0, max(0.0, step / self.duration))
        return min(self.end, self.start + self.inc * math.floor(g(p) * levels + 1e-9))


class Constant:
    def __init__(self, value: int):
        self.value = value

    def __call__(self, step: int) -> int:
        return self.value


class Curriculum:
    """dims, points and loops at a given step; each falls back to the config's maximum."""

    def __init__(self, cfg):  # cfg: iclab.config.Config
        def make(sched, default):
            if sched is None:
                return Constant(default)
            return Schedule(sched.start, sched.end, sched.shape, sched.inc, sched.interval, sched.duration or cfg.training.steps)

        c = cfg.curriculum
        self.dims = make(c.dims, cfg.task.n_dims)
        self.points = make(c.points, cfg.task.n_points)
        self.loops = make(c.loops, cfg.model.loops)

    def at(self, step: int) -> dict[str, int]:
        return {"dims": self.dims(step), "points": self.points(step), "loops": self.loops(step)}
