"""What many runs are compared on, read from each run's metrics.jsonl: the training clock and time to target.

Training clock at a logged record: its `train_seconds` (time spent in training steps only, logged by the
trainer) where the record has it; otherwise the clock of the previous record plus the interval since it
(steps) divided by the record's `steps_per_s` (an estimate that includes evaluation and checkpoint time;
a record without a positive steps_per_s adds nothing). Runs logged before `train_seconds` existed get the
estimate throughout.

Time to target (`time_to_target`): the first logged record whose metric is finite and at or past the
target (`<=` for a metric to minimize, `>=` to maximize); no interpolation between logged records, so a
target crossed between two records is read at the later one. Its step and its training clock; never
reached: step and seconds None. `best` is the best finite value logged up to the hit (or in the whole run
when the target is never reached). `iclab sweep --target` and `iclab optbench` both use this definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from iclab.files import read_jsonl


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of `run_dir`/metrics.jsonl (tolerant of a torn last line; [] when there is none)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def training_clock(records: list[dict]) -> list[float]:
    """The training clock (seconds) at each record (see the module docstring)."""
    clock, t, prev = [], 0.0, 0
    for r in records:
        sps = r.get("steps_per_s")
        if "train_seconds" in r:
            t = float(r["train_seconds"])
        elif isinstance(sps, (int, float)) and sps > 0:
            t += (r["step"] - prev) / sps
        prev = r["step"]
        clock.append(t)
    return clock


@dataclass(frozen=True)
class TargetHit:
    """When a run first reached a target: step and seconds (None when never), and the best value logged."""

    step: int | None
    seconds: float | None
    best: float | None

    @property
    def reached(self) -> bool:
        return self.step is not None


def meets(value, op: str, target: float) -> bool:
    """Whether a logged value is finite and at or past the target (op: "<=" or ">=")."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value <= target if op == "<=" else value >= target


def time_to_target(records: list[dict], metric: str, op: str, target: float) -> TargetHit:
    """The first logged record meeting `metric op target` (see the module docstring)."""
    if op not in ("<=", ">="):
        raise ValueError(f"op {op!r}: use '<=' or '>='")
    best = None
    for r, t in zip(records, training_clock(records)):
        v = r.get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            best = v if best is None else (min(best, v) if op == "<=" else max(best, v))
        if meets(v, op, target):
            return TargetHit(r["step"], t, best)
    return TargetHit(None, None, best)
