"""Training dynamics (seed 004's lecture): `iclab landscape`, `iclab sharpness` on a trained run, and the
standalone experiments `iclab dynamics double-descent` and `iclab dynamics init`
(iclab/analysis/landscape.py, sharpness.py, double_descent.py, initialization.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app

dynamics = typer.Typer(
    no_args_is_help=True,
    help="Standalone training-dynamics experiments (double descent, "
    "initialization of deep MLPs); figures and JSON into --out.",
)
app.add_typer(dynamics, name="dynamics")


@app.command()
def landscape(
    run_dirs: list[Path] = typer.Argument(..., help="run directories (several: computed alike, drawn side by side)"),
    checkpoint: Optional[int] = typer.Option(
        None,
        "--checkpoint",
        min=0,
        help="the step whose weights are the center (0: the initial weights; default: the final ones)",
    ),
    dims: Optional[int] = typer.Option(
        None, "--dims", min=1, max=2, help="1: a line, 2: a plane (default: 1 for init, 2 otherwise)"
    ),
    range_: Optional[str] = typer.Option(
        None,
        "--range",
        help="A,B: the range of the coordinates (default: -1,1 random, -0.5,1.5 init, the trajectory's extent pca)",
    ),
    points: int = typer.Option(21, "--points", min=2, help="grid points per axis"),
    directions: str = typer.Option(
        "random",
        "--directions",
        help="random (filter-normalized), pca (of the trajectory), init (the line from the initial weights)",
    ),
    batches: int = typer.Option(4, "--batches", min=1, help="fixed batches the loss averages"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the random directions"),
    out: Optional[Path] = typer.Option(None, "--out", help="the side-by-side figure of several runs"),
):
    """Loss landscape: a line or plane through the weights; landscape_*.json / .png into each run."""
    from iclab.analysis.landscape import compare, parse_range
    from iclab.analysis.landscape import landscape as one

    if dims is None:
        dims = 1 if directions == "init" else 2
    kw = dict(
        directions=directions,
        dims=dims,
        step=checkpoint,
        rng=parse_range(range_, directions),
        points=points,
        n_batches=batches,
        seed=seed,
    )
    if len(run_dirs) == 1 and out is None:
        rec = one(run_dirs[0], **kw)
        recs, fig = [rec], None
    else:
        recs, fig = compare(run_dirs, out, **kw)
    for r in recs:
        lo = min(min(x) if isinstance(x, list) else x for x in r["loss"])
        typer.echo(
            f"{r['run']}: step {r['step']}, loss at the center {r['center_loss']:.4g}, lowest on the grid "
            f"{lo:.4g} ({r['seconds']:.1f} s) -> {r['figure']}"
        )
    if fig:
        typer.echo(f"comparison: {fig}")


@app.command()
def sharpness(
    run_dir: Path = typer.Argument(..., help="a run directory (its init.safetensors, checkpoints and final weights)"),
    top: int = typer.Option(1, "--top", min=1, help="top Hessian eigenvalues"),
    trace_samples: int = typer.Option(0, "--trace-samples", min=0, help="Hutchinson samples for the trace (0: skip)"),
    batches: int = typer.Option(2, "--batches", min=1, help="fixed batches the loss averages"),
    method: str = typer.Option("lanczos", "--method", help="lanczos (scipy eigsh) or power"),
    seed: int = typer.Option(0, "--seed", min=0),
    step: Optional[list[int]] = typer.Option(None, "--step", help="only these steps (repeatable; 0 = init)"),
):
    """Sharpness over training: top Hessian eigenvalues (and trace) at every saved checkpoint, with 2/lr."""
    from iclab.analysis.sharpness import sharpness_over_training

    rec = sharpness_over_training(
        run_dir,
        top=top,
        trace_samples=trace_samples,
        n_batches=batches,
        method=method,
        seed=seed,
        steps=list(step or []),
    )
    lines = [f"{'step':>8}{'lr':>10}{'2/lr':>10}{'top eig':>11}" + (f"{'trace':>12}" if trace_samples else "")]
    for p in rec["points"]:
        lines.append(
            f"{p['step']:>8}{p['lr']:>10.3g}{p['threshold']:>10.4g}{p['eigenvalues'][0]:>11.4g}"
            + (f"{p['trace']:>12.4g}" if trace_samples else "")
        )
    lines.append(f"({rec['n_params']:,} parameters, {rec['seconds']:.1f} s) -> {rec['path']}, {rec['figure']}")
    typer.echo("\n".join(lines))


@dynamics.command("double-descent")
def double_descent_cmd(
    out: Path = typer.Option(..., "--out", help="output directory"),
    seed: int = typer.Option(0, "--seed", min=0),
    trials: int = typer.Option(10, "--trials", min=1, help="random draws averaged per point"),
    n_train: int = typer.Option(100, "--n-train", min=4, help="training samples of the width sweep"),
    width: int = typer.Option(100, "--width", min=4, help="random features of the sample sweep"),
    noise: float = typer.Option(0.5, "--noise", min=0.0, help="label noise std"),
):
    """Double descent: random-features regression vs width and vs samples, and polynomial fitting."""
    from iclab.analysis.double_descent import run_double_descent

    rec = run_double_descent(out, seed=seed, trials=trials, n_train=n_train, width=width, noise=noise)
    w, s = rec["width_sweep"], rec["sample_sweep"]
    typer.echo(
        f"width sweep (n={w['n_train']}): peak test error {w['peak_error']:.3g} at width {w['peak_at']} "
        f"(interpolation threshold {w['threshold']})\n"
        f"sample sweep (width {s['width']}): peak test error {s['peak_error']:.3g} at n={s['peak_at']} "
        f"(threshold {s['threshold']})\n"
        f"polynomial: peak at degree {rec['polynomial']['peak_at']} (threshold {rec['polynomial']['threshold']})\n"
        f"({rec['seconds']:.1f} s) -> {rec['path']}, {', '.join(rec['figures'])}"
    )


@dynamics.command("init")
def init_cmd(
    out: Path = typer.Option(..., "--out", help="output directory"),
    seed: int = typer.Option(0, "--seed", min=0),
    depth: Optional[list[int]] = typer.Option(None, "--depth", help="MLP depths (repeatable; default 20 and 50)"),
    width: int = typer.Option(64, "--width", min=2),
    steps: int = typer.Option(300, "--steps", min=1),
    lr: float = typer.Option(0.01, "--lr", min=0.0),
):
    """Initialization of deep MLPs: naive N(0, s^2), Xavier, Kaiming with ReLU and tanh."""
    from iclab.analysis.initialization import run_initialization

    rec = run_initialization(out, seed=seed, depths=list(depth or [20, 50]), width=width, steps=steps, lr=lr)
    lines = [f"{'depth':>6} {'act':>5} {'init':>14}{'loss 0':>9}{'loss end':>10}{'grad L1/LL':>12}"]
    for r in rec["runs"]:
        g = r["grad_norms"]
        ratio = g[0] / g[-1] if g[-1] > 0 else float("inf")
        lines.append(
            f"{r['depth']:>6} {r['activation']:>5} {r['init']:>14}{r['loss'][0]:>9.3f}{r['loss'][-1]:>10.3f}"
            f"{ratio:>12.3g}"
        )
    lines.append(f"({rec['seconds']:.1f} s) -> {rec['path']}, {', '.join(rec['figures'])}")
    typer.echo("\n".join(lines))


@dynamics.command("grokking")
def grokking_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="modular-arithmetic run directories"),
    out: Path = typer.Option(..., "--out", help="output directory"),
    memorized: float = typer.Option(
        0.99, "--memorized", min=0.0, max=1.0, help="train accuracy that counts as memorized"
    ),
    grokked: float = typer.Option(
        0.95, "--grokked", min=0.0, max=1.0, help="held-out accuracy that counts as generalized"
    ),
):
    """Grokking runs compared: steps to memorize and to generalize, vs training fraction and weight decay."""
    from iclab.analysis.grokking import compare_runs

    rec = compare_runs(run_dirs, out, memorized, grokked)
    lines = [f"{'run':<24}{'p':>4}{'frac':>6}{'wd':>6}{'memorized':>11}{'generalized':>13}{'ratio':>7}{'held-out':>10}"]
    for r in rec["runs"]:
        f = lambda x: "never" if x is None else str(x)  # noqa: E731
        ratio = "" if r["delay_ratio"] is None else f"{r['delay_ratio']:.1f}"
        lines.append(
            f"{r['name'][:23]:<24}{r['p']:>4}{r['train_fraction']:>6}{str(r['weight_decay']):>6}"
            f"{f(r['memorized_at']):>11}{f(r['generalized_at']):>13}{ratio:>7}{r['final_heldout_accuracy']:>10.3f}"
        )
    lines.append(f"-> {rec['path']}, {rec['figure']}")
    typer.echo("\n".join(lines))
