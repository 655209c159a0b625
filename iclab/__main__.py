"""`python -m iclab ...` runs the command line (e.g. under torchrun)."""

from iclab.cli import app

app()
