"""`iclab probe` and `iclab lens`: linear probes and the logit lens of an in-context regression run
(iclab/analysis/probes.py, lens.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command()
def probe(
    run_dir: Path = typer.Argument(..., help="a linear-regression run directory"),
    target: list[str] = typer.Option(
        ..., "--target", "-t", help="true_w, least_squares, ridge, gd_K, newton_K, or <target>_pred (repeatable)"
    ),
    n_prompts: int = typer.Option(2000, "--n-prompts", min=10, help="training prompts (validation: N/4, test: N/2)"),
    seed: int = typer.Option(
        0, min=0, help="prompt seed (train, validation, test use seed, seed+1, seed+2); also the random-init control's"
    ),
    min_examples: int = typer.Option(
        1, "--min-examples", min=0, help="pool the queries with at least this many in-context examples"
    ),
    loops: Optional[int] = typer.Option(None, min=1, help="loop iterations (looped models; default: model.loops)"),
    ridge_lambda: float = typer.Option(0.1, "--ridge-lambda", min=0.0, help="the penalty of the `ridge` target"),
):
    """Fit linear probes for algorithm targets at every layer; write probes.json and probes.png into the run."""
    from iclab.analysis.probes import best_layers, run_probes

    rec = run_probes(
        run_dir,
        list(target),
        n_train=n_prompts,
        seed=seed,
        min_examples=min_examples,
        loops=loops,
        ridge_lam=ridge_lambda,
    )
    w = max(len(t) for t in rec["targets"]) + 2
    lines = [f"{'target':<{w}}{'best layer':>11}{'R^2':>8}   {'random init':>11}{'R^2':>8}   {'embed R^2':>9}"]
    for name, bl, r2, rbl, rr2, er2 in best_layers(rec):
        lines.append(f"{name:<{w}}{bl:>11}{r2:>8.3f}   {rbl:>11}{rr2:>8.3f}   {er2:>9.3f}")
    lines.append(f"written: {Path(run_dir) / 'probes.json'}, probes.png")
    typer.echo("\n".join(lines))


@app.command()
def lens(
    run_dir: Path = typer.Argument(..., help="a run directory (regression or token workload)"),
    n_prompts: int = typer.Option(
        2000, "--n-prompts", min=1, help="prompts (token workloads: sequences, at most 512) to average over"
    ),
    seed: int = typer.Option(0, min=0, help="prompt seed"),
    loops: Optional[int] = typer.Option(None, min=1, help="loop iterations (looped models; default: model.loops)"),
    min_examples: Optional[int] = typer.Option(
        None, "--min-examples", min=0, help="average over queries with at least this many examples (default: d)"
    ),
):
    """Logit lens: the read-out applied to every layer; write lens.json and lens.png into the run."""
    from iclab.analysis.lens import logit_lens

    rec = logit_lens(run_dir, n_prompts=n_prompts, seed=seed, loops=loops, min_examples=min_examples)
    if rec.get("family") == "sequence":
        lines = [f"{'layer':>6}{'loss':>9}{'accuracy':>10}"]
        lines += [
            f"{lab:>6}{v:>9.4f}{a:>10.4f}" for lab, v, a in zip(rec["layers"], rec["loss"], rec["token_accuracy"])
        ]
        lines.append(
            f"(cross-entropy in nats per counted token over {rec['n_tokens']:,} tokens; the model: "
            f"{rec['model_loss']:.4f})\nwritten: {Path(run_dir) / 'lens.json'}, lens.png"
        )
        typer.echo("\n".join(lines))
        return
    lines = [f"{'layer':>6}{'error':>9}{'at ' + str(rec['n_points'] - 1):>9}"]
    lines += [f"{lab:>6}{e:>9.4f}{el:>9.4f}" for lab, e, el in zip(rec["layers"], rec["error"], rec["error_last"])]
    lines.append(f"(normalized squared error; 'error' averages the queries with >= {rec['min_examples']} examples)")
    lines.append(f"written: {Path(run_dir) / 'lens.json'}, lens.png")
    typer.echo("\n".join(lines))
