"""The `iclab` command line. Commands live in small modules, each registering on one Typer app:

run.py      train, eval, plot, compare
tokens.py   data prepare, sample (token workloads)
tools.py    list, curriculum, bench
analysis.py surgery;  probe.py: probe, lens
reproduce.py reproduce, report
"""

from __future__ import annotations

import sys

from iclab.cli import (  # noqa: F401,E402  (register the commands)
    analysis,  # noqa: F401,E402  (iclab surgery)
    demo,  # noqa: F401,E402  (iclab demo)
    dynamics,  # noqa: F401,E402  (iclab landscape, sharpness, dynamics ...)
    heads,  # noqa: F401,E402  (iclab heads)
    optbench,  # noqa: F401,E402  (iclab optbench)
    probe,  # noqa: F401,E402  (iclab probe, iclab lens)
    reproduce,  # noqa: F401,E402  (iclab reproduce, iclab report)
    run,
    sweep,  # noqa: F401,E402  (iclab sweep, iclab sweep status)
    tokens,
    tools,
)
from iclab.cli.app import app

__all__ = ["app", "main"]


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
