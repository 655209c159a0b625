"""`iclab sweep`: a config over a grid x seeds, run through a backend, aggregated into one table.

    OUT/sweep.json                 the plan: config, grid, seeds, overrides, target, every point and its runs
    OUT/<point>/seed<s>/           one run directory each (iclab/runs.py); OUT/<point>/seed<s>.log: its output
    OUT/table.md, table.csv, table.json, table.png    the aggregate (iclab/sweep/aggregate.py)

Running the same sweep again does no work twice (finished runs are reused, interrupted ones resume, failed
ones are retried); `status(OUT)` reads every run's state without starting anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from iclab.experiments import (
    ExperimentError,
    GridError,
    Job,
    Point,
    check_backend,
    expand,
    parse_grid,
    parse_target,
    point_config,
    read_metrics,
    run_many,
    run_state,
)
from iclab.experiments.jobs import failure
from iclab.experiments.reference import check_reference, vs_reference
from iclab.files import write_json, write_text
from iclab.sweep import aggregate as agg

PLAN = "sweep.json"


class SweepError(ExperimentError):
    """A sweep directory that cannot be read or written; the message names it."""


def plan(
    config: Path,
    grid: list[str],
    seeds: list[int],
    out: Path,
    overrides: list[str] | None = None,
    target: str | None = None,
) -> dict:
    """Check everything (grid syntax, every point's config) before any run; return the plan."""
    axes = parse_grid(grid)
    parse_target(target)
    if not seeds:
        raise GridError("--seeds: give at least one seed")
    points = []
    for p in expand(axes):
        runs = {}
        for s in seeds:
            point_config(p, s, config, overrides)  # every run's config is checked before any run
            runs[str(s)] = f"{p.name}/seed{s}"
        points.append({"name": p.name, "overrides": p.overrides, "values": p.values, "runs": runs})
    return {
        "config": str(config),
        "grid": list(grid or []),
        "seeds": list(seeds),
        "overrides": list(overrides or []),
        "target": target,
        "points": points,
    }


def jobs_of(pl: dict, out: Path) -> list[tuple[dict, str, Job]]:
    res = []
    for p in pl["points"]:
        for s, rel in p["runs"].items():
            cfg = point_config(Point(p["name"], p["overrides"]), int(s), pl["config"], pl["overrides"])
            res.append((p, s, Job(cfg, Path(out) / rel)))
    return res


def run_sweep(
    config: Path,
    grid: list[str],
    seeds: list[int],
    out: Path,
    overrides: list[str] | None = None,
    backend: str = "local",
    workers: int | None = None,
    target: str | None = None,
    log=print,
    options: dict | None = None,
    reference: str | None = None,
) -> dict:
    """Plan, run what is missing, aggregate. Returns {"rows", "results", "plan"}. Every argument and the
    backend are checked before OUT is created. `reference`: a grid point's name; the table adds each point's
    paired difference to it in the main metric (iclab/experiments/reference.py)."""
    out = Path(out)
    check_backend(backend, workers)
    pl = plan(config, grid, seeds, out, overrides, target)
    check_reference(reference, [p["name"] for p in pl["points"]])
    pl["reference"] = reference
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / PLAN, pl)
    jobs = jobs_of(pl, out)
    results = run_many([j for _, _, j in jobs], backend=backend, workers=workers, log=log, options=options)
    rows = summarize(out, pl)
    return {"rows": rows, "results": results, "plan": pl}


def load_plan(out: Path) -> dict:
    path = Path(out) / PLAN
    if not path.is_file():
        raise SweepError(f"{out} is not a sweep directory (no {PLAN})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SweepError(f"{path} is not valid JSON: {e}") from None


def summarize(out: Path, pl: dict | None = None) -> list[dict]:
    """Aggregate the finished runs of the sweep in `out`; write table.md/.csv/.json/.png."""
    from iclab.runs import load_run_config
    from iclab.workloads import make_workload

    out = Path(out)
    pl = pl or load_plan(out)
    target = parse_target(pl.get("target"))
    points, curves = [], {}
    for p in pl["points"]:
        runs, wl = {}, None
        for s, rel in p["runs"].items():
            run = out / rel
            if run_state(run) != "done":
                runs[int(s)] = None
                continue
            wl = wl or make_workload(load_run_config(run), run)  # the seeds differ in nothing a workload reads
            runs[int(s)] = agg.run_summary(run, wl, target)
            curves.setdefault(p["name"], []).append([(r["step"], r["loss"]) for r in read_metrics(run) if "loss" in r])
        points.append({"name": p["name"], "values": p["values"], "runs": runs})
    rows = agg.aggregate(points, target)
    if pl.get("reference") is not None and any(r["n_done"] for r in rows):
        main = agg.metric_names(rows)[0]
        by_seed = {p["name"]: {s: r[main] for s, r in p["runs"].items() if r is not None and main in r} for p in points}
        for row, d in zip(rows, (vs_reference(by_seed, pl["reference"])[p["name"]] for p in points)):
            row["vs_reference"] = None if d is None else {**d, "metric": main}
    write_json(
        out / "table.json",
        {
            "config": pl["config"],
            "grid": pl["grid"],
            "seeds": pl["seeds"],
            "overrides": pl["overrides"],
            "target": pl.get("target"),
            "reference": pl.get("reference"),
            "points": rows,
        },
    )
    write_text(out / "table.csv", agg.to_csv(rows, target))
    write_text(out / "table.md", agg.table(rows, target))
    if any(r["n_done"] for r in rows):
        agg.plot(rows, curves, out / "table.png", target)
    return rows


def status(out: Path) -> list[dict]:
    """Every run of the sweep: point, seed, state (done/running/failed/interrupted/pending), detail."""
    out = Path(out)
    pl = load_plan(out)
    res = []
    for p in pl["points"]:
        for s, rel in p["runs"].items():
            run = out / rel
            state = run_state(run)
            detail = ""
            if state == "failed":
                detail = (failure(run) or {}).get("error", "")
            elif state in ("running", "interrupted"):
                recs = read_metrics(run)
                if recs:
                    detail = f"step {recs[-1]['step']} logged"
            res.append({"point": p["name"], "seed": int(s), "run": str(run), "state": state, "detail": detail})
    return res


def status_table(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines = [
        f"{r['state']:<11} {r['point']}/seed{r['seed']}" + (f"  {r['detail']}" if r["detail"] else "") for r in rows
    ]
    return "\n".join(lines) + "\n" + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" (of {len(rows)})\n"
