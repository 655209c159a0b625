"""`iclab surgery`: analyses of a trained run (see iclab/analysis/surgery.py for the ops and the outputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command()
def surgery(
    run_dir: Path = typer.Argument(..., help="a run directory written by `iclab train`"),
    op: Optional[list[str]] = typer.Option(
        None,
        "--op",
        help="a variant (repeatable): duplicate:i, repeat:i-j:xN, drop:i, swap:i,j, reverse, shuffle[:SEED], "
        "loops:N, identity; the original is always included",
    ),
    n_prompts: Optional[int] = typer.Option(
        None, "--n-prompts", min=1, help="prompts / sequences (default: eval.n_prompts)"
    ),
    seed: Optional[int] = typer.Option(
        None, min=0, max=2**63 - 1, help="seed of the evaluation data (default: eval.seed)"
    ),
    out_tag: Optional[str] = typer.Option(
        None,
        "--out-tag",
        "--tag",
        help="write surgery_TAG.json / .png (default: surgery.json, or surgery_<options>.json when options differ)",
    ),
    force: bool = typer.Option(False, "--force", help="replace an existing result made with other ops"),
):
    """Layer surgery: evaluate the trained model with its blocks (numbered from 0) duplicated, dropped, swapped or
    shuffled."""
    from iclab.analysis.surgery import SurgeryError, run_surgery, summary_rows
    from iclab.files import options_tag

    if not op:
        raise SurgeryError("give at least one --op (e.g. --op duplicate:0, --op swap:0,1, --op loops:2); see --help")
    tag = out_tag or options_tag({"n_prompts": n_prompts, "seed": seed}) or None
    res = run_surgery(run_dir, list(op), n_prompts=n_prompts, seed=seed, tag=tag, force=force)
    what = (
        f"normalized squared error at k={res['summary_position']}"
        if res["family"] == "regression"
        else f"token accuracy at length {res['seq_len']}"
    )
    rows = summary_rows(res)
    w = max(len("variant"), *(len(r[0]) for r in rows))
    wo = max(len("order"), *(len(r[1]) for r in rows))
    lines = [f"{what} ({res['n_prompts']} prompts, seed {res['seed']})", f"{'variant':<{w}}  {'order':<{wo}}  value"]
    lines += [f"{name:<{w}}  {order:<{wo}}  {value:.4f}" for name, order, value in rows]
    lines.append(f"wrote {res['path']} and {res['figure']}")
    typer.echo("\n".join(lines))
