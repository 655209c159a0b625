"""The `iclab` application object and its error handling: every expected failure is one line, exit 2."""

from __future__ import annotations

import functools
import sys
import warnings

import typer
from typer.core import TyperGroup


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


class _OneLineErrors(TyperGroup):
    """Usage errors (a missing argument, an unknown option, a bad option value) as one line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as e:  # click's exceptions (vendored by typer or not) are recognized by their interface
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            if type(e).__name__ == "NoArgsIsHelpError":  # `iclab` alone prints the help
                e.show()
            else:
                hint = ""
                if getattr(e, "ctx", None) is not None:
                    hint = f" (see '{e.ctx.command_path} --help')"
                typer.secho(f"error: {_one_line(e.format_message())}{hint}", fg="red", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_OneLineErrors,
    help="iclab: train and evaluate transformers on in-context learning of function classes and on token sequences.",
)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    typer.secho(f"warning: {_one_line(message)}", fg="yellow", err=True)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"  # null: a baseline not evaluated at that position


def _clean_errors(fn):
    """Every expected failure is one readable line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from iclab.config import ConfigError
        from iclab.evaluation.multiple_choice import MultipleChoiceError
        from iclab.registry import UnknownNameError
        from iclab.runs import RunError
        from iclab.training.checkpoint import CheckpointError
        from iclab.training.device import TrainingError
        from iclab.training.distributed import DistributedError
        from iclab.training.trainer import Interrupted
        from iclab.workloads.base import EvalError
        from iclab.workloads.sequence.corpus import CorpusError
        from iclab.workloads.sequence.tokenizers import TokenizerError

        expected = (
            ConfigError,
            RunError,
            CheckpointError,
            TrainingError,
            UnknownNameError,
            OSError,
            EvalError,
            CorpusError,
            TokenizerError,
            MultipleChoiceError,
            DistributedError,
        )
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except expected as e:
            typer.secho(f"error: {_one_line(e)}", fg="red", err=True)
            raise typer.Exit(2)
        except Interrupted as e:
            typer.secho(f"{e}; continue with: iclab train --resume {e.path.parent.parent}", fg="yellow", err=True)
            raise typer.Exit(130)
        except KeyboardInterrupt:
            typer.secho("interrupted", fg="yellow", err=True)
            raise typer.Exit(130)

    return wrapper
