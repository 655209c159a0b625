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
                + (f" (adaptive up to {', '.join(f'{s} {n}' for s, n in e.max_seeds.items())})" if e.max_seeds else "")
                + (f"; {mins}" if mins else ""),
                f"    claim:     {e.claim}",
                f"    criterion: {e.criterion}",
                *[f"    test:      {t.describe()}" for t in e.tests],
            ]
        else:
            lines += [f"{e.name}  [{e.source}]  NOT BUILT ({e.issue})", f"    claim:     {e.claim}"]
    return "\n".join(lines)


@app.command()
def reproduce(
    names: Optional[list[str]] = typer.Argument(None, help="entries to run (see --list); --all runs every built one"),
    list_: bool = typer.Option(False, "--list", help="show every entry with its claim, criterion, tests and margins"),
    all_: bool = typer.Option(False, "--all", help="run every built entry"),
    scale: str = typer.Option("tiny", help="tiny: 2 CPU cores, minutes; full: the paper's setting (a GPU)"),
    seeds: Optional[int] = typer.Option(None, min=1, help="seeds 0..N-1 (default: the entry's, 5 at tiny scale)"),
    out: Path = typer.Option(Path("runs/reproduce"), help="runs and results (finished runs are reused)"),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="key=value override for every config (changes the runs)"
    ),
    workers: int = typer.Option(1, min=1, help="runs trained in parallel (through the run engine's local backend)"),
    summary: bool = typer.Option(False, "--summary", help="print a Markdown table of every result under OUT"),
    adaptive: bool = typer.Option(
        False,
        "--adaptive",
        help="while INCONCLUSIVE, add the seeds the observed spread needs, up to the entry's maximum",
    ),
    recheck: bool = typer.Option(
        False, "--recheck", help="decide the verdicts again from the per-seed values in OUT's result.json (no runs)"
    ),
):
    """Train (or reuse) the runs of a headline result, decide its pre-registered tests on the per-seed values and
    print SUPPORTED, CONTRADICTED or INCONCLUSIVE with the effects and their intervals.

    Exit code 0 when no entry is CONTRADICTED, 1 when one is. Writes OUT/NAME/SCALE/{result.json, figure.png,
    report.html}."""
    from iclab.registry import REPRODUCTIONS
    from iclab.reproduce.recheck import next_seeds
    from iclab.reproduce.runner import entries
    from iclab.reproduce.runner import reproduce as run
    from iclab.runs import RunError

    if list_:
        typer.echo(_list())
        return
    if summary:
        from iclab.reproduce.recheck import summary_table

        typer.echo(summary_table(out), nl=False)
        return
    if all_:
        names = [e.name for e in entries() if e.built]
    if not names:
        raise RunError("name an entry (iclab reproduce --list), or give --all")
    verdicts = {}
    for name in names:
        if recheck:
            from iclab.reproduce.recheck import recheck as decide_again

            res = decide_again(name, out, scale)
            typer.echo(f"{res['verdict']} {name}: {res['summary']}")
            for t in res["tests"]:
                typer.echo(f"  {t['line']}")
        else:
            res = run(
                name, scale=scale, seeds=seeds, out=out, overrides=list(set_ or []), workers=workers, log=typer.echo
            )
            most = REPRODUCTIONS.get(name).max_seeds.get(scale) if adaptive and seeds is None else None
            while most is not None and (more := next_seeds(res, most)) is not None:
                typer.echo(f"{name}: INCONCLUSIVE at {res['seeds']} seeds; running {more} (at most {most})")
                res = run(
                    name,
                    scale=scale,
                    seeds=more,
                    out=out,
                    overrides=list(set_ or []),
                    workers=workers,
                    log=typer.echo,
                )
        verdicts[name] = res["verdict"]
    if len(names) > 1:
        typer.echo(
            ", ".join(
                f"{sum(v == s for v in verdicts.values())} {s}" for s in ("SUPPORTED", "CONTRADICTED", "INCONCLUSIVE")
            )
        )
    if "CONTRADICTED" in verdicts.values():
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
