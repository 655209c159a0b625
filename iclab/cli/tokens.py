"""`iclab data prepare` and `iclab sample`: token workloads' data and text generation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app

data_app = typer.Typer(no_args_is_help=True, help="Prepare token data ahead of training.")
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def prepare(
    config: Optional[Path] = typer.Argument(
        None, help="a config whose task is language_model (its corpus options are used)"
    ),
    overrides: Optional[list[str]] = typer.Argument(None, help="config overrides"),
    corpus: Optional[str] = typer.Option(
        None, help="instead of a config: a UTF-8 text file, python_stdlib or hf:NAME[:CONFIG]"
    ),
    tokenizer: str = typer.Option("char", help="with --corpus: char | byte | gpt2"),
    val_fraction: float = typer.Option(0.1, help="with --corpus: the share of tokens held out for validation"),
    max_bytes: Optional[int] = typer.Option(None, min=1, help="with --corpus: use only the first N bytes"),
    data_dir: Path = typer.Option(Path("data"), help="with --corpus: where prepared corpora live"),
):
    """Encode a corpus once into memory-mapped train.bin / val.bin (reused by every run with the same settings)."""
    from iclab.config import ConfigError, load_config
    from iclab.workloads.sequence.corpus import load_prepared
    from iclab.workloads.sequence.corpus import prepare as prepare_corpus

    if (config is None) == (corpus is None):
        raise typer.BadParameter("give a CONFIG or --corpus (not both)")
    if config is not None:
        cfg = load_config(config, overrides or [])
        if cfg.task.name != "language_model":
            raise ConfigError(f"{config}: task.name is {cfg.task.name!r}; only language_model reads a corpus")
        o = cfg.task.options
        path, reused = prepare_corpus(
            o["corpus"],
            o["tokenizer"],
            val_fraction=o["val_fraction"],
            data_root=Path(o["data_dir"]),
            glob=o["glob"],
            max_bytes=o["max_bytes"],
            split=o.get("split"),
            text_field=o.get("text_field"),
        )
    else:
        path, reused = prepare_corpus(
            corpus, tokenizer, val_fraction=val_fraction, data_root=data_dir, max_bytes=max_bytes
        )
    d = load_prepared(path, check_ids=False)
    src = d.meta["source"]
    typer.echo(
        f"{'reused' if reused else 'prepared'} {path}: {d.meta['n_train']:,} train + {d.meta['n_val']:,} val "
        f"tokens, vocabulary {d.vocab_size} ({d.tokenizer.kind}), corpus sha256 {src['sha256'][:16]}"
    )


@app.command()
def sample(
    run_dir: Path = typer.Argument(..., help="a language-model run directory"),
    prompt: str = typer.Option("", help="the text to continue (empty: start from a newline)"),
    tokens: int = typer.Option(200, min=1, help="tokens to generate"),
    temperature: float = typer.Option(1.0, min=0.0, help="softmax temperature (0: greedy)"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="sample among the k most likely tokens"),
    seed: int = typer.Option(0, min=0, help="seed of the sampling"),
    loops: Optional[int] = typer.Option(None, min=1, help="loop iterations (looped models)"),
):
    """Print a continuation of PROMPT sampled from a trained language model."""
    import torch

    from iclab.runs import RunError, load_run_config, load_run_model
    from iclab.training.device import run_device
    from iclab.workloads import make_workload
    from iclab.workloads.sequence.generate import generate

    cfg = load_run_config(run_dir)
    workload = make_workload(cfg, run_dir)
    tok = getattr(workload, "tokenizer", None)
    if tok is None:
        raise RunError(
            f"{run_dir}: task {cfg.task.name} has no text tokenizer; `iclab sample` needs a language-model run"
        )
    device = run_device(cfg.training.device)
    model = load_run_model(run_dir, cfg, device, workload)
    ids = tok.encode(prompt or "\n")
    idx = torch.as_tensor(ids.astype("int64"), device=device).unsqueeze(0)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    out = generate(model, idx, tokens, temperature=temperature, top_k=top_k, generator=gen, loops=loops)
    typer.echo(prompt + tok.decode(out[0, len(ids) :].cpu()))
