"""The `iclab` command line. Commands live in small modules, each registering on one Typer app:

app.py       the Typer app and the one place where errors become one line (exit 2)
run.py       train, eval, plot, compare
tokens.py    data prepare, sample (token workloads)
tools.py     list, curriculum, bench
analysis.py  surgery;  probe.py: probe, lens;  heads.py: heads;  dynamics.py: landscape, sharpness, dynamics ...
reproduce.py reproduce, report;  demo.py: demo;  sweep.py: sweep;  optbench.py: optbench
interop.py   export, import (Hugging Face, nanoGPT)
"""

from __future__ import annotations

import sys

from iclab.cli import (  # noqa: F401  (importing a command module registers its commands on `app`)
    analysis,
    demo,
    dynamics,
    heads,
    interop,
    optbench,
    probe,
    reproduce,
    run,
    sweep,
    tokens,
    tools,
)
from iclab.cli.app import app

__all__ = ["app", "main"]


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
