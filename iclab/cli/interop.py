"""`iclab export` and `iclab import`: models in and out of iclab (iclab/interop/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="a run directory written by `iclab train`"),
    out: Path = typer.Argument(..., help="the directory to write"),
    format: str = typer.Option("hf", "--format", help="hf: a Hugging Face transformers GPT-2 directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
):
    """Export a run: language models as GPT2LMHeadModel (+ tokenizer, model card); regression runs as a
    GPT2Model backbone with their read-in/read-out and a loader. Looped and Reflex models are refused."""
    from iclab.interop.hf_export import export_run

    if format != "hf":
        raise typer.BadParameter(f"--format {format!r}: the one format is hf")
    rec = export_run(run_dir, out, overwrite=overwrite)
    typer.echo(f"wrote {out} (step {rec['step']}, task {rec['task']}); load it with transformers' from_pretrained")


@app.command("import")
def import_(
    src: Path = typer.Argument(..., help="a nanoGPT ckpt.pt or a Hugging Face GPT-2 directory"),
    out: Path = typer.Argument(..., help="the run directory to write"),
    corpus: str = typer.Option(
        ..., "--corpus", help="the text the run evaluates on: a UTF-8 file, python_stdlib, hf:NAME"
    ),
    tokenizer: Optional[str] = typer.Option(
        None, "--tokenizer", help="char | byte | gpt2 (default: gpt2 for >= 50257 embeddings, else char)"
    ),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1, help="task.seq_len (default: the block size)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="a config override key=value (repeatable)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
):
    """Import a nanoGPT checkpoint (torch.load weights_only) or a Hugging Face GPT-2 directory as a
    language-model run directory, so iclab eval, sample, surgery, lens and --multiple-choice work on it."""
    from iclab.interop.importers import import_model

    rec = import_model(src, out, corpus, tokenizer=tokenizer, seq_len=seq_len, overrides=set_, overwrite=overwrite)
    notes = "; ".join(f"{k}: {v}" for k, v in rec["notes"].items() if v is not None)
    typer.echo(f"wrote {out} from {rec['kind']} {src}" + (f" ({notes})" if notes else ""))
