"""`python -m iclab.cli ...` runs the command line."""

from iclab.cli import app

app()
