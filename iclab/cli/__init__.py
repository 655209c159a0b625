"""The `iclab` command line. Commands live in small modules, each registering on one Typer app:

    run.py      train, eval, plot, compare
    tokens.py   data prepare, sample (token workloads)
    tools.py    list, curriculum, bench
    analysis.py surgery;  probe.py: probe, lens
    reproduce.py reproduce, report
"""

from __future__ import annotations

import sys

from iclab.cli.app import app
from iclab.cli import run, tokens, tools  # noqa: F401,E402  (register the commands)
from iclab.cli import analysis  # noqa: F401,E402  (iclab surgery)
from iclab.cli import probe  # noqa: F401,E402  (iclab probe, iclab lens)
from iclab.cli import demo  # noqa: F401,E402  (iclab demo)
from iclab.cli import optbench  # noqa: F401,E402  (iclab optbench)
from iclab.cli import dynamics  # noqa: F401,E402  (iclab landscape, sharpness, dynamics ...)
from iclab.cli import sweep  # noqa: F401,E402  (iclab sweep, iclab sweep status)
from iclab.cli import reproduce  # noqa: F401,E402  (iclab reproduce, iclab report)

__all__ = ["app", "main"]


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
