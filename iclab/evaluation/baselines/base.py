"""The baseline registry, declared options, and the entries of `eval.baselines`.

A baseline is a function `fn(xs, ys, **options) -> preds`: xs (B, n, d), ys (B, n) -> (B, n), where the
prediction at position i uses only the points before i (position 0 predicts 0), mirroring what a causal
model sees. Its options are a pydantic model (`fn.Options`), so a typo in a config is an error naming it.
Expensive per-prompt baselines take `positions`: the prediction is computed only there and is NaN elsewhere
(evaluation then reports those positions as null).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from iclab.registry import BASELINES

Baseline = Callable[..., torch.Tensor]


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PositionsOptions(NoOptions):
    positions: list[int] | None = Field(
        None, description="fit only at these positions (0-based: i = number of in-context examples); NaN elsewhere"
    )

    @field_validator("positions")
    @classmethod
    def _check_positions(cls, v):
        if v is not None:
            if not v:
                raise ValueError("positions must not be empty (leave it out for all positions)")
            if min(v) < 0:
                raise ValueError(f"positions must be >= 0, got {min(v)}")
            v = sorted(set(v))
        return v


def register(name: str, Options: type[BaseModel] = NoOptions, help: str | None = None):
    """Register `fn(xs, ys, **options)` under `name`, with its options declared by `Options`."""

    def deco(fn: Baseline) -> Baseline:
        fn.Options = Options
        return BASELINES.register(name, help)(fn)

    return deco


def options_of(name: str) -> type[BaseModel]:
    return getattr(BASELINES.get(name), "Options", NoOptions)


def positions_or_all(positions: list[int] | None, n: int) -> list[int]:
    """The positions to compute for prompts of n points; a position >= n is an error."""
    if positions is None:
        return list(range(n))
    if positions[-1] >= n:
        raise ValueError(f"baseline option positions={positions} has a position >= the {n} points of a prompt")
    return positions


def _format_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


_NOT_IN_LABEL = {"positions", "n_jobs"}  # where and how fast a baseline runs, not what it computes


def default_label(name: str, options: dict[str, Any]) -> str:
    """'lasso' or 'lasso(alpha=0.1)': the name and the options the user gave (where and how fast it runs left out)."""
    shown = {k: v for k, v in options.items() if k not in _NOT_IN_LABEL}
    if not shown:
        return name
    return f"{name}(" + ",".join(f"{k}={_format_value(v)}" for k, v in shown.items()) + ")"


def check_entry(entry: Any) -> str | dict:
    """Validate one `eval.baselines` entry: a registered name, or a mapping {name, options, label}.
    Returns the name, or the mapping with its options filled in (defaults included) and its label."""
    if isinstance(entry, str):
        BASELINES.get(entry)
        return entry
    if isinstance(entry, BaselineEntry):
        entry = entry.model_dump()
    if not isinstance(entry, dict):
        raise ValueError(f"a baseline is a name or a mapping {{name, options, label}}, not {entry!r}")
    unknown = set(entry) - {"name", "options", "label"}
    if unknown:
        raise ValueError(f"baseline entry {entry!r}: unknown key(s) {sorted(unknown)}; valid: name, options, label")
    if "name" not in entry:
        raise ValueError(f"baseline entry {entry!r} has no name")
    name, given = entry["name"], entry.get("options") or {}
    Options = options_of(name)
    if not isinstance(given, dict):
        raise ValueError(f"baseline '{name}': options must be a mapping, not {given!r}")
    try:
        opts = Options(**given).model_dump(mode="json")
    except ValidationError as e:
        valid = ", ".join(Options.model_fields) or "none"
        problems = "; ".join(
            (
                f"unknown option '{err['loc'][0]}'"
                if err["type"] == "extra_forbidden"
                else f"option '{'.'.join(map(str, err['loc']))}': {err['msg']}"
            )
            for err in e.errors()
        )
        raise ValueError(f"baseline '{name}': {problems} (valid options: {valid})") from None
    label = entry.get("label") or default_label(name, given)
    return {"name": name, "options": opts, "label": label}


class BaselineEntry(BaseModel):
    """One baseline of an evaluation, as resolved from a name or a mapping."""

    model_config = ConfigDict(extra="forbid")
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None


@dataclass
class ResolvedBaseline:
    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def positions(self) -> list[int] | None:
        return self.options.get("positions")

    def __call__(self, xs: torch.Tensor, ys: torch.Tensor, task=None) -> torch.Tensor:
        fn = BASELINES.get(self.name)
        if getattr(fn, "needs_task", False):  # e.g. memorization: it needs the task's training pool
            return fn(xs, ys, task=task, **self.options)
        return fn(xs, ys, **self.options)


def check_positions(resolved: list[ResolvedBaseline], n_points: int) -> None:
    """Every baseline's `positions` must lie inside prompts of n_points points."""
    for b in resolved:
        if b.positions and b.positions[-1] >= n_points:
            raise ValueError(
                f"baseline '{b.label}': positions {b.positions} must be < the {n_points} points of an "
                "evaluation prompt (0-based)"
            )


def resolve(entries) -> list[ResolvedBaseline]:
    """Entries of `eval.baselines` (names or mappings) -> callables keyed by unique labels."""
    out: list[ResolvedBaseline] = []
    for e in entries:
        c = check_entry(e)
        if isinstance(c, str):
            rb = ResolvedBaseline(c, c, options_of(c)().model_dump(mode="json"))
        else:
            rb = ResolvedBaseline(c["label"], c["name"], c["options"])
        if any(r.label == rb.label for r in out):
            raise ValueError(f"baseline label '{rb.label}' appears twice; give each entry its own label")
        out.append(rb)
    return out


def resolve_baselines(task, explicit: list | None) -> list:
    """The baselines of an evaluation: `eval.baselines` when set, else the task's `default_baselines`
    (plus `memorization` for a task with a training pool). Default names that are not registered are
    skipped, so a task may name a baseline that lives in an optional part of iclab."""
    if explicit is not None:
        return list(explicit)
    names = list(task.default_baselines) + (["memorization"] if task.has_pool else [])
    return [b for b in names if b in BASELINES]


def check_entries(entries: list) -> list:
    """`eval.baselines` as the config schema checks it: each entry (name or mapping, its options filled in),
    and labels unique. Registered as BASELINES.check("entries") so config.py needs no import of this layer."""
    checked = [check_entry(e) for e in entries]
    resolve(checked)  # unique labels
    return checked


BASELINES.set_check("entries", check_entries)
