"""What a reproduction entry is: a claim of a paper or seed, the configs that test it, and a check.

An `Entry` names its configs per scale (paths under the repository's `configs/`, each with a label),
how many seeds it runs by default, its pre-registered `tests` (written next to the claim, shown by
`iclab reproduce --list`), and two functions of the finished runs: `check` measures them into a `Verdict`
(the numbers the claim is about and the per-seed values the tests read; verdicts.py's `judge` then makes it
SUPPORTED, CONTRADICTED or INCONCLUSIVE) and `figure` draws the paper's figure.
`evaluate` (optional) adds evaluations a run needs beyond the one done after training (another prompt
length, the shifts, the loop sweep); it is called once per run and its outputs are files in the run, so
a second `iclab reproduce` reuses them.

A label may name a `Command` instead of a config: a function that writes its outputs into a directory
(the standalone experiments of `iclab dynamics` and `iclab demo`, which train no `iclab` config); its runs
are cached like trained ones, keyed on the function and its arguments.

A `Planned` entry is a claim whose capability another issue builds: `iclab reproduce --list` shows it as
not built.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iclab.config import Config
from iclab.files import read_jsonl
from iclab.reproduce.verdicts import Test, Verdict, equivalent, greater, less  # noqa: F401  (entries import here)
from iclab.stats import fmt_ci, mean_ci  # noqa: F401  (the entries take them from here)

PLATEAU = 0.2  # error at k=2d above which an in-context linear-regression model has not left the plateau


@dataclass(frozen=True)
class Command:
    """An entry's step that is a function, not a training config: `fn(out_dir, seed=s, **params)` writes its
    outputs (JSON, figures) into out_dir. `params` are part of the cache key."""

    fn: Callable[..., object]
    params: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.fn.__name__.removeprefix("run_")


@dataclass
class Run:
    label: str
    seed: int
    dir: Path
    cfg: Config | None  # None for a Command's run
    command: Command | None = None

    def json(self, name: str) -> dict:
        return json.loads((self.dir / name).read_text())

    @property
    def evaluation(self) -> dict:
        return self.json("eval.json")

    def metrics(self) -> list[dict]:
        return read_jsonl(self.dir / "metrics.jsonl")


Runs = dict[str, list[Run]]  # label -> one run per seed


@dataclass
class Entry:
    name: str
    source: str
    claim: str
    criterion: str
    configs: dict[str, dict[str, str | Command]]  # scale -> {label: config path (from the repository root) or Command}
    check: Callable[[Runs], Verdict]
    figure: Callable[[Runs, Path], None]
    seeds: dict[str, int] = field(default_factory=lambda: {"tiny": 5, "full": 3})
    minutes: dict[str, float] = field(default_factory=dict)  # expected wall time per scale (2 CPU cores / 1 GPU)
    overrides: dict[str, list[str]] = field(default_factory=dict)  # scale -> extra `key=value` for every config
    evaluate: Callable[[Run], None] | None = None
    built: bool = True
    tests: list[Test] = field(default_factory=list)  # the pre-registered tests that decide the verdict
    max_seeds: dict[str, int] = field(default_factory=dict)  # scale -> the most seeds `--adaptive` may run


@dataclass
class Planned:
    """A headline result whose capability is built by another issue."""

    name: str
    source: str
    claim: str
    issue: str
    built: bool = False


# --- small helpers the checks share ---------------------------------------------------------------------
def at(curve: dict, k: int) -> float:
    """The mean error at k in-context examples of an eval.json curve."""
    return float(curve["mean"][k])


def per_seed(values: list[float], digits: int = 3) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


def k2d(ev: dict) -> int:
    """k = 2d, or the last position when the prompt is shorter."""
    return min(2 * ev["n_dims"], ev["n_points"] - 1)


def mean_curve(evs: list[dict], key: str | None = None) -> list[float]:
    """Mean over seeds of the model's (key=None) or a baseline's error curve; None where a baseline is absent."""
    curves = [ev["model"]["mean"] if key is None else ev["baselines"][key]["mean"] for ev in evs]
    out = []
    for vals in zip(*curves):
        out.append(None if any(v is None for v in vals) else statistics.fmean(vals))
    return out


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def values_at(evs: list[dict], k: int, baseline: str | None = None) -> list[float]:
    """Per seed, the error at k of the model (baseline=None) or of a baseline, from eval.json records."""
    return [float(ev["model"]["mean"][k] if baseline is None else ev["baselines"][baseline]["mean"][k]) for ev in evs]
