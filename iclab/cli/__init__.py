"""The `iclab` command line. Commands live in small modules, each registering on one Typer app:

    run.py      train, eval, plot
    tokens.py   data prepare, sample (token workloads)
    tools.py    list, curriculum, bench
"""

from __future__ import annotations

import sys

from iclab.cli.app import app
from iclab.cli import run, tokens, tools  # noqa: F401,E402  (register the commands)
from iclab.cli import analysis  # noqa: F401,E402  (iclab surgery)

__all__ = ["app", "main"]


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
