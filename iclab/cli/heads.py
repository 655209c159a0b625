"""`iclab heads`: attention patterns, induction scores and head ablation of a run (iclab/analysis/heads*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command()
def heads(
    run_dir: Path = typer.Argument(..., help="a run directory written by `iclab train`"),
    ablate: Optional[str] = typer.Option(
        None, "--ablate", help="also ablate this set of heads together: LAYER.HEAD,... (from 0, as `iclab surgery`)"
    ),
    over_training: bool = typer.Option(
        False, "--over-training", help="the phase change from the run's kept checkpoints (heads_over_training.*)"
    ),
    n_sequences: Optional[int] = typer.Option(
        None, "--n-sequences", min=2, help="evaluation sequences / prompts (default: 128; regression: eval.n_prompts)"
    ),
    seed: int = typer.Option(0, min=0, help="seed of the random data (repeated blocks, prompts, random head sets)"),
    top: int = typer.Option(2, "--top", min=1, help="heads in the top set ablated together (and in each random set)"),
    n_random: int = typer.Option(5, "--n-random", min=0, help="random head sets for comparison"),
    out_tag: Optional[str] = typer.Option(None, "--out-tag", help="write heads_TAG.json / heads_TAG.png"),
):
    """Score every head (patterns, induction, copying), ablate each, and run the controls; write heads.json/png."""
    from iclab.analysis.heads_run import run_heads, set_effect, top_rows

    if over_training:
        from iclab.analysis.heads_training import over_training as run_over

        rec = run_over(run_dir, n_sequences=n_sequences, seed=seed)
        typer.echo(
            f"{len(rec['steps'])} checkpoints; best {rec['score_key']} score {rec['best'][0]:.3f} -> "
            f"{rec['best'][-1]:.3f}; {rec['in_context_label']} {rec['in_context'][0]:.3f} -> "
            f"{rec['in_context'][-1]:.3f}\nhalf of the best score's rise first reached at step "
            f"{rec['score_half_step'] or 'never (it did not rise)'}"
            + (
                f", half of the in-context drop at step {rec['in_context_half_step']}"
                if rec["in_context_half_step"] is not None
                else ""
            )
            + f"\nwrote {rec['path']} and {rec['figure']}"
        )
        return
    res = run_heads(
        run_dir, ablate_spec=ablate, n_sequences=n_sequences, seed=seed, top=top, n_random=n_random, tag=out_tag
    )
    key, metric = res["score_key"], res["headline"]["metric"]
    base = res["headline"]["values"][metric]
    lines = [f"{res['headline']['description']}: {base['mean']:.4f} +- {base['ci95']:.4f} ({res['n_sequences']} items)"]
    if key in res["uniform"]:
        lines.append(f"(evenly spread attention would give {key} {res['uniform'][key]:.3f})")
    lines.append(f"{'head':>6} {'reads':>5} {key:>9} {'prev':>6} {'zero abl.':>17} {'mean abl.':>17}")
    for r in top_rows(res):
        z, m = r["zero"], r["mean"]
        it = f"{r['iteration']}:" if res["loops"] > 1 else ""
        lines.append(
            f"{it + r['label']:>6} {r['reads']:>5} {r[key]:>9.3f} {r['prev_token']:>6.3f} "
            f"{z['delta']:>+9.4f}+-{z['ci95']:.4f} {m['delta']:>+9.4f}+-{m['ci95']:.4f}"
        )
    rand = set_effect(res, "random_sets")
    lines.append(
        f"mean ablation of the top {len(res['top_set']['heads'])} ({', '.join(res['top_set']['heads'])}): "
        f"{set_effect(res, 'top_set'):+.4f}; of random sets: "
        + (", ".join(f"{v:+.4f}" for v in rand) if rand else "none")
    )
    if "ablate_set" in res:
        lines.append(
            f"--ablate {','.join(res['ablate_set']['heads'])}: zero {set_effect(res, 'ablate_set', 'zero'):+.4f}, "
            f"mean {set_effect(res, 'ablate_set'):+.4f}"
        )
    c = res.get("controls", {})
    if "random_init" in c:
        lines.append(f"control, random init: best {key} {c['random_init'][key]:.3f} ({c['random_init']['top_head']})")
    if "planted" in c:
        p = c["planted"]
        lines.append(
            f"control, planted induction head {p['top_head']}: induction {p['induction']:.3f}, copying "
            f"{p['copying']:.3f}; in-context score {p['intact']['in_context']:+.3f}, ablated "
            f"{p['ablated']['in_context']:+.3f}"
        )
    lines.append(f"wrote {res['path']} and {res['figure']}")
    typer.echo("\n".join(lines))
