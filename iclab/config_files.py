"""Reading configs: YAML files and `section.key=value` overrides, the one-line error of an invalid config
(with a close known key for a mistyped one), and warnings about schedules that do not run as named. The
schema itself is iclab/config.py, which calls these."""

from __future__ import annotations

import difflib
import typing
import warnings
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from iclab.errors import IclabError
from iclab.registry import OPTIMIZERS


class ConfigError(IclabError, ValueError):
    """A config that cannot run; the message names the key and the problem."""


class ScheduleWarning(UserWarning):
    """A learning-rate schedule that runs but not as its name says (all warmup, a decay that never happens)."""


def warn_schedule(t) -> None:
    """Warn, with the numbers, about a schedule whose warmup or decay does not happen as configured
    (`t`: the TrainingConfig)."""
    W, T = t.warmup_steps, t.steps
    if t.schedule == "constant":
        if W and not OPTIMIZERS.get(t.optimizer.name).schedule_free:
            warnings.warn(
                f"training.warmup_steps={W} has no effect with training.schedule=constant (the lr is constant from "
                "step 0); choose a schedule with warmup (warmup_cosine, warmup_stable_decay, linear_decay, "
                "inverse_sqrt) or set training.warmup_steps=0",
                ScheduleWarning,
                stacklevel=2,
            )
        return
    if W >= T:
        warnings.warn(
            f"training.warmup_steps={W} >= training.steps={T}: the whole run is warmup and the "
            f"{t.schedule} schedule never decays; lower training.warmup_steps (e.g. {max(1, T // 10)})",
            ScheduleWarning,
            stacklevel=2,
        )
    elif t.schedule == "warmup_stable_decay":
        decay = max(1, round(t.decay_fraction * T))
        if W > T - decay:
            warnings.warn(
                f"training.warmup_steps={W} runs into the decay of the last {decay} steps "
                f"(decay_fraction={t.decay_fraction} of training.steps={T}): the lr never holds its peak",
                ScheduleWarning,
                stacklevel=2,
            )
    elif t.schedule in ("warmup_cosine", "linear_decay") and t.min_lr_ratio == 1.0:
        warnings.warn(
            f"training.min_lr_ratio=1.0: the {t.schedule} schedule never decays (the lr stays at its peak)",
            ScheduleWarning,
            stacklevel=2,
        )


def _section_fields(root, loc: tuple) -> list[str]:
    """The keys known at the section that `loc` (a validation error's location, without the key) points to."""
    model: Any = root
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        candidates = [a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(getattr(model, "model_fields", {}))


def _did_you_mean(root, loc: tuple) -> str:
    if not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), _section_fields(root, loc[:-1]), n=1, cutoff=0.6)
    return f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?" if close else ""


def format_validation_error(err: ValidationError, source: str, root) -> str:
    """One line naming every bad key of a config (`root`: the schema's top model), with a close known key
    for an unknown one."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(root, tuple(e["loc"]))
        lines.append(
            f"{loc}: {msg}"
            + (
                f" (got {e['input']!r})"
                if e["type"] not in ("extra_forbidden", "missing") and not isinstance(e.get("input"), dict)
                else ""
            )
        )
    return f"invalid config {source}: " + "; ".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value (e.g. training.lr=3e-4)")
    key, raw = item.split("=", 1)
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{item}': value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for p in path[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
            node = nxt
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path} is a directory; a config file (YAML) is expected here"
            + (" (it is a run directory: its config is config.yaml)" if (path / "config.yaml").is_file() else "")
        )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is None:
        raise ConfigError(
            f"config file {path} is empty (write at least the keys you change; an empty file would "
            "silently run every default, a paper-scale 500k-step run)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(data).__name__}")
    return data
