"""`iclab list`, `iclab curriculum`, `iclab bench`: what the registries hold, schedules, speed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command("list")
def list_(
    what: Optional[str] = typer.Argument(
        None, help="tasks | models | optimizers | curricula | baselines | shifts (default: all)"
    ),
):
    """Print what each registry holds, one line each."""
    from iclab.registry import BASELINES, MODELS, OPTIMIZERS, SHAPES, SHIFTS, TASKS

    regs = {
        "tasks": TASKS,
        "models": MODELS,
        "optimizers": OPTIMIZERS,
        "curricula": SHAPES,
        "baselines": BASELINES,
        "shifts": SHIFTS,
    }
    if what is not None and what not in regs:
        raise typer.BadParameter(f"'{what}' is not one of: {', '.join(regs)}")
    for name, reg in regs.items():
        if what in (None, name):
            typer.secho(name, bold=True)
            for item, help in reg.describe().items():
                if name == "optimizers":
                    help = f"[{reg.get(item).source}] {reg.get(item).help}"
                if name == "tasks":
                    help = f"[{reg.get(item).family}] {help}"
                typer.echo(f"  {item:<24} {help}")


@app.command()
def curriculum(
    config: Path = typer.Argument(..., help="YAML config"),
    overrides: Optional[list[str]] = typer.Argument(None, help="config overrides"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also draw the schedule to this PNG"),
    rows: int = typer.Option(12, min=2, help="table rows"),
):
    """Print (and plot) the dims/points/loops schedule a config will follow, before training."""
    from iclab.config import load_config
    from iclab.training.curriculum import Curriculum

    cfg = load_config(config, overrides or [])
    cur = Curriculum(cfg)
    steps = cfg.training.steps
    marks = sorted({round(i * (steps - 1) / (rows - 1)) for i in range(rows)})
    typer.echo(f"{'step':>10} {'dims':>6} {'points':>7} {'loops':>6}")
    for s in marks:
        v = cur.at(s)
        typer.echo(f"{s:>10} {v['dims']:>6} {v['points']:>7} {v['loops']:>6}")
    for key, cap in (("dims", cfg.task.n_dims), ("points", cfg.task.n_points), ("loops", cfg.model.loops)):
        final = cur.at(steps - 1)[key]
        if final < cap:
            typer.secho(f"note: {key} ends at {final}, below its maximum {cap}", fg="yellow")
    if out is not None:
        from iclab.plotting import plt

        xs = list(range(0, steps, max(1, steps // 1000)))
        fig, axes = plt.subplots(1, 3, figsize=(11, 3))
        for ax, key in zip(axes, ("dims", "points", "loops")):
            ax.plot(xs, [cur.at(s)[key] for s in xs], drawstyle="steps-post")
            ax.set_title(key)
            ax.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        typer.echo(f"wrote {out}")


@app.command()
def bench(
    names: Optional[list[str]] = typer.Argument(None, help="suite names or YAML configs (default: the whole suite)"),
    quick: bool = typer.Option(
        False, "--quick", help="1 warm-up step, ~2 s per configuration, 1 round (< 2 min on a CPU)"
    ),
    out: Path = typer.Option(Path("bench.json"), "--out", "-o", help="JSON file of the records"),
    device: str = typer.Option("auto", help="cpu | cuda | auto: training.device of every configuration"),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="config override for every configuration, e.g. training.compile=true"
    ),
    ablate: Optional[list[str]] = typer.Option(
        None, help="KEY=V1,V2: time each value side by side (repeatable: all combinations)"
    ),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: torch's)"),
    rounds: Optional[int] = typer.Option(
        None, min=1, help="timing rounds, round-robin over configurations (default 3; --quick 1)"
    ),
    seconds: Optional[float] = typer.Option(
        None, min=0, help="timed seconds per configuration and round (default 8; --quick 2)"
    ),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip timing the evaluation"),
    mfu: bool = typer.Option(
        False,
        "--mfu",
        help="the MFU table: (default) the LM and regression reference shapes x fp32/bf16 (where supported) x "
        "eager/compiled, no evaluation",
    ),
):
    """Steps/s, tokens/s, FLOPs, MFU against the measured matmul peak, and peak memory of training steps."""
    import os

    import torch

    from iclab.bench import (
        MFU_SUITE,
        SUITE,
        BenchError,
        mfu_ablate,
        print_mfu_table,
        print_table,
        run_suite,
        write_json,
    )

    if names == ["list"]:
        for n, (path, what) in SUITE.items():
            typer.echo(f"  {n:<22} {what}  ({path})")
        return
    if out.is_dir():  # refused before minutes of timing, not after
        raise BenchError(f"--out {out} is a directory: give the JSON file to write, e.g. {out / 'bench.json'}")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if device != "cuda" and (threads or torch.get_num_threads()) > 1 and load > cores - 0.5:
        typer.secho(
            f"note: the CPU is busy (load {load:.1f} on {cores} cores); with several torch threads each waits "
            "for the others at every operator: consider --threads 1",
            fg="yellow",
            err=True,
        )
    if mfu:
        names = names or MFU_SUITE
        ablate = list(ablate or []) + mfu_ablate(device)
    recs = run_suite(
        names or None,
        quick=quick,
        device=device,
        overrides=set_ or [],
        ablate=ablate or [],
        threads=threads,
        rounds=rounds,
        eval_=not (no_eval or mfu),
        target_s=seconds,
        log=lambda m: typer.echo(m, err=True),
    )
    write_json(recs, out)
    print_table(recs)
    if mfu:
        print_mfu_table(recs)
    typer.echo(f"wrote {out}")
