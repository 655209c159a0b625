"""`iclab reproduce` (the headline results, each checking itself) and `iclab report` (one HTML page)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


def _list() -> str:
    from iclab.reproduce.runner import entries

    lines = []
    for e in entries():
        if e.built:
            mins = ", ".join(f"{s} ~{m:g} min" for s, m in e.minutes.items())
            lines += [
                f"{e.name}  [{e.source}]  scales: {', '.join(e.configs)}; seeds: "
                f"{', '.join(f'{s} {n}' for s, n in e.seeds.items() if s in e.configs)}"
                + (f"; {mins}" if mins else ""),
                f"    claim:     {e.claim}",
                f"    criterion: {e.criterion}",
            ]
        else:
            lines += [f"{e.name}  [{e.source}]  NOT BUILT ({e.issue})", f"    claim:     {e.claim}"]
    return "\n".join(lines)


@app.command()
def reproduce(
    names: Optional[list[str]] = typer.Argument(None, help="entries to run (see --list); --all runs every built one"),
    list_: bool = typer.Option(False, "--list", help="show every entry with its claim and criterion"),
    all_: bool = typer.Option(False, "--all", help="run every built entry"),
    scale: str = typer.Option("tiny", help="tiny: 2 CPU cores, minutes; full: the paper's setting (a GPU)"),
    seeds: Optional[int] = typer.Option(None, min=1, help="seeds 0..N-1 (default: the entry's, 5 at tiny scale)"),
    out: Path = typer.Option(Path("runs/reproduce"), help="runs and results (finished runs are reused)"),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="key=value override for every config (changes the runs)"
    ),
    workers: int = typer.Option(1, min=1, help="runs trained in parallel (through iclab sweep's local backend)"),
    summary: bool = typer.Option(False, "--summary", help="print a Markdown table of every result under OUT"),
):
    """Train (or reuse) the runs of a headline result, check its criterion and print PASS or FAIL with the numbers.

    Exit code 0 when every entry passes, 1 when one fails.
    Writes OUT/NAME/SCALE/{result.json, figure.png, report.html}."""
    from iclab.reproduce.runner import entries
    from iclab.reproduce.runner import reproduce as run
    from iclab.runs import RunError

    if list_:
        typer.echo(_list())
        return
    if summary:
        from iclab.reproduce.runner import summary_table

        typer.echo(summary_table(out), nl=False)
        return
    if all_:
        names = [e.name for e in entries() if e.built]
    if not names:
        raise RunError("name an entry (iclab reproduce --list), or give --all")
    failed = []
    for name in names:
        res = run(name, scale=scale, seeds=seeds, out=out, overrides=list(set_ or []), workers=workers, log=typer.echo)
        if not res["passed"]:
            failed.append(name)
    if len(names) > 1:
        typer.echo(
            f"{len(names) - len(failed)} of {len(names)} pass" + (f"; FAIL: {', '.join(failed)}" if failed else "")
        )
    if failed:
        raise typer.Exit(1)


@app.command()
def report(
    paths: list[Path] = typer.Argument(
        ..., help="run directories, or directories holding runs, reproductions, comparisons"
    ),
    out: Path = typer.Option(Path("report.html"), help="the HTML file to write"),
    title: Optional[str] = typer.Option(None, help="page title"),
):
    """One self-contained HTML page (figures embedded, metrics and baselines, configs, environment)."""
    from iclab.report import write_report

    path = write_report(paths, out, title)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
