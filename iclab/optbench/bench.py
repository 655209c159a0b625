"""`iclab optbench`: plan, run, collect and aggregate an AlgoPerf-style benchmark (see iclab/optbench/__init__.py);
the tables and figures are iclab/optbench/report.py.

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

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iclab.experiments import Job, is_done, read_metrics, run_many, run_state, time_to_target
from iclab.optbench.profiles import performance_ratios, score
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


# --- running ---------------------------------------------------------------------------------------------------
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
    """Run the trials that are not finished through the run engine (iclab/experiments; Ctrl-C stops it
    starting further trials): finished ones (final weights) are reused, failed ones (failed.json: e.g.
    diverged) are kept as failed unless `retry_failed`, interrupted ones resume from their checkpoint with the
    config they started with (config.yaml; if it no longer loads, e.g. after a schema change, they restart)."""
    by_dir: dict[Path, Trial] = {}
    for t in trials:  # two submissions may sample the same config: one run serves both
        by_dir.setdefault(t.run_dir, t)
    todo, reused, failed = [], 0, 0
    for d, t in by_dir.items():
        if is_done(d, evaluate=False):
            reused += 1
        elif (d / "failed.json").is_file() and not retry_failed:
            failed += 1
        else:
            todo.append(_trial_job(t))
    log(
        f"optbench: {len(by_dir)} trial runs: {reused} finished (reused), {failed} failed before (kept), "
        f"{len(todo)} to run on {backend} with {workers} worker(s) x {threads} thread(s)"
    )
    t0 = time.perf_counter()
    if todo:
        prepare_data([by_dir[j.run_dir] for j in todo])
    results = run_many(todo, backend=backend, workers=workers, log=log, options={"threads": threads})
    states: dict[str, int] = {}
    for r in results:
        states[r.state] = states.get(r.state, 0) + 1
    return {
        "runs": len(by_dir),
        "reused": reused,
        "failed_before": failed,
        "ran": len(todo),
        "states": states,
        "wall_s": time.perf_counter() - t0,
    }


def _trial_job(t: Trial) -> Job:
    """An unfinished trial resumes with the config it started with; one this iclab cannot read restarts."""
    import shutil

    from iclab.config import ConfigError
    from iclab.runs import load_run_config

    if (t.run_dir / "config.yaml").is_file():
        try:
            return Job(load_run_config(t.run_dir), t.run_dir, evaluate=False)
        except ConfigError:
            shutil.rmtree(t.run_dir)
    return Job(t.config, t.run_dir, evaluate=False)


# --- reading results -----------------------------------------------------------------------------------------
def trial_target(records: list[dict], w) -> dict:
    """The time to a workload's target (iclab/experiments/metrics.py: the first logged evaluation at or past
    it, training seconds from the training clock); inf steps and seconds when never reached."""
    hit = time_to_target(records, w.metric, "<=" if w.goal == "min" else ">=", w.target)
    if not hit.reached:
        return {"reached": False, "steps": math.inf, "seconds": math.inf, "best": hit.best}
    return {"reached": True, "steps": hit.step, "seconds": hit.seconds, "best": hit.best}


def collect(spec: BenchSpec, trials: list[Trial]) -> list[Trial]:
    """Fill every trial's result from its run directory (metrics.jsonl). A trial that failed (diverged) counts
    with what it logged before failing; one that has not finished counts as not reaching the target."""
    for t in trials:
        w = spec.workloads[t.workload]
        recs = read_metrics(t.run_dir)
        state = run_state(t.run_dir, evaluate=False)
        res = trial_target(recs, w)
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


def spec_record(spec: BenchSpec, spec_dir: Path, overrides: list[str] | None = None) -> str:
    """The spec with each workload's config inlined (what ran, even if the files change later) and the --set
    overrides applied to every workload's config."""
    d = spec.model_dump(mode="json")
    d["overrides"] = list(overrides or [])
    for w, ws in spec.workloads.items():
        d["workloads"][w]["config_data"] = yaml.safe_load((spec_dir / ws.config).read_text())
    return yaml.safe_dump(d, sort_keys=False)
