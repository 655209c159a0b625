"""The `iclab` command line: train, eval, plot, list, curriculum, bench."""

from __future__ import annotations

import functools
import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


class _OneLineErrors(TyperGroup):
    """Usage errors (a missing argument, an unknown option, a bad option value) as one line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as e:  # click's exceptions (vendored by typer or not) are recognized by their interface
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            if type(e).__name__ == "NoArgsIsHelpError":  # `iclab` alone prints the help
                e.show()
            else:
                hint = ""
                if getattr(e, "ctx", None) is not None:
                    hint = f" (see '{e.ctx.command_path} --help')"
                typer.secho(f"error: {_one_line(e.format_message())}{hint}", fg="red", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=_OneLineErrors,
                  help="iclab: train and evaluate transformers on in-context learning of function classes.")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    typer.secho(f"warning: {_one_line(message)}", fg="yellow", err=True)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"  # null: a baseline not evaluated at that position


def _clean_errors(fn):
    """Every expected failure is one readable line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from iclab.checkpoint import CheckpointError
        from iclab.config import ConfigError
        from iclab.registry import UnknownNameError
        from iclab.runs import RunError
        from iclab.train import Interrupted, TrainingError

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except (ConfigError, RunError, CheckpointError, TrainingError, UnknownNameError, OSError) as e:
            typer.secho(f"error: {_one_line(e)}", fg="red", err=True)
            raise typer.Exit(2)
        except Interrupted as e:
            typer.secho(f"{e}; continue with: iclab train --resume {e.path.parent.parent}", fg="yellow", err=True)
            raise typer.Exit(130)
        except KeyboardInterrupt:
            typer.secho("interrupted", fg="yellow", err=True)
            raise typer.Exit(130)

    return wrapper


@app.command()
@_clean_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config (omit with --resume)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="config overrides, e.g. training.lr=3e-4 model.n_layer=4"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default: runs/<config name>)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this directory from its latest checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run directory"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip the evaluation after training"),
):
    """Train a model from a config; write checkpoints, metrics, eval.json and figures into the run directory."""
    from iclab.config import load_config
    from iclab.runs import train_run

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
    result = train_run(cfg, run_dir, resume=resume is not None, overwrite=overwrite, evaluate_after=not no_eval)
    msg = f"run: {run_dir}  ({time.perf_counter() - t0:.1f} s)"
    if "eval" in result:
        ev = result["eval"]
        k = min(2 * ev["n_dims"], ev["n_points"] - 1)
        parts = [f"model {ev['model']['mean'][k]:.4f}"] + [f"{b} {_fmt(c['mean'][k])}" for b, c in ev["baselines"].items()]
        msg += f"\nnormalized squared error at k={k}: " + ", ".join(parts)
    typer.echo(msg)


@app.command("eval")
@_clean_errors
def eval_(
    run_dir: Path = typer.Argument(..., help="a run directory written by `iclab train`"),
    n_prompts: Optional[int] = typer.Option(None, min=1, help="prompts to average over (default: eval.n_prompts)"),
    n_points: Optional[int] = typer.Option(None, min=1, help="points per prompt, may exceed the trained length"),
    seed: Optional[int] = typer.Option(None, min=0, max=2**63 - 1, help="seed of the evaluation prompts (default: eval.seed)"),
    loops: Optional[int] = typer.Option(None, min=1, help="loop iterations (looped models; default: model.loops)"),
    max_loops: Optional[int] = typer.Option(None, "--max-loops", min=1,
                                            help="looped models: error vs loops for 1..N (default: max(2b, --loops))"),
    tag: Optional[str] = typer.Option(None, help="write eval_TAG.json / error_vs_examples_TAG.png instead of eval.json"),
    shift: Optional[str] = typer.Option(None, help="evaluate under this distribution shift (iclab list shifts); writes eval_SHIFT.json"),
    shift_option: Optional[List[str]] = typer.Option(None, "--shift-option", help="a shift option key=value, e.g. factor=3 (repeatable)"),
    task: Optional[str] = typer.Option(None, "--task", help="evaluate on another function class (same n_dims)"),
    task_option: Optional[List[str]] = typer.Option(None, "--task-option", help="an option of --task, key=value (repeatable)"),
    all_shifts: bool = typer.Option(False, "--all-shifts", help="every applicable shift; eval_<shift>.json each and shifts.png"),
    baselines: Optional[str] = typer.Option(None, help="comma-separated baselines (default: eval.baselines, else the task's defaults)"),
):
    """Re-evaluate a saved run (more prompts, longer prompts, another seed, a distribution shift, another
    function class) and draw its figure."""
    from iclab.runs import evaluate_run

    def line(name, ev):
        k = min(2 * ev["n_dims"], ev["n_points"] - 1)
        return (f"{name}: error at k={k}: model {ev['model']['mean'][k]:.4f}, "
                + ", ".join(f"{b} {_fmt(c['mean'][k])}" for b, c in ev["baselines"].items()))

    if shift is None and task is None and not all_shifts and baselines is None:
        ev = evaluate_run(run_dir, n_prompts=n_prompts, n_points=n_points, seed=seed, loops=loops, tag=tag, max_loops=max_loops)
        typer.echo(line(f"wrote {run_dir}/eval{'_' + tag if tag else ''}.json", ev))
        return
    from iclab.config import ConfigError
    from iclab.shift_eval import evaluate_run_all_shifts, evaluate_run_shift, parse_options

    try:
        sopts, topts = parse_options(shift_option, "--shift-option"), parse_options(task_option, "--task-option")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    names = [b.strip() for b in baselines.split(",") if b.strip()] if baselines is not None else None
    kw = dict(n_prompts=n_prompts, n_points=n_points, seed=seed, loops=loops, baselines=names)
    if all_shifts:
        if shift is not None or tag is not None:
            raise typer.BadParameter("--all-shifts excludes --shift and --tag")
        results = evaluate_run_all_shifts(run_dir, task, topts, **kw)
        for name, ev in results.items():
            typer.echo(line(name, ev))
        typer.echo(f"wrote {run_dir}/{'shifts_on_' + task if task else 'shifts'}.png")
        return
    ev = evaluate_run_shift(run_dir, shift or "standard", sopts, task, topts, tag=tag, **kw)
    typer.echo(line(f"{ev['eval_task']} under {ev['shift']}", ev))


@app.command()
@_clean_errors
def plot(
    run_dirs: List[Path] = typer.Argument(..., help="one or more run directories"),
    out: Path = typer.Option(Path("error_vs_examples.png"), "--out", "-o", help="output PNG"),
    tag: Optional[str] = typer.Option(None, help="read eval_TAG.json instead of eval.json"),
    loops: bool = typer.Option(False, "--loops", help="plot error vs loop iterations (loops.json) instead"),
    title: Optional[str] = typer.Option(None, help="figure title"),
):
    """Overlay several runs' error curves in one figure."""
    from iclab.plots import plot_error_curves, plot_loop_curves
    from iclab.runs import read_eval

    runs = [(d.name, read_eval(d, tag, "loops" if loops else "eval")) for d in run_dirs]
    (plot_loop_curves if loops else plot_error_curves)(runs, out, title)
    typer.echo(f"wrote {out}")


@app.command("list")
@_clean_errors
def list_(what: Optional[str] = typer.Argument(None, help="tasks | models | optimizers | curricula | baselines | shifts (default: all)")):
    """Print what each registry holds, one line each."""
    from iclab.baselines import BASELINES
    from iclab.curriculum import SHAPES
    from iclab.models import MODELS
    from iclab.optim import OPTIMIZERS
    from iclab.shifts import SHIFTS
    from iclab.tasks import TASKS

    import iclab.memorization  # noqa: F401  (registers the memorization baseline)

    regs = {"tasks": TASKS, "models": MODELS, "optimizers": OPTIMIZERS, "curricula": SHAPES, "baselines": BASELINES,
            "shifts": SHIFTS}
    if what is not None and what not in regs:
        raise typer.BadParameter(f"'{what}' is not one of: {', '.join(regs)}")
    for name, reg in regs.items():
        if what in (None, name):
            typer.secho(name, bold=True)
            for item, help in reg.describe().items():
                if name == "optimizers":
                    help = reg.get(item).help
                typer.echo(f"  {item:<20} {help}")


@app.command()
@_clean_errors
def curriculum(
    config: Path = typer.Argument(..., help="YAML config"),
    overrides: Optional[List[str]] = typer.Argument(None, help="config overrides"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also draw the schedule to this PNG"),
    rows: int = typer.Option(12, min=2, help="table rows"),
):
    """Print (and plot) the dims/points/loops schedule a config will follow, before training."""
    from iclab.config import load_config
    from iclab.curriculum import Curriculum

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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

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
@_clean_errors
def bench(
    names: Optional[List[str]] = typer.Argument(None, help="suite names or YAML configs (default: the whole suite)"),
    quick: bool = typer.Option(False, "--quick", help="1 warm-up step, ~2 s per configuration, 1 round (< 2 min on a CPU)"),
    out: Path = typer.Option(Path("bench.json"), "--out", "-o", help="JSON file of the records"),
    device: str = typer.Option("auto", help="cpu | cuda | auto: training.device of every configuration"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="config override for every configuration, e.g. training.compile=true"),
    ablate: Optional[List[str]] = typer.Option(None, help="KEY=V1,V2: time each value side by side (repeatable: all combinations)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: torch's)"),
    rounds: Optional[int] = typer.Option(None, min=1, help="timing rounds, round-robin over configurations (default 3; --quick 1)"),
    seconds: Optional[float] = typer.Option(None, min=0, help="timed seconds per configuration and round (default 8; --quick 2)"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip timing the evaluation"),
):
    """Steps/s, tokens/s, FLOPs, MFU against the measured matmul peak, and peak memory of training steps."""
    import os

    import torch

    from iclab.bench import SUITE, print_table, run_suite, write_json

    if names == ["list"]:
        for n, (path, what) in SUITE.items():
            typer.echo(f"  {n:<22} {what}  ({path})")
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if device != "cuda" and (threads or torch.get_num_threads()) > 1 and load > cores - 0.5:
        typer.secho(f"note: the CPU is busy (load {load:.1f} on {cores} cores); with several torch threads each waits "
                    "for the others at every operator: consider --threads 1", fg="yellow", err=True)
    recs = run_suite(names or None, quick=quick, device=device, overrides=set_ or [], ablate=ablate or [],
                     threads=threads, rounds=rounds, eval_=not no_eval, target_s=seconds, log=lambda m: typer.echo(m, err=True))
    write_json(recs, out)
    print_table(recs)
    typer.echo(f"wrote {out}")


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
