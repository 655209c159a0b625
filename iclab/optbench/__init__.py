"""`iclab optbench`: an AlgoPerf-style optimizer benchmark at lab scale (Dahl et al. 2023, arXiv:2306.07179).

    spec.py      the benchmark spec (workloads with targets and budgets, submissions with search spaces),
                 seeded sampling of trials, a trial's config and its hash
    profiles.py  performance ratios, profiles rho(tau) and the score (area under the profile up to r_max)
    bench.py     plan -> run (trials as jobs of the run engine, iclab/experiments) -> collect (time to
                 target from metrics.jsonl, iclab/experiments/metrics.py) -> aggregate (external tuning:
                 fastest trial per study, median over studies)
    report.py    the tables and figures

`run_benchmark(spec_path, out)` is the whole pipeline; the CLI is iclab/cli/optbench.py.
"""

from __future__ import annotations

from pathlib import Path

from iclab.experiments import ExperimentError, check_backend
from iclab.optbench.profiles import performance_ratios, profile, score, scores
from iclab.optbench.spec import BenchSpec, OptbenchError, load_spec

__all__ = [
    "BenchSpec",
    "OptbenchError",
    "load_spec",
    "performance_ratios",
    "profile",
    "run_benchmark",
    "score",
    "scores",
    "SCALES",
]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "optbench"
SCALES = {"default": "default.yaml", "full": "full.yaml"}


def spec_path_of(spec: str | None, scale: str) -> Path:
    if spec is not None:
        return Path(spec)
    if scale not in SCALES:
        raise OptbenchError(f"--scale {scale!r}: choose one of {', '.join(SCALES)}")
    return CONFIG_DIR / SCALES[scale]


def run_benchmark(
    spec_path: str | Path,
    out: str | Path | None = None,
    *,
    workloads: list[str] | None = None,
    submissions: list[str] | None = None,
    trials: int | None = None,
    studies: int | None = None,
    workers: int | None = None,
    threads: int = 1,
    backend: str = "pool",
    overrides: list[str] | None = None,
    retry_failed: bool = False,
    report_only: bool = False,
    log=print,
) -> dict:
    """Plan, run (unless report_only), collect and report a benchmark; returns {"out", "run", "aggregate"}."""
    from iclab.files import write_text
    from iclab.optbench import bench
    from iclab.optbench.report import report

    try:  # an unknown or missing backend, or no workers, is refused before anything is written
        check_backend(backend, workers)
    except ExperimentError as e:
        raise OptbenchError(str(e)) from None
    spec, spec_dir = load_spec(spec_path)
    updates = {}
    for key, names, known in (("workloads", workloads, spec.workloads), ("submissions", submissions, spec.submissions)):
        if names:
            bad = [n for n in names if n not in known]
            if bad:
                raise OptbenchError(f"--{key} {','.join(bad)}: not in {spec_path} (it has: {', '.join(known)})")
            updates[key] = {n: known[n] for n in names}
    if trials is not None:
        updates["trials"] = trials
    if studies is not None:
        updates["studies"] = studies
    if workers is not None:
        updates["workers"] = workers
    spec = spec.model_copy(update=updates)
    out = Path(out) if out is not None else Path("runs") / "optbench" / spec.name
    if out.exists() and not out.is_dir():
        raise OptbenchError(f"--out {out} exists and is not a directory")
    trial_list = bench.plan(spec, spec_dir, out, overrides)
    info = None
    if not report_only:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "spec.yaml", bench.spec_record(spec, spec_dir, overrides))
        info = bench.run(
            trial_list, backend=backend, workers=spec.workers, threads=threads, retry_failed=retry_failed, log=log
        )
    elif not out.is_dir():
        raise OptbenchError(f"--report-only: {out} does not exist (run the benchmark first)")
    bench.collect(spec, trial_list)
    agg = report(spec, trial_list, out, info)
    return {"out": out, "run": info, "aggregate": agg, "spec": spec}
