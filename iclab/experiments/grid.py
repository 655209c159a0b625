"""Grid x seeds: parse `--grid key=v1,v2` and `--seeds`, expand the product, name every point.

A grid axis is one config key (dotted, as in overrides) with comma-separated values; each value is read
as YAML, like an override (`1e-3` is a float, `[4,2,2]` a list: commas inside brackets or braces do not
split). Several axes form their product, in the order given. A point's name joins `key=value` for every
axis with `,` (the value as typed, characters other than letters, digits and `._+-=` replaced by `_`),
e.g. `training.lr=1e-3,model.n_layer=2`; no axes: `base`. Every run is `OUT/<point>/seed<s>`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from iclab.config import Config, ConfigError, load_config
from iclab.experiments.errors import GridError


@dataclass(frozen=True)
class Axis:
    key: str
    raw: tuple[str, ...]  # values as typed
    values: tuple  # values as read (YAML)


@dataclass
class Point:
    name: str
    overrides: list[str]  # key=value, applied after the sweep's own --set overrides
    values: dict = field(default_factory=dict)  # key -> value (as read)
    config: Path | None = None  # on a config axis (`iclab compare`): the point's own config file


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets/braces/quotes."""
    parts, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if depth != 0 or quote:
        raise GridError(f"unbalanced brackets or quotes in {text!r}")
    parts.append("".join(cur))
    return parts


def parse_axis(spec: str) -> Axis:
    if "=" not in spec:
        raise GridError(f"--grid {spec!r}: use key=v1,v2 (e.g. training.lr=1e-3,3e-3)")
    key, raw = spec.split("=", 1)
    key = key.strip()
    if not key or any(not p or not re.fullmatch(r"[A-Za-z0-9_]+", p) for p in key.split(".")):
        raise GridError(f"--grid {spec!r}: {key!r} is not a config key (dotted, e.g. training.lr)")
    if key == "seed":
        raise GridError(f"--grid {spec!r}: seeds are given with --seeds")
    try:
        items = [v.strip() for v in _split_top(raw)]
    except GridError as e:
        raise GridError(f"--grid {spec!r}: {e}") from None
    if not raw.strip() or any(v == "" for v in items):
        raise GridError(f"--grid {spec!r}: empty value (write key=v1,v2,...)")
    if len(set(items)) != len(items):
        raise GridError(f"--grid {spec!r}: a value is repeated")
    values = []
    for v in items:
        try:
            val = yaml.safe_load(v)
        except yaml.YAMLError:
            raise GridError(f"--grid {spec!r}: value {v!r} is not valid YAML") from None
        if isinstance(val, str):  # YAML 1.1 reads 1e-3 as a string; the config (pydantic) reads it as a number
            try:
                val = float(val)
            except ValueError:
                pass
        values.append(val)
    return Axis(key, tuple(items), tuple(values))


def parse_grid(specs: list[str]) -> list[Axis]:
    axes = [parse_axis(s) for s in specs or []]
    keys = [a.key for a in axes]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise GridError(f"--grid: key {sorted(dup)[0]!r} is given twice (put all its values in one --grid)")
    return axes


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", text)


def expand(axes: list[Axis]) -> list[Point]:
    """The product of the axes, first axis slowest."""
    if not axes:
        return [Point("base", [], {})]
    points = []
    for combo in itertools.product(*[list(zip(a.raw, a.values)) for a in axes]):
        name = ",".join(f"{a.key}={_clean(raw)}" for a, (raw, _) in zip(axes, combo))
        points.append(
            Point(
                name,
                [f"{a.key}={raw}" for a, (raw, _) in zip(axes, combo)],
                {a.key: v for a, (_, v) in zip(axes, combo)},
            )
        )
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        clash = next(n for n in names if names.count(n) > 1)
        raise GridError(f"--grid: two points get the same directory name {clash!r}; write the values differently")
    return points


def config_axis(paths: list[Path]) -> list[Point]:
    """`iclab compare`'s axis: one point per config file, named by its stem (`<parent>_<stem>` for every
    point when two stems clash)."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    names = stems if len(set(stems)) == len(stems) else [f"{p.parent.name}_{p.stem}" for p in paths]
    return [Point(n, [], {"config": str(p)}, config=p) for n, p in zip(names, paths)]


def point_config(point: Point, seed: int, config: Path | None = None, overrides: list[str] | None = None) -> Config:
    """The config of one run: the point's own file (a config axis) or `config`, then the common `overrides`,
    the point's and `seed=<seed>`. A grid point whose config does not load is named in the error."""
    try:
        return load_config(point.config or config, list(overrides or []) + point.overrides + [f"seed={seed}"])
    except ConfigError as e:
        if point.config is not None:
            raise
        raise ConfigError(f"grid point {point.name}: {e}") from None


def parse_seeds(spec: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0-4' -> [0..4]; '1,5,7' -> [1, 5, 7]: distinct non-negative seeds, at least one."""
    try:
        if "-" in spec:
            a, b = spec.split("-", 1)
            seeds = list(range(int(a), int(b) + 1))
        elif "," in spec:
            seeds = [int(x) for x in spec.split(",")]
        else:
            seeds = list(range(int(spec)))
    except ValueError:
        raise GridError(f"--seeds {spec!r}: use a count (3), a range (0-4) or a list (1,5,7)") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise GridError(f"--seeds {spec!r}: give distinct non-negative seeds, e.g. 0-4")
    return seeds


def parse_target(spec: str | None) -> tuple[str, str, float] | None:
    """'loss<=0.1' -> ('loss', '<=', 0.1); also >=."""
    if spec is None:
        return None
    m = re.fullmatch(r"\s*([A-Za-z0-9_./-]+)\s*(<=|>=)\s*([-+0-9.eE]+|inf)\s*", spec)
    if not m:
        raise GridError(
            f"--target {spec!r}: use METRIC<=VALUE or METRIC>=VALUE with a metrics.jsonl key, e.g. loss<=0.05"
        )
    try:
        value = float(m.group(3))
    except ValueError:
        raise GridError(f"--target {spec!r}: {m.group(3)!r} is not a number") from None
    return m.group(1), m.group(2), value
