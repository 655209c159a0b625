"""Curricula: each of dims, points, loops and seq_len follows a schedule, a pure function of the step.

A schedule moves from `start` to `end` in `levels = ceil((end - start) / inc)` increments of `inc`, so it
takes levels + 1 values. A shape is one function `(step, schedule) -> increments made by that step` (a
float, rounded down); the value is `start + inc * floor(increments)`, capped at `end` (and never below
start).

Shapes (the seed-000 experiments lengthen the time a level is held as training goes on):

    step    +inc every `interval` steps (Garg et al.; Yang et al.; "linear" in seed 000).
            Every value is held `interval` steps; `end` is reached at step levels * interval.
    linear  the levels + 1 values share `duration` steps (default: the whole run) equally; `end` is
            reached at duration * levels / (levels + 1) and held to the end.
    sqrt    increments = (levels + 1) sqrt(step / duration): fast early, the hold time of value i grows
            linearly in i (value i is reached at duration * (i / (levels + 1))^2). Seed 000's sqrt.
    log     hold times grow geometrically: value i (0-based) is held interval * base^i steps, so value k
            is reached at interval * (base^k - 1) / (base - 1), i.e. k = floor(log_base(1 + step (base-1)/interval)).
            With base=2 ("log2" of seed 000) the end is reached only at interval * (2^levels - 1): for the
            seed's loops 5->20 (+2 / 500) that is step 127,500, after its 75k training steps, which is
            why its log2 model "never reached the maximum number of loops". base=1.1 reaches it early.
    cos     cyclic: the value follows start + (end - start) (1 - cos(2 pi step / interval)) / 2, from start
            (step 0) to end (step interval/2) and back (step interval), over and over; each of the
            levels + 1 values holds an equal band of the cosine's range. Seed 000's "cos" is this cycle
            with period 2 pi * interval / inc of its own interval.

A new shape is one function plus `@SHAPES.register("name")`; `iclab curriculum CONFIG --out png` draws
the schedule a config will follow before any training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from iclab.registry import SHAPES


@SHAPES.register("step", help="Garg et al.: +inc every `interval` steps (seed 000's 'linear')")
def step(t: int, s: Schedule) -> float:
    return t // s.interval


@SHAPES.register("linear", help="the values share `duration` steps equally")
def linear(t: int, s: Schedule) -> float:
    return (s.levels + 1) * t / s.duration


@SHAPES.register("sqrt", help="sqrt(step/duration): fast early, hold time grows linearly with the level")
def sqrt(t: int, s: Schedule) -> float:
    return (s.levels + 1) * math.sqrt(t / s.duration)


@SHAPES.register("log", help="level i held interval*base^i steps (seed 000's log2 with base=2)")
def log(t: int, s: Schedule) -> float:
    return math.log(1 + t * (s.base - 1) / s.interval, s.base)


@SHAPES.register("cos", help="cyclic: start -> end -> start every `interval` steps (seed 000's cos)")
def cos(t: int, s: Schedule) -> float:
    return (s.levels + 1) * (1 - math.cos(2 * math.pi * t / s.interval)) / 2


@dataclass(frozen=True)
class Schedule:
    start: int
    end: int
    shape: str = "step"
    inc: int = 1
    interval: int = 2000
    duration: int = 1
    base: float = 2.0

    @property
    def levels(self) -> int:
        return math.ceil((self.end - self.start) / self.inc)

    def __call__(self, t: int) -> int:
        k = min(self.levels, max(0, math.floor(SHAPES.get(self.shape)(t, self) + 1e-9)))
        return min(self.end, self.start + self.inc * k)


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
            return Schedule(
                sched.start,
                sched.end,
                sched.shape,
                sched.inc,
                sched.interval,
                sched.duration or cfg.training.steps,
                sched.base,
            )

        c = cfg.curriculum
        self.dims = make(c.dims, cfg.task.n_dims)
        self.points = make(c.points, cfg.task.n_points)
        self.loops = make(c.loops, cfg.model.loops)
        self.seq_len = make(c.seq_len, cfg.task.seq_len or 0)  # token workloads (0: the task's own length)

    def at(self, step: int) -> dict[str, int]:
        return {
            "dims": self.dims(step),
            "points": self.points(step),
            "loops": self.loops(step),
            "seq_len": self.seq_len(step),
        }
