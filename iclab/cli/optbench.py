"""`iclab optbench`: the AlgoPerf-style optimizer benchmark (iclab/optbench)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


def _names(text: Optional[str]) -> Optional[list[str]]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


@app.command()
def optbench(
    spec: Optional[Path] = typer.Argument(None, help="a benchmark spec (default: configs/optbench/<scale>.yaml)"),
    scale: str = typer.Option("default", help="default: the 2-core CPU suite; full: larger budgets, for a GPU"),
    out: Optional[Path] = typer.Option(None, "--out", help="benchmark directory (default runs/optbench/<spec name>)"),
    workloads: Optional[str] = typer.Option(None, "--workloads", help="only these workloads (comma-separated)"),
    submissions: Optional[str] = typer.Option(None, "--submissions", help="only these submissions (comma-separated)"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="tuning trials per study (default: the spec's)"),
    studies: Optional[int] = typer.Option(None, "--studies", min=1, help="studies per pair (default: the spec's)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="trials at once (default: the spec's)"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads per trial"),
    backend: str = typer.Option(
        "pool",
        "--backend",
        help="a backend of the run engine: pool (persistent worker processes), inline (this process), local "
        "(a fresh process per trial), ray, slurm",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="override in every workload's config, before the submission's keys (key=value, repeatable; changes "
        "the trials' hashes)",
    ),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="rerun trials that failed before (e.g. diverged)"),
    report_only: bool = typer.Option(False, "--report-only", help="only read the finished trials and write the report"),
):
    """Run (or resume) an optimizer benchmark and write its tables and figures: time to target per workload and
    submission, the share of trials reaching it, performance profiles and scores (AlgoPerf's definitions)."""
    from iclab.optbench import run_benchmark, spec_path_of
    from iclab.optbench.report import scores_markdown, ttt_markdown

    path = spec_path_of(str(spec) if spec else None, scale)
    res = run_benchmark(
        path,
        out,
        workloads=_names(workloads),
        submissions=_names(submissions),
        trials=trials,
        studies=studies,
        workers=workers,
        threads=threads,
        backend=backend,
        overrides=list(set_),
        retry_failed=retry_failed,
        report_only=report_only,
        log=typer.echo,
    )
    agg, sp, o = res["aggregate"], res["spec"], res["out"]
    typer.echo("\ntime to target: steps / training seconds (trials that reached it / trials)\n" + ttt_markdown(sp, agg))
    typer.echo("\n" + scores_markdown(sp, agg))
    if res["run"]:
        typer.echo(f"\nwall time {res['run']['wall_s']:.0f} s; ")
    typer.echo(
        f"written: {o}/summary.md, time_to_target.csv|json|md, scores.json|md, trials.csv|json, profiles.png, "
        f"curves.png"
    )
