"""`iclab demo`: the optimization lecture's demonstrations (iclab/demos/), one command each."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from iclab.cli.app import app


@app.command()
def demo(
    name: str = typer.Argument(..., help="trajectories | noise-floor | heavy-tail"),
    out: Path = typer.Option(Path("demos"), "--out", "-o", help="directory for NAME.json and NAME.png"),
    seed: int = typer.Option(0, min=0, help="seed of the data, noise and minibatches"),
    option: Optional[list[str]] = typer.Option(
        None, "--option", help="key=value of the demo's run() (repeatable), e.g. steps=500, offset=0 (heavy-tail)"
    ),
    threads: int = typer.Option(1, min=1, help="torch CPU threads"),
):
    """Optimizer trajectories on 2-D test functions, SGD's noise floor, heavy-tailed class imbalance."""
    import torch

    from iclab.demos import run_demo
    from iclab.runs import RunError

    torch.set_num_threads(threads)
    opts = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise RunError(f"--option {item!r}: expected key=value")
        opts[key.strip()] = value.strip()
    result = run_demo(name, out, seed=seed, options=opts)
    typer.echo(_summary(name, result))
    typer.echo(f"wrote {out / (name + '.json')} and {out / (name + '.png')}")


def _summary(name: str, r: dict) -> str:
    if name == "trajectories":
        lines = [f"f - f* after {r['steps']} steps (lr tuned per method):"]
        fns = list(r["functions"])
        lines.append(f"{'method':<10}" + "".join(f"{f:>22}" for f in fns))
        for m in r["functions"][fns[0]]["methods"]:
            cells = [r["functions"][f]["methods"][m] for f in fns]
            lines.append(
                f"{m:<10}"
                + "".join(
                    f"{c['final_gap'] if c['final_gap'] is not None else float('inf'):>12.2e} (lr {c['lr']:<5.2g})"
                    for c in cells
                )
            )
        return "\n".join(lines)
    if name == "noise-floor":
        return "\n".join(
            [f"mean f - f* over the last recorded iterations (of {r['steps']}):"]
            + [f"  SGD, step {k}: {v:.2e}" for k, v in r["tail_mean_gap"].items()]
        )
    lines = [f"training loss per frequency group after {r['steps']} steps (group 1 = most frequent):"]
    for n, run in r["runs"].items():
        lines.append(f"  {n:<5} lr {run['lr']:<6g} " + " ".join(f"{v:.2f}" for v in run["per_bucket"][-1]))
    return "\n".join(lines)
