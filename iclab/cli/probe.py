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
    tag: Optional[str] = typer.Option(
        None, help="write probes_TAG.json / .png (default: probes.json, or probes_<options>.json when options differ)"
    ),
    force: bool = typer.Option(False, "--force", help="replace an existing result probed for other targets"),
):
    """Fit linear probes for algorithm targets at every layer (numbered from 0, as in `iclab surgery`); write
    probes.json and probes.png into the run (other options: probes_<options>.json, e.g. probes_seed3.json)."""
    from iclab.analysis.probes import best_layers, run_probes
    from iclab.files import check_replace, options_tag

    opts = dict(n_prompts=n_prompts, seed=seed, min_examples=min_examples, loops=loops, ridge_lambda=ridge_lambda)
    tag = tag or options_tag(opts, {"n_prompts": 2000, "seed": 0, "min_examples": 1, "ridge_lambda": 0.1}) or None
    path = Path(run_dir) / f"probes{'_' + tag if tag else ''}.json"
    check_replace(path, {"targets": list(target)}, ("targets",), force)
    rec = run_probes(
        run_dir,
        list(target),
        n_train=n_prompts,
        seed=seed,
        min_examples=min_examples,
        loops=loops,
        ridge_lam=ridge_lambda,
        tag=tag,
    )
    w = max(len(t) for t in rec["targets"]) + 2
    lines = [f"{'target':<{w}}{'best layer':>11}{'R^2':>8}   {'random init':>11}{'R^2':>8}   {'embed R^2':>9}"]
    for name, bl, r2, rbl, rr2, er2 in best_layers(rec):
        lines.append(f"{name:<{w}}{bl:>11}{r2:>8.3f}   {rbl:>11}{rr2:>8.3f}   {er2:>9.3f}")
    lines.append(f"written: {path}, {path.with_suffix('.png').name}")
    typer.echo("\n".join(lines))


@app.command()
def lens(
    run_dir: Path = typer.Argument(..., help="a run directory (regression or token workload)"),
    n_prompts: Optional[int] = typer.Option(
        None,
        "--n-prompts",
        min=1,
        help="prompts to average over (default 2000); token workloads: sequences (default and at most 512)",
    ),
    seed: int = typer.Option(0, min=0, help="prompt seed"),
    loops: Optional[int] = typer.Option(None, min=1, help="loop iterations (looped models; default: model.loops)"),
    min_examples: Optional[int] = typer.Option(
        None, "--min-examples", min=0, help="average over queries with at least this many examples (default: d)"
    ),
    tag: Optional[str] = typer.Option(
        None, help="write lens_TAG.json / lens_TAG.png (default: lens.json, or lens_<options>.json when options differ)"
    ),
):
    """Logit lens: the read-out applied to every layer (numbered from 0, as in `iclab surgery`); write lens.json and
    lens.png into the run (other options: lens_<options>.json, e.g. lens_loops3.json)."""
    from iclab.analysis.lens import logit_lens
    from iclab.files import options_tag

    opts = {"n_prompts": n_prompts, "seed": seed, "loops": loops, "min_examples": min_examples}
    tag = tag or options_tag(opts, {"seed": 0}) or None
    rec = logit_lens(run_dir, n_prompts=n_prompts, seed=seed, loops=loops, min_examples=min_examples, tag=tag)
    written = f"written: {rec['path']}, {Path(rec['path']).with_suffix('.png').name}"
    if rec.get("family") == "sequence":
        lines = [f"{'layer':>6}{'nats':>9}{'bits':>9}{'accuracy':>10}"]
        lines += [
            f"{lab:>6}{v:>9.4f}{b:>9.4f}{a:>10.4f}"
            for lab, v, b, a in zip(rec["layers"], rec["loss"], rec["bits"], rec["token_accuracy"])
        ]
        lines.append(
            f"(cross-entropy per counted token, in nats and bits, over {rec['n_prompts']} sequences = "
            f"{rec['n_tokens']:,} tokens (at most 512 sequences); the model: {rec['model_loss']:.4f} nats = "
            f"{rec['model_bits']:.4f} bits)\n{written}"
        )
        typer.echo("\n".join(lines))
        return
    lines = [f"{'layer':>6}{'error':>9}{'at ' + str(rec['n_points'] - 1):>9}"]
    lines += [f"{lab:>6}{e:>9.4f}{el:>9.4f}" for lab, e, el in zip(rec["layers"], rec["error"], rec["error_last"])]
    lines.append(
        f"(normalized squared error over {rec['n_prompts']} prompts; 'error' averages the queries with >= "
        f"{rec['min_examples']} examples)"
    )
    lines.append(written)
    typer.echo("\n".join(lines))
