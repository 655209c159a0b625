"""The benchmark specification (`configs/optbench/*.yaml`): workloads with a validation target and a step
budget, submissions with a hyperparameter search space, and the tuning protocol.

    name: default
    seed: 0            # seeds every trial's hyperparameters and its run seed (the suite is reproducible)
    trials: 3          # random tuning trials per study (AlgoPerf: 5)
    studies: 3         # independent studies per (submission, workload); the median over studies counts (AlgoPerf: 5)
    r_max: 4.0         # upper limit of the performance profile's integral (AlgoPerf: 4)
    rank_by: steps     # steps or seconds: the time the profiles and the score rank by (both are reported)
    workers: 2         # trials run at once
    workloads:
      NAME: {config: workloads/NAME.yaml, metric: val/accuracy, goal: max, target: 0.95}
                       # an iclab config (path relative to this file); its training.steps is the step budget;
                       # the metric is read from metrics.jsonl at every log step (logging.log_every)
    submissions:
      NAME:
        set: {training.optimizer.name: adamw, training.schedule: warmup_cosine}   # fixed config keys
        space:                                   # sampled per trial; a key is a dotted config key, an index into
          training.lr: {log_uniform: [1.0e-4, 1.0e-2]}                          # a list (betas.0), or
          training.optimizer.options.betas.0: {log_uniform: [0.02, 0.3], one_minus: true}   # 1 - the draw
          training.warmup_steps: {choice: [0.0, 0.05, 0.1], of_steps: true}   # round(fraction * training.steps)
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from iclab.config import validate
from iclab.config_files import ConfigError, apply_overrides, read_yaml


class OptbenchError(ConfigError):
    """A benchmark specification or directory that cannot be used (the message names the key or file)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dist(_Strict):
    """One hyperparameter's distribution: exactly one of log_uniform, uniform, choice."""

    log_uniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    choice: list[Any] | None = None
    one_minus: bool = Field(
        False, description="the value set is 1 - the draw (e.g. beta1 from (1 - beta1) log-uniform)"
    )
    of_steps: bool = Field(
        False,
        description="the draw is a fraction of training.steps; the value set is "
        "round(fraction * steps) (e.g. warmup steps)",
    )

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("log_uniform", "uniform", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of log_uniform, uniform, choice (got {given or 'none'})")
        lo_hi = self.log_uniform or self.uniform
        if lo_hi is not None and not lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"bounds {list(lo_hi)} must be [low, high] with low <= high")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError(f"log_uniform bounds {list(self.log_uniform)} must be > 0")
        if self.choice is not None and not self.choice:
            raise ValueError("choice must list at least one value")
        return self

    def sample(self, rng: np.random.Generator) -> Any:
        if self.log_uniform is not None:
            lo, hi = self.log_uniform
            v = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        elif self.uniform is not None:
            v = float(rng.uniform(*self.uniform))
        else:
            v = self.choice[int(rng.integers(len(self.choice)))]
        return 1.0 - v if self.one_minus else v


class WorkloadSpec(_Strict):
    config: str
    metric: str = Field(description="a key of metrics.jsonl, e.g. val/accuracy")
    goal: Literal["min", "max"] = Field(description="min: reached when metric <= target; max: when >= target")
    target: float
    description: str = ""


class SubmissionSpec(_Strict):
    set: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Dist] = Field(default_factory=dict)
    description: str = ""


class BenchSpec(_Strict):
    name: str = "optbench"
    seed: int = Field(0, ge=0)
    trials: int = Field(3, gt=0)
    studies: int = Field(3, gt=0)
    r_max: float = Field(4.0, gt=1.0)
    rank_by: Literal["steps", "seconds"] = "steps"
    workers: int = Field(2, gt=0)
    workloads: dict[str, WorkloadSpec]
    submissions: dict[str, SubmissionSpec]

    @model_validator(mode="after")
    def _nonempty(self):
        if not self.workloads or not self.submissions:
            raise ValueError("give at least one workload and one submission")
        return self


def load_spec(path: str | Path) -> tuple[BenchSpec, Path]:
    """The spec and the directory its workload config paths are relative to."""
    path = Path(path)
    try:
        data = read_yaml(path)
    except ConfigError as e:
        raise OptbenchError(str(e)) from None
    try:
        spec = BenchSpec.model_validate(data)
    except ValidationError as e:
        parts = [
            f"{'.'.join(str(p) for p in err['loc'])}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
            for err in e.errors()
        ]
        raise OptbenchError(f"invalid optbench spec {path}: " + "; ".join(parts)) from None
    for name, w in spec.workloads.items():
        if not (path.parent / w.config).is_file():
            raise OptbenchError(f"{path}: workloads.{name}.config: {path.parent / w.config} does not exist")
    return spec, path.parent


def stable_int(*parts: Any, bits: int = 31) -> int:
    """A deterministic non-negative integer of `parts` (SHA-256; Python's hash() is salted per process)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**bits)


def sample_hparams(sub: SubmissionSpec, *key: Any) -> dict[str, Any]:
    """One point of the submission's search space, from a generator seeded by `key` (bench seed, submission,
    workload, study, trial): the same key always gives the same point."""
    rng = np.random.default_rng(stable_int(*key, bits=63))
    return {name: dist.sample(rng) for name, dist in sub.space.items()}


def _set_path(data: dict, key: str, value: Any, where: str) -> None:
    node: Any = data
    parts = key.split(".")
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise OptbenchError(
                    f"{where}: {key}: {'.'.join(parts[:i])} is a list of {len(node)}; '{p}' is not an index in it"
                )
            if last:
                node[int(p)] = value
            else:
                node = node[int(p)]
        elif isinstance(node, dict):
            if last:
                node[p] = value
            else:
                node = node.setdefault(p, {})
        else:
            raise OptbenchError(f"{where}: {key}: '{'.'.join(parts[:i])}' is not a section")


def trial_config_data(base: dict, sub: SubmissionSpec, hparams: dict[str, Any], *, seed: int, where: str) -> dict:
    """The config dict of one trial: the workload's config, the submission's fixed keys, the optimizer's
    option defaults filled in (so `betas.0` has a list to index), then the sampled hyperparameters."""
    from iclab.registry import OPTIMIZERS

    data = copy.deepcopy(base)
    for k, v in sub.set.items():
        _set_path(data, k, v, where)
    opt = data.setdefault("training", {}).setdefault("optimizer", {})
    try:
        spec = OPTIMIZERS.get(opt.get("name", "adam"))
        opt["options"] = spec.Options(**opt.get("options", {})).model_dump(mode="json")
    except (ValueError, ValidationError) as e:
        raise OptbenchError(f"{where}: training.optimizer: {' '.join(str(e).split())[:300]}") from None
    for k, v in hparams.items():
        if sub.space[k].of_steps:
            v = int(round(float(v) * data["training"].get("steps", 1)))
        _set_path(data, k, v, where)
    data["seed"] = seed
    return data


def trial_config(base: dict, sub: SubmissionSpec, hparams: dict[str, Any], *, seed: int, where: str):
    """The validated `Config` of one trial (ConfigError names the key and the trial)."""
    data = trial_config_data(base, sub, hparams, seed=seed, where=where)
    try:
        return validate(data, where)
    except ConfigError as e:
        raise OptbenchError(str(e)) from None


def trial_hash(base: dict, sub: SubmissionSpec, hparams: dict[str, Any], seed: int) -> str:
    """12 hex digits of the SHA-256 of what a trial sets explicitly: the workload's config as written, the
    submission's fixed keys, the sampled hyperparameters and the seed; a trial's directory name. Defaults are
    left out on purpose, so a config key added to iclab later (with its default) does not orphan finished trials."""
    text = json.dumps({"config": base, "set": sub.set, "hparams": hparams, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_config_data(spec_dir: Path, w: WorkloadSpec, overrides: list[str] | None = None) -> dict:
    path = spec_dir / w.config
    try:
        return apply_overrides(read_yaml(path), list(overrides or []))
    except ConfigError as e:
        raise OptbenchError(str(e)) from None
