"""Run a reproduction entry: train (or reuse) its runs, evaluate, check, draw, write the result and a report.

Runs live in OUT/runs/<config stem>-<digest>/seed<s>, the digest taken over the whole config except the
seed and the settings that do not change results (threads, progress bar, TensorBoard: the engine's
`VOLATILE`), so entries that share a config share its runs, and a config edited since gets new runs
instead of stale ones. The runs are jobs of the run engine (iclab/experiments): a finished run is reused,
an interrupted one resumed, a failed one reported after the others finished. Each entry writes
OUT/<name>/<scale>/result.json, figure.png and report.html.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import iclab
from iclab.config import Config, load_config
from iclab.errors import IclabError
from iclab.experiments import Job, run_many, wall_seconds
from iclab.experiments.jobs import VOLATILE
from iclab.files import write_json
from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Command, Entry, Planned, Run, Verdict
from iclab.reproduce.recheck import result_fields
from iclab.reproduce.verdicts import judge


class ReproduceError(IclabError, ValueError):
    pass


REPO = Path(iclab.__file__).resolve().parents[1]


def config_path(rel: str) -> Path:
    path = REPO / rel
    if not path.is_file():
        raise ReproduceError(
            f"{path} not found: `iclab reproduce` reads the configs of the repository it is installed "
            "from (pip install -e .)"
        )
    return path


def config_digest(cfg: Config) -> str:
    """Over the settings that differ from their defaults (so a key added to iclab later, at its default, keeps
    the digest and the runs), less the seed and the volatile settings."""
    from iclab.registry import OPTIMIZERS, TASKS

    data = cfg.model_dump(mode="json", exclude_defaults=True)
    data.pop("seed", None)
    # the options dicts are filled with every option's default: keep only the options set to something else
    for section, path, Options in (
        ("task", ("options",), TASKS.get(cfg.task.name).Options),
        ("training", ("optimizer", "options"), OPTIMIZERS.get(cfg.training.optimizer.name).Options),
    ):
        holder = data.get(section, {})
        for key in path[:-1]:
            holder = holder.get(key, {})
        if path[-1] in holder:
            try:
                defaults = Options().model_dump(mode="json")
            except ValueError:  # an options model with a required field: keep the whole dict
                continue
            holder[path[-1]] = {k: v for k, v in holder[path[-1]].items() if defaults.get(k, object()) != v}
    for section, key in VOLATILE:
        data.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def command_digest(cmd: Command) -> str:
    key = {"fn": f"{cmd.fn.__module__}.{cmd.fn.__qualname__}", "params": cmd.params}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def entries() -> list[Entry | Planned]:
    return [REPRODUCTIONS.get(n) for n in REPRODUCTIONS.names()]


def get_entry(name: str) -> Entry:
    entry = REPRODUCTIONS.get(name)
    if not entry.built:
        raise ReproduceError(f"reproduction '{name}' is not built yet ({entry.issue}); see `iclab reproduce --list`")
    return entry


def plan(
    entry: Entry, scale: str, seeds: int | None, out: Path, overrides: list[str] | None = None
) -> dict[str, list[Run]]:
    """The runs of an entry at a scale: label -> [Run per seed] (nothing is trained)."""
    if scale not in entry.configs:
        raise ReproduceError(f"reproduction '{entry.name}' has no '{scale}' scale; it has: {', '.join(entry.configs)}")
    n = seeds if seeds is not None else entry.seeds.get(scale, 1)
    if n < 1:
        raise ReproduceError(f"--seeds {n}: give at least 1")
    runs: dict[str, list[Run]] = {}
    for label, rel in entry.configs[scale].items():
        runs[label] = []
        if isinstance(rel, Command):
            if overrides:
                raise ReproduceError(
                    f"reproduction '{entry.name}': --set does not apply to '{label}', which is the "
                    f"function {rel.name} and not a config"
                )
            base = Path(out) / "runs" / f"{rel.name}-{command_digest(rel)}"
            runs[label] = [Run(label, s, base / f"seed{s}", None, rel) for s in range(n)]
            continue
        path = config_path(rel)
        for s in range(n):
            cfg = load_config(path, [f"seed={s}", *entry.overrides.get(scale, []), *(overrides or [])])
            run_dir = Path(out) / "runs" / f"{path.stem}-{config_digest(cfg)}" / f"seed{s}"
            runs[label].append(Run(label, s, run_dir, cfg))
    return runs


def _wall(run: Run) -> float:
    return wall_seconds(run.dir) or 0.0


def reproduce(
    name: str,
    scale: str = "tiny",
    seeds: int | None = None,
    out: Path = Path("runs/reproduce"),
    overrides: list[str] | None = None,
    workers: int = 1,
    report: bool = True,
    log=print,
) -> dict:
    entry = get_entry(name)
    out = Path(out)
    if workers < 1:
        raise ReproduceError(f"--workers {workers}: give at least 1")
    for p in [out, *out.parents]:  # a file where a directory is expected: refused before training
        if p.exists():
            if not p.is_dir():
                raise ReproduceError(f"--out {out}: {p} exists and is not a directory")
            break
    runs = plan(entry, scale, seeds, out, overrides)
    flat = [r for rs in runs.values() for r in rs]
    log(f"{entry.name} ({entry.source}), scale {scale}: {len(runs)} config(s) x {len(flat) // len(runs)} seed(s)")
    t0 = time.perf_counter()
    _train_all(flat, workers, log)
    for r in flat:
        if entry.evaluate is not None:
            entry.evaluate(r)
    verdict: Verdict = judge(entry.tests, entry.check(runs))
    dest = out / entry.name / scale
    dest.mkdir(parents=True, exist_ok=True)
    entry.figure(runs, dest / "figure.png")
    result = {
        "name": entry.name,
        "source": entry.source,
        "claim": entry.claim,
        "criterion": entry.criterion,
        "scale": scale,
        "seeds": len(flat) // len(runs),
        **result_fields(entry, verdict),
        "train_wall_s": round(sum(_wall(r) for r in flat), 1),  # the runs' own training + evaluation time
        "this_call_s": round(time.perf_counter() - t0, 1),
        "runs": {label: [str(r.dir) for r in rs] for label, rs in runs.items()},
    }
    write_json(dest / "result.json", result)
    from iclab.reproduce.plots import verdict_figure

    verdict_figure(result, dest / "verdict.png")  # each test's per-seed differences, interval and margin
    if report:
        from iclab.report import write_report

        write_report(
            [dest] + sorted({r.dir.parent for r in flat if r.cfg is not None}),
            dest / "report.html",
            title=f"iclab reproduce {entry.name} ({scale})",
        )
    log(f"{verdict.status} {entry.name}: {verdict.summary}")
    for line in [t["line"] for t in verdict.tests] + verdict.details:
        log(f"  {line}")
    return result


def _train_all(runs: list[Run], workers: int, log) -> None:
    """Commands in this process; trained runs through the engine (inline, or `workers` local processes)."""
    for r in runs:
        if r.command is not None:
            _run_command(r, log)
    jobs = [Job(_quiet(r.cfg), r.dir) for r in runs if r.command is None]
    results = run_many(jobs, backend="local" if workers > 1 else "inline", workers=workers, log=log)
    if any(res.state == "interrupted" for res in results):
        raise KeyboardInterrupt("interrupted")
    failed = [f"{res.run_dir}: {res.error}" for res in results if not res.finished]
    if failed:
        raise ReproduceError("runs failed (the others are kept): " + "; ".join(failed))


def _quiet(cfg: Config) -> Config:
    cfg = cfg.model_copy(deep=True)
    cfg.logging.progress = False
    return cfg


def _run_command(r: Run, log) -> None:
    """A Command's run; timing.json, written last, marks it finished (an interrupted one is redone)."""
    if (r.dir / "timing.json").is_file():
        log(f"  {r.dir}: finished, reused")
        return
    log(f"  {r.dir}: running {r.command.name}")
    t0 = time.perf_counter()
    r.command.fn(r.dir, seed=r.seed, **r.command.params)
    write_json(r.dir / "timing.json", {"wall_s": time.perf_counter() - t0})
