"""`iclab optbench`: plan, run and score an AlgoPerf-style benchmark (see iclab/optbench/__init__.py).

Directory layout (OUT = --out, default runs/optbench/<spec name>):

    OUT/spec.yaml                  the spec that ran (workload configs inlined), for the record
    OUT/trials/<workload>/<submission>/<hash>/   one iclab run per trial, named by its config's hash
    OUT/trials.csv|json            every trial: hyperparameters, state, steps/seconds to target, best metric
    OUT/time_to_target.csv|json|md per (workload, submission): median over studies of the fastest trial, in steps
                                   and seconds, and the share of trials that reached the target
    OUT/scores.json|md             performance ratios, the score of every submission (steps and seconds)
    OUT/profiles.png               rho(tau) per submission, by steps and by seconds
    OUT/curves.png                 per workload: the validation metric of every submission's fastest trial vs step
    OUT/summary.md                 the tables together
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iclab.files import write_json, write_text
from iclab.optbench.profiles import performance_ratios, profile, score
from iclab.optbench.spec import BenchSpec, base_config_data, sample_hparams, stable_int, trial_config, trial_hash

MEASURES = ("steps", "seconds")


@dataclass
class Trial:
    workload: str
    submission: str
    study: int
    trial: int
    seed: int
    hparams: dict[str, Any]
    config: Any  # iclab.config.Config
    run_dir: Path
    result: dict = field(default_factory=dict)  # filled by `collect`


# --- planning ---------------------------------------------------------------------------------------------
def plan(spec: BenchSpec, spec_dir: Path, out: Path, overrides: list[str] | None = None) -> list[Trial]:
    """Every trial of the benchmark: for each workload, submission, study and trial, a point of the search
    space (seeded by (seed, submission, workload, study, trial)) and a run seed shared by the submissions
    (seeded by (seed, workload, study, trial): common random numbers for data and init)."""
    trials = []
    for wname, w in spec.workloads.items():
        base = base_config_data(spec_dir, w, overrides)
        for sname, sub in spec.submissions.items():
            for study in range(spec.studies):
                for t in range(spec.trials):
                    hp = sample_hparams(sub, spec.seed, sname, wname, study, t)
                    seed = stable_int(spec.seed, wname, study, t)
                    where = f"optbench trial {wname}/{sname} study {study} trial {t}"
                    cfg = trial_config(base, sub, hp, seed=seed, where=where)
                    run_dir = out / "trials" / wname / sname / trial_hash(base, sub, hp, seed)
                    trials.append(Trial(wname, sname, study, t, seed, hp, cfg, run_dir))
    return trials


# --- running ------------------------------------------------------------------------------------------------
_STOP = {"flag": False}  # a pool worker that saw Ctrl-C starts no further trial


def _pool_worker_init(threads: int) -> None:
    import os
    import signal
    import warnings

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    warnings.filterwarnings("ignore")  # resume warnings etc. are reported through the job's state
    signal.signal(signal.SIGINT, lambda *_: _STOP.update(flag=True))  # between trials (the trainer has its own)


def _execute(spec: dict) -> dict:
    from iclab.sweep.jobs import execute_job

    if _STOP["flag"]:
        return {"run_dir": spec["run_dir"], "state": "interrupted", "error": "not started (interrupted)", "wall_s": 0.0}
    res = execute_job(spec)
    if res["state"] == "interrupted":
        _STOP["flag"] = True
    return res


def run_jobs(jobs: list, backend: str = "pool", workers: int = 2, threads: int = 1, log=print) -> list[dict]:
    """Run iclab.sweep Jobs. `inline`: in this process, one after another. `pool`: a persistent process pool (spawned once; every worker imports torch and
    iclab once, then trains trial after trial in-process via iclab.sweep.jobs.execute_job). Any other name is
    an iclab.sweep backend (local: a fresh process per trial; ray; slurm) through iclab.sweep.run_many."""
    if not jobs:
        return []
    if backend == "inline":  # one after another in this process (tests, debugging)
        from iclab.sweep.jobs import execute_job

        return [execute_job(j.spec(threads)) for j in jobs]
    if backend != "pool":
        from iclab.sweep import run_many

        res = run_many(jobs, backend=backend, workers=workers, log=log, options={"threads": threads})
        return [{"run_dir": str(r.run_dir), "state": r.state, "error": r.error, "wall_s": r.wall_s} for r in res]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    out: list[dict] = []
    done = 0
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=mp.get_context("spawn"),
        initializer=_pool_worker_init,
        initargs=(threads,),
    )
    try:
        futures = [pool.submit(_execute, j.spec(threads)) for j in jobs]
        for f in futures:
            r = f.result()
            done += 1
            if r["state"] == "failed":
                log(f"  [{done}/{len(jobs)}] {r['run_dir']}: failed: {r['error']}")
            elif done % 10 == 0 or done == len(jobs):
                log(f"  [{done}/{len(jobs)}] trials finished")
            out.append(r)
    except BaseException:  # Ctrl-C: the running trials checkpoint (they got the signal too); queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return out


def prepare_data(trials: list[Trial]) -> None:
    """Build each workload once in this process, so data every trial shares (a prepared corpus) is written
    once, before the workers start."""
    from iclab.workloads import make_workload

    seen = set()
    for t in trials:
        if t.workload not in seen:
            seen.add(t.workload)
            make_workload(t.config)


def run(
    trials: list[Trial],
    backend: str = "pool",
    workers: int = 2,
    threads: int = 1,
    retry_failed: bool = False,
    log=print,
) -> dict:
    """Run the trials that are not finished: finished ones (final weights) are reused, failed ones (failed.json:
    e.g. diverged) are kept as failed unless `retry_failed`, interrupted ones resume from their checkpoint with
    the config they started with (config.yaml; if it no longer loads, e.g. after a schema change, they restart)."""
    import shutil

    from iclab.config import ConfigError
    from iclab.runs import load_run_config
    from iclab.sweep import Job, is_done

    by_dir: dict[Path, Trial] = {}
    for t in trials:  # two submissions may sample the same config: one run serves both
        by_dir.setdefault(t.run_dir, t)
    todo, reused, failed = [], 0, 0
    for d, t in by_dir.items():
        if is_done(d, evaluate=False):
            reused += 1
        elif (d / "failed.json").is_file() and not retry_failed:
            failed += 1
        elif (d / "config.yaml").is_file():
            try:
                todo.append(Job(load_run_config(d), d, evaluate=False))
            except ConfigError:
                shutil.rmtree(d)  # an unfinished trial of a config this iclab cannot read: start it again
                todo.append(Job(t.config, d, evaluate=False))
        else:
            todo.append(Job(t.config, d, evaluate=False))
    log(
        f"optbench: {len(by_dir)} trial runs: {reused} finished (reused), {failed} failed before (kept), "
        f"{len(todo)} to run on {backend} with {workers} worker(s) x {threads} thread(s)"
    )
    t0 = time.perf_counter()
    if todo:
        prepare_data([by_dir[j.run_dir] for j in todo])
    results = run_jobs(todo, backend, workers, threads, log)
    states: dict[str, int] = {}
    for r in results:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return {
        "runs": len(by_dir),
        "reused": reused,
        "failed_before": failed,
        "ran": len(todo),
        "states": states,
        "wall_s": time.perf_counter() - t0,
    }


# --- reading results -----------------------------------------------------------------------------------------
def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def reached(value: float, goal: str, target: float) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return value <= target if goal == "min" else value >= target


def time_to_target(records: list[dict], metric: str, goal: str, target: float) -> dict:
    """The first logged evaluation at or past the target (no interpolation between evaluations): its step and
    its `train_seconds` (training time up to that step, without evaluation and checkpoint time; runs logged
    without it: the sum of interval lengths / steps_per_s, which includes evaluation time). inf if never."""
    seconds = 0.0
    prev = 0
    best = None
    for r in records:
        if "train_seconds" not in r:
            seconds += (r["step"] - prev) / max(r.get("steps_per_s", math.inf), 1e-12)
        prev = r["step"]
        v = r.get(metric)
        if v is None:
            continue
        if v == v:  # not NaN
            best = v if best is None else (min(best, v) if goal == "min" else max(best, v))
        if reached(v, goal, target):
            return {"reached": True, "steps": r["step"], "seconds": r.get("train_seconds", seconds), "best": best}
    return {"reached": False, "steps": math.inf, "seconds": math.inf, "best": best}


def trial_state(run_dir: Path) -> str:
    from iclab.sweep import run_state

    return run_state(run_dir, evaluate=False)


def collect(spec: BenchSpec, trials: list[Trial]) -> list[Trial]:
    """Fill every trial's result from its run directory (metrics.jsonl). A trial that failed (diverged) counts
    with what it logged before failing; one that has not finished counts as not reaching the target."""
    for t in trials:
        w = spec.workloads[t.workload]
        recs = read_metrics(t.run_dir)
        state = trial_state(t.run_dir)
        res = time_to_target(recs, w.metric, w.goal, w.target)
        if state not in ("done", "failed"):
            res = {"reached": False, "steps": math.inf, "seconds": math.inf, "best": res["best"]}
        last = recs[-1] if recs else {}
        t.result = {
            **res,
            "state": state,
            "final": last.get(w.metric),
            "last_step": last.get("step", 0),
            "train_seconds": last.get("train_seconds"),
        }
    return trials


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.inf


def aggregate(spec: BenchSpec, trials: list[Trial]) -> dict:
    """AlgoPerf's external tuning, for each measure (steps, seconds): per (workload, submission, study) the
    fastest trial that reached the target; per (workload, submission) the median over studies; then the
    performance ratios, profiles and scores across workloads."""
    table: dict[str, dict[str, dict]] = {w: {} for w in spec.workloads}
    for w in spec.workloads:
        for s in spec.submissions:
            mine = [t for t in trials if t.workload == w and t.submission == s]
            row = {"trials": len(mine), "reached": sum(t.result["reached"] for t in mine)}
            row["share_reached"] = row["reached"] / len(mine) if mine else 0.0
            for m in MEASURES:
                per_study = []
                for study in range(spec.studies):
                    ts = [t.result[m] for t in mine if t.study == study]
                    per_study.append(min(ts) if ts else math.inf)
                row[f"{m}_per_study"] = per_study
                row[m] = _median(per_study)
            bests = [t.result["best"] for t in mine if t.result["best"] is not None]
            goal = spec.workloads[w].goal
            row["best_metric"] = (min(bests) if goal == "min" else max(bests)) if bests else None
            table[w][s] = row
    out = {"table": table, "measures": {}}
    for m in MEASURES:
        times = {s: {w: table[w][s][m] for w in spec.workloads} for s in spec.submissions}
        ratios = performance_ratios(times)
        out["measures"][m] = {"ratios": ratios, "scores": {s: score(ratios[s], spec.r_max) for s in ratios}}
    return out


# --- reports ---------------------------------------------------------------------------------------------------
def _fmt(x: float, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}f}"


def trials_rows(trials: list[Trial]) -> list[dict]:
    rows = []
    for t in trials:
        rows.append(
            {
                "workload": t.workload,
                "submission": t.submission,
                "study": t.study,
                "trial": t.trial,
                "seed": t.seed,
                "run_dir": str(t.run_dir),
                "hparams": t.hparams,
                **t.result,
            }
        )
    return rows


def _jsonable(x):
    if isinstance(x, float) and math.isinf(x):
        return None  # JSON has no infinity: null = the target was not reached
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["inf" if isinstance(v, float) and math.isinf(v) else v for v in r])
    return buf.getvalue()


def ttt_markdown(spec: BenchSpec, agg: dict) -> str:
    subs = list(spec.submissions)
    lines = ["| workload (metric, target, budget) | " + " | ".join(subs) + " |", "|---|" + "---|" * len(subs)]
    for w, ws in spec.workloads.items():
        cells = []
        for s in subs:
            r = agg["table"][w][s]
            cells.append(f"{_fmt(r['steps'])} / {_fmt(r['seconds'], 1)} s ({r['reached']}/{r['trials']})")
        sign = "≤" if ws.goal == "min" else "≥"
        lines.append(
            f"| {w} ({ws.metric} {sign} {ws.target:g}, {agg['budgets'][w]} steps) | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def scores_markdown(spec: BenchSpec, agg: dict) -> str:
    rank = spec.rank_by
    other = "seconds" if rank == "steps" else "steps"
    sc = agg["measures"][rank]["scores"]
    lines = [f"| rank | submission | score ({rank}) | score ({other}) | workloads reached |", "|---|---|---|---|---|"]
    for i, s in enumerate(sorted(sc, key=lambda s: -sc[s]), 1):
        n = sum(math.isfinite(agg["table"][w][s][rank]) for w in spec.workloads)
        lines.append(
            f"| {i} | {s} | {sc[s]:.3f} | {agg['measures'][other]['scores'][s]:.3f} | {n}/{len(spec.workloads)} |"
        )
    return "\n".join(lines)


def ratios_markdown(spec: BenchSpec, agg: dict, measure: str) -> str:
    subs = list(spec.submissions)
    rat = agg["measures"][measure]["ratios"]
    lines = ["| workload | " + " | ".join(subs) + " |", "|---|" + "---|" * len(subs)]
    for w in spec.workloads:
        lines.append(f"| {w} | " + " | ".join(_fmt(rat[s][w], 2) for s in subs) + " |")
    return "\n".join(lines)


def plot_profiles(spec: BenchSpec, agg: dict, path: Path) -> Path:
    from iclab.evaluation.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    n = 400
    taus = [1 + (spec.r_max - 1) * i / n for i in range(n + 1)]
    for ax, m in zip(axes, MEASURES):
        rat, sc = agg["measures"][m]["ratios"], agg["measures"][m]["scores"]
        for i, s in enumerate(sorted(rat, key=lambda s: -sc[s])):  # wider lines first: overlapping ones stay visible
            ax.step(
                taus,
                profile(rat[s], taus),
                where="post",
                lw=max(1.2, 4.0 - 0.7 * i),
                alpha=0.85,
                label=f"{s} ({sc[s]:.3f})",
            )
        ax.set_xlim(1, spec.r_max)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"τ (ratio to the fastest, time in {'training steps' if m == 'steps' else 'training seconds'})")
        ax.set_title(f"time = {m}" + (" (ranking)" if m == spec.rank_by else ""), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="submission (score)", title_fontsize=8, loc="lower right")
    axes[0].set_ylabel("ρ(τ): share of workloads within τ of the fastest")
    fig.suptitle(
        f"optbench {spec.name}: performance profiles ({len(spec.workloads)} workloads, {spec.studies} studies x "
        f"{spec.trials} trials)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(spec: BenchSpec, trials: list[Trial], agg: dict, path: Path) -> Path:
    """Per workload, the metric vs step of each submission's fastest trial by steps (over all studies; if none
    reached the target, its trial with the best metric), the target dashed."""
    from iclab.evaluation.plots import plt

    ws = list(spec.workloads)
    cols = min(3, len(ws))
    rows = math.ceil(len(ws) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    colors = {s: f"C{i}" for i, s in enumerate(spec.submissions)}
    for ax, w in zip(axes.flat, ws):
        wspec = spec.workloads[w]
        for s in spec.submissions:
            mine = [t for t in trials if t.workload == w and t.submission == s and t.result.get("best") is not None]
            if not mine:
                continue
            sign = 1 if wspec.goal == "min" else -1
            t = min(mine, key=lambda t: (t.result["steps"], sign * t.result["best"]))
            recs = [r for r in read_metrics(t.run_dir) if r.get(wspec.metric) is not None]
            ax.plot(
                [r["step"] for r in recs],
                [r[wspec.metric] for r in recs],
                color=colors[s],
                lw=1.6,
                label=s + ("" if t.result["reached"] else " (not reached)"),
            )
        ax.axhline(wspec.target, color="k", ls="--", lw=1, label="target")
        ax.set_title(w, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(wspec.metric)
        if wspec.metric.endswith("loss") or wspec.metric.endswith("error"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ws) :]:
        ax.set_visible(False)
    fig.suptitle(f"optbench {spec.name}: each submission's fastest trial (by steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(spec: BenchSpec, trials: list[Trial], out: Path, run_info: dict | None = None) -> dict:
    """Write every table and figure into `out`; return the aggregate."""
    agg = aggregate(spec, trials)
    agg["budgets"] = {w: next(t.config.training.steps for t in trials if t.workload == w) for w in spec.workloads}
    rows = trials_rows(trials)
    write_json(out / "trials.json", _jsonable(rows))
    hp_keys = sorted({k for t in trials for k in t.hparams})
    write_text(
        out / "trials.csv",
        _csv(
            [
                "workload",
                "submission",
                "study",
                "trial",
                "seed",
                "state",
                "reached",
                "steps_to_target",
                "seconds_to_target",
                "best",
                "final",
                *hp_keys,
                "run_dir",
            ],
            [
                [
                    r["workload"],
                    r["submission"],
                    r["study"],
                    r["trial"],
                    r["seed"],
                    r["state"],
                    r["reached"],
                    r["steps"],
                    r["seconds"],
                    r["best"],
                    r["final"],
                    *[r["hparams"].get(k) for k in hp_keys],
                    r["run_dir"],
                ]
                for r in rows
            ],
        ),
    )
    write_text(
        out / "time_to_target.csv",
        _csv(
            [
                "workload",
                "metric",
                "goal",
                "target",
                "budget_steps",
                "submission",
                "steps",
                "seconds",
                "reached",
                "trials",
                "share_reached",
                "best_metric",
            ],
            [
                [
                    w,
                    spec.workloads[w].metric,
                    spec.workloads[w].goal,
                    spec.workloads[w].target,
                    agg["budgets"][w],
                    s,
                    r["steps"],
                    r["seconds"],
                    r["reached"],
                    r["trials"],
                    r["share_reached"],
                    r["best_metric"],
                ]
                for w in spec.workloads
                for s, r in agg["table"][w].items()
            ],
        ),
    )
    write_json(
        out / "time_to_target.json",
        _jsonable(
            {
                "workloads": {w: spec.workloads[w].model_dump() for w in spec.workloads},
                "budgets": agg["budgets"],
                "table": agg["table"],
            }
        ),
    )
    ttt_md = ttt_markdown(spec, agg)
    write_text(out / "time_to_target.md", ttt_md + "\n")
    write_json(
        out / "scores.json",
        _jsonable({"r_max": spec.r_max, "rank_by": spec.rank_by, **{m: agg["measures"][m] for m in MEASURES}}),
    )
    sc_md = scores_markdown(spec, agg)
    write_text(out / "scores.md", sc_md + "\n")
    plot_profiles(spec, agg, out / "profiles.png")
    plot_curves(spec, trials, agg, out / "curves.png")
    info = run_info or {}
    summary = [
        f"# optbench {spec.name}",
        "",
        f"{len(spec.workloads)} workloads x {len(spec.submissions)} submissions x {spec.studies} studies x "
        f"{spec.trials} trials = {len(trials)} trials (seed {spec.seed}); r_max = {spec.r_max:g}; ranked by "
        f"{spec.rank_by}.",
        "",
    ]
    if info:
        summary += [
            f"This invocation: {info.get('ran', 0)} trial runs trained, {info.get('reused', 0)} reused, "
            f"states {info.get('states', {})}, wall time {info.get('wall_s', 0):.0f} s.",
            "",
        ]
    summary += [
        "## Time to target",
        "",
        "Cell: median over studies of the fastest trial that reached the target, in steps / training seconds "
        "(each measure picks its own fastest trial; the time is that of the first logged evaluation at or past "
        "the target, training seconds exclude evaluations; ∞: not reached in the median study), and "
        "(trials that reached it / trials).",
        "",
        ttt_md,
        "",
        "## Score (area under the performance profile up to r_max, divided by r_max - 1)",
        "",
        sc_md,
        "",
        f"## Performance ratios ({spec.rank_by})",
        "",
        ratios_markdown(spec, agg, spec.rank_by),
        "",
        "Figures: profiles.png, curves.png. Every trial: trials.csv.",
    ]
    write_text(out / "summary.md", "\n".join(summary) + "\n")
    return agg


def spec_record(spec: BenchSpec, spec_dir: Path, overrides: list[str] | None = None) -> str:
    """The spec with each workload's config inlined (what ran, even if the files change later) and the --set
    overrides applied to every workload's config."""
    d = spec.model_dump(mode="json")
    d["overrides"] = list(overrides or [])
    for w, ws in spec.workloads.items():
        d["workloads"][w]["config_data"] = yaml.safe_load((spec_dir / ws.config).read_text())
    return yaml.safe_dump(d, sort_keys=False)
