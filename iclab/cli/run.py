"""`iclab train`, `iclab eval`, `iclab plot`: runs and their evaluations."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config (omit with --resume)"),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="config overrides, e.g. training.lr=3e-4 model.n_layer=4"
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default: runs/<config name>)"),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="continue the run in this directory from its latest checkpoint"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run directory"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip the evaluation after training"),
    nproc: Optional[int] = typer.Option(
        None, "--nproc", min=1, help="data-parallel processes on this machine (runs the same command under torchrun)"
    ),
):
    """Train a model from a config; write checkpoints, metrics, eval.json and figures into the run directory."""
    from iclab import launch
    from iclab.config import load_config

    t0 = time.perf_counter()
    if resume is not None:
        if config is not None and config.suffix not in (".yaml", ".yml"):
            overrides = [str(config)] + list(overrides or [])
            config = None
        if overrides:
            raise typer.BadParameter("overrides cannot be combined with --resume (the run's saved config is used)")
        cfg = load_config(config) if config is not None else None
        run_dir = resume
    else:
        if config is None:
            raise typer.BadParameter("a CONFIG file is required (or --resume RUN_DIR)")
        cfg = load_config(config, overrides or [])
        run_dir = out or Path("runs") / config.stem
    if launch.wants_launch(nproc):  # checked here, then torchrun runs this command N times
        launch.check_launch(cfg, nproc, run_dir, resume is not None)
        argv = [
            "train",
            *([str(config)] if config else []),
            *(overrides or []),
            "--out",
            str(run_dir),
            *(["--resume", str(resume)] if resume is not None else []),
            *(["--overwrite"] if overwrite else []),
            *(["--no-eval"] if no_eval else []),
        ]
        raise typer.Exit(launch.launch(nproc, argv))
    result = launch.train_process(cfg, run_dir, resume is not None, overwrite, evaluate_after=not no_eval)
    if result is None:  # torchrun: a rank other than 0 trains only (rank 0 writes and evaluates)
        return
    msg = f"run: {run_dir}  ({time.perf_counter() - t0:.1f} s)"
    if "eval" in result:
        msg += "\n" + result["summary"]
    typer.echo(msg)


@app.command("eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="a run directory written by `iclab train`"),
    n_prompts: Optional[int] = typer.Option(None, min=1, help="prompts to average over (default: eval.n_prompts)"),
    n_points: Optional[int] = typer.Option(None, min=1, help="points per prompt, may exceed the trained length"),
    seed: Optional[int] = typer.Option(
        None, min=0, max=2**63 - 1, help="seed of the evaluation prompts (default: eval.seed)"
    ),
    loops: Optional[int] = typer.Option(None, min=1, help="loop iterations (looped models; default: model.loops)"),
    max_loops: Optional[int] = typer.Option(
        None, "--max-loops", min=1, help="looped models: error vs loops for 1..N (default: max(2b, --loops))"
    ),
    tag: Optional[str] = typer.Option(
        None, help="write eval_TAG.json / error_vs_examples_TAG.png instead of eval.json"
    ),
    shift: Optional[str] = typer.Option(
        None, help="evaluate under this distribution shift (iclab list shifts); writes eval_SHIFT.json"
    ),
    shift_option: Optional[list[str]] = typer.Option(
        None, "--shift-option", help="a shift option key=value, e.g. factor=3 (repeatable)"
    ),
    task: Optional[str] = typer.Option(None, "--task", help="evaluate on another function class (same n_dims)"),
    task_option: Optional[list[str]] = typer.Option(
        None, "--task-option", help="an option of --task, key=value (repeatable)"
    ),
    all_shifts: bool = typer.Option(
        False, "--all-shifts", help="every applicable shift; eval_<shift>.json each and shifts.png"
    ),
    baselines: Optional[str] = typer.Option(
        None, help="comma-separated baselines (default: eval.baselines, else the task's defaults)"
    ),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1, help="token workloads: the length to evaluate at"),
    multiple_choice: Optional[Path] = typer.Option(
        None, "--multiple-choice", help="score a multiple-choice JSONL file (ARC-Easy format) with a language-model run"
    ),
):
    """Re-evaluate a saved run (more prompts, longer prompts, another seed, a distribution shift, another
    function class; token workloads: another length, a multiple-choice file) and draw its figure.
    The run's workload says which of these options it takes and writes the summary line."""
    from iclab.files import options_tag
    from iclab.runs import evaluate_multiple_choice, evaluate_run, load_run_config
    from iclab.workloads import make_workload

    if multiple_choice is not None:
        from iclab.evaluation.multiple_choice import summary_line

        tag = tag or options_tag({"loops": loops}) or None
        typer.echo(summary_line(evaluate_multiple_choice(run_dir, multiple_choice, tag=tag, loops=loops)))
        return
    from iclab.evaluation.shift_eval import parse_options

    options = dict(n_prompts=n_prompts, n_points=n_points, seed=seed, loops=loops, max_loops=max_loops, tag=tag)
    options.update(shift=shift, task=task, seq_len=seq_len, all_shifts=all_shifts or None)
    if shift_option is not None:
        options["shift_options"] = parse_options(shift_option, "--shift-option")
    if task_option is not None:
        options["task_options"] = parse_options(task_option, "--task-option")
    if baselines is not None:
        options["baselines"] = [b.strip() for b in baselines.split(",") if b.strip()]
    auto = ""
    if tag is None and shift is None and task is None and baselines is None and not all_shifts:
        auto = options_tag({k: options.get(k) for k in _NAMED})  # non-default options: their own file
        options["tag"] = auto or None
    cfg = load_run_config(run_dir)
    workload = make_workload(cfg, run_dir)  # prepares (or reuses) a token workload's data once
    ev = evaluate_run(run_dir, cfg, workload=workload, **{k: v for k, v in options.items() if v is not None})
    typer.echo(workload.summary(ev))
    if auto:
        typer.echo(f"written: {run_dir / f'eval_{auto}.json'} (options other than the run's defaults; eval.json kept)")


#: `iclab eval` options that name the result file when no --tag is given (eval_loops3_seed5.json)
#: (--shift, --task and --baselines results are named after the shift and the task: eval_<shift>_on_<task>.json)
_NAMED = ("n_prompts", "n_points", "seed", "loops", "max_loops", "seq_len")


@app.command()
def plot(
    run_dirs: list[Path] = typer.Argument(..., help="one or more run directories"),
    out: Path = typer.Option(Path("error_vs_examples.png"), "--out", "-o", help="output PNG"),
    tag: Optional[str] = typer.Option(None, help="read eval_TAG.json instead of eval.json"),
    loops: bool = typer.Option(False, "--loops", help="plot error vs loop iterations (loops.json) instead"),
    title: Optional[str] = typer.Option(None, help="figure title"),
    force: bool = typer.Option(False, "--force", help="replace an existing figure at --out"),
):
    """Overlay several runs' error curves in one figure (an existing --out is replaced only with --force)."""
    from iclab.errors import IclabError
    from iclab.evaluation.plots import plot_error_curves, plot_loop_curves
    from iclab.runs import read_eval

    if out.exists() and not force:
        raise IclabError(f"--out {out} exists; give another --out to keep both figures, or --force to replace it")

    runs = [(d.name, read_eval(d, tag, "loops" if loops else "eval")) for d in run_dirs]
    (plot_loop_curves if loops else plot_error_curves)(runs, out, title)
    typer.echo(f"wrote {out}")


@app.command()
def compare(
    configs: list[Path] = typer.Argument(..., help="YAML configs to compare"),
    seeds: str = typer.Option("3", "--seeds", help="a count (3 = seeds 0,1,2), a range (0-4) or a list (1,5,7)"),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="directory of the runs and the tables"),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="config override for every run, e.g. training.steps=500"
    ),
    backend: Optional[str] = typer.Option(
        None,
        "--backend",
        help="how the runs are trained (iclab/experiments): inline (default: one after another here) | "
        "local (process pool) | pool (persistent workers) | ray | slurm",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="with --backend: runs at a time"),
    reference: Optional[str] = typer.Option(
        None,
        "--reference",
        help="a config's name (its file name without .yaml): add each config's paired difference to it, by seed, "
        "with its 95% interval and p-value",
    ),
):
    """Train every config at every seed (reusing finished runs) and tabulate the headline metric, mean +- 95% CI."""
    from iclab.compare import compare as run_compare
    from iclab.compare import table
    from iclab.config import ConfigError
    from iclab.experiments import ExperimentError, parse_seeds

    try:
        res = run_compare(
            configs,
            parse_seeds(seeds),
            out,
            set_ or [],
            log=lambda m: typer.echo(m, err=True),
            backend=backend,
            workers=workers,
            reference=reference,
        )
    except ExperimentError as e:
        raise ConfigError(str(e)) from None
    typer.echo(table(res) + f"wrote {out}/compare.json, compare.csv, compare.md, compare.png")
