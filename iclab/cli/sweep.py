"""`iclab sweep`: a config over a grid x seeds (local process pool, Ray or SLURM), aggregated; `iclab sweep
status DIR`: the state of every run of a sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command(context_settings={"help_option_names": ["--help", "-h"]})
def sweep(
    config: str = typer.Argument(..., help="YAML config, or `status` followed by a sweep directory"),
    sweep_dir: Optional[Path] = typer.Argument(None, help="(iclab sweep status SWEEP_DIR) the sweep to report on"),
    grid: Optional[list[str]] = typer.Option(None, "--grid", "-g", help="key=v1,v2 (repeatable: the product of all)"),
    seeds: str = typer.Option("1", "--seeds", help="a count (3 = seeds 0,1,2), a range (0-4) or a list (1,5,7)"),
    backend: str = typer.Option(
        "local", "--backend", help="local (process pool) | pool (persistent workers) | inline | ray | slurm (submitit)"
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="runs at a time (default: min(runs, CPU cores))"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="sweep directory (default: runs/sweep-<config name>)"),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="config override for every run, e.g. training.steps=500"
    ),
    target: Optional[str] = typer.Option(
        None, "--target", help="time to target: METRIC<=VALUE or METRIC>=VALUE of metrics.jsonl"
    ),
    slurm_option: Optional[list[str]] = typer.Option(
        None,
        "--slurm-option",
        help="submitit parameter key=value (e.g. slurm_partition=gpu, timeout_min=60, cluster=local)",
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="Ray cluster to join (default: start a local one)"
    ),
    reference: Optional[str] = typer.Option(
        None,
        "--reference",
        help="a grid point's name (e.g. training.lr=1e-3): add each point's paired difference to it in the main "
        "metric, by seed, with its 95% interval and p-value",
    ),
):
    """Train CONFIG at every grid point x seed into one directory (finished runs reused, interrupted ones
    resumed), then tabulate each point's final metrics as mean +- 95% CI over seeds (table.md/csv/json/png)."""
    from iclab.experiments import parse_seeds
    from iclab.sweep import SweepError, core

    if config == "status":
        if sweep_dir is None:
            raise SweepError("iclab sweep status SWEEP_DIR: give the sweep directory")
        typer.echo(core.status_table(core.status(sweep_dir)), nl=False)
        return
    if sweep_dir is not None:
        raise SweepError(f"unexpected argument {sweep_dir}: overrides for every run go in --set, grids in --grid")
    options = backend_options(backend, slurm_option or [], ray_address)
    cfg_path = Path(config)
    out = out or Path("runs") / f"sweep-{cfg_path.stem}"
    t0 = time.perf_counter()
    res = core.run_sweep(
        cfg_path,
        grid or [],
        parse_seeds(seeds),
        out,
        set_ or [],
        backend=backend,
        workers=workers,
        target=target,
        log=lambda m: typer.echo(m, err=True),
        options=options,
        reference=reference,
    )
    from iclab.sweep.aggregate import table

    failed = [r for r in res["results"] if r.state == "failed"]
    typer.echo(table(res["rows"], core.parse_target(target)), nl=False)
    typer.echo(
        f"wrote {out}/table.md, table.csv, table.json, table.png  ({time.perf_counter() - t0:.1f} s; "
        f"{len(res['results']) - len(failed)} of {len(res['results'])} runs finished)"
    )
    for r in failed:
        typer.secho(f"failed: {r.run_dir}: {r.error}", fg="red", err=True)
    if failed:
        raise typer.Exit(1)


def backend_options(backend: str, slurm_option: list[str], ray_address: str | None) -> dict:
    """The engine's backend options from --slurm-option key=value (values read as YAML) and --ray-address."""
    import yaml

    from iclab.sweep import SweepError

    options: dict = {}
    for item in slurm_option:
        if "=" not in item:
            raise SweepError(f"--slurm-option {item!r}: use key=value")
        k, v = item.split("=", 1)
        options[k] = yaml.safe_load(v)
    if options and backend != "slurm":
        raise SweepError("--slurm-option needs --backend slurm")
    if ray_address:
        if backend != "ray":
            raise SweepError("--ray-address needs --backend ray")
        options["address"] = ray_address
    return options
