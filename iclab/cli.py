"""The `iclab` command line: train, eval, plot, list, curriculum."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="iclab: train and evaluate transformers on in-context learning of function classes.")


def _clean_errors(fn):
    """Every expected failure is one readable line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from iclab.checkpoint import CheckpointError
        from iclab.config import ConfigError
        from iclab.registry import UnknownNameError
        from iclab.runs import RunError
        from iclab.train import TrainingError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, RunError, CheckpointError, TrainingError, UnknownNameError) as e:
            typer.secho(f"error: {e}", fg="red", err=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            typer.secho("interrupted: a checkpoint was saved; continue with --resume", fg="yellow", err=True)
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
        parts = [f"model {ev['model']['mean'][k]:.4f}"] + [f"{b} {c['mean'][k]:.4f}" for b, c in ev["baselines"].items()]
        msg += f"\nnormalized squared error at k={k}: " + ", ".join(parts)
    typer.echo(msg)


@app.command("eval")
@_clean_errors
def eval_(
    run_dir: Path = typer.Argument(..., help="a run directory written by `iclab train`"),
    n_prompts: Optional[int] = typer.Option(None, min=1, help="prompts to average over (default: eval.n_prompts)"),
    n_points: Optional[int] = typer.Option(None, min=1, help="points per prompt, may exceed the trained length"),
    seed: Optional[int] = typer.Option(None, help="seed of the evaluation prompts (default: eval.seed)"),
    loops: Optional[int] = typer.Option(None, min=1, help="loop iterations (looped models; default: model.loops)"),
    max_loops: Optional[int] = typer.Option(None, "--max-loops", min=1,
                                            help="looped models: error vs loops for 1..N (default: max(2b, --loops))"),
    tag: Optional[str] = typer.Option(None, help="write eval_TAG.json / error_vs_examples_TAG.png instead of eval.json"),
):
    """Re-evaluate a saved run (more prompts, longer prompts, another seed) and redraw its figure."""
    from iclab.runs import evaluate_run

    ev = evaluate_run(run_dir, n_prompts=n_prompts, n_points=n_points, seed=seed, loops=loops, tag=tag, max_loops=max_loops)
    k = min(2 * ev["n_dims"], ev["n_points"] - 1)
    typer.echo(f"wrote {run_dir}/eval{'_' + tag if tag else ''}.json; error at k={k}: model {ev['model']['mean'][k]:.4f}, "
               + ", ".join(f"{b} {c['mean'][k]:.4f}" for b, c in ev["baselines"].items()))


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
def list_(what: Optional[str] = typer.Argument(None, help="tasks | models | optimizers | curricula | baselines (default: all)")):
    """Print what each registry holds, one line each."""
    from iclab.baselines import BASELINES
    from iclab.curriculum import SHAPES
    from iclab.models import MODELS
    from iclab.optim import OPTIMIZERS
    from iclab.tasks import TASKS

    regs = {"tasks": TASKS, "models": MODELS, "optimizers": OPTIMIZERS, "curricula": SHAPES, "baselines": BASELINES}
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


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
