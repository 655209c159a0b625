"""The `iclab` application object and its error handling, in one place (`_OneLineErrors`):

- an `iclab.errors.IclabError` (bad config, run, checkpoint, data, option ...) or an OSError: the message
  as one line on stderr, exit 2; a usage error (missing argument, unknown option, bad value): one line, exit 2;
- an interrupted training (the trainer saved a checkpoint): how to resume, exit 130; Ctrl-C: exit 130;
- warnings: one line each on stderr.

Commands therefore raise the library's errors as they are; none converts or catches them by hand.
"""

from __future__ import annotations

import difflib
import sys
import warnings

import typer
from typer.core import TyperGroup

from iclab.errors import IclabError


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _show_warning(message, category, filename, lineno, file=None, line=None):
    typer.secho(f"warning: {_one_line(message)}", fg="yellow", err=True)


def _interrupted(e: KeyboardInterrupt) -> None:
    if getattr(e, "path", None) is not None:  # the trainer's Interrupted: a checkpoint was saved at e.path
        typer.secho(f"{e}; continue with: iclab train --resume {e.path.parent.parent}", fg="yellow", err=True)
    else:
        typer.secho("interrupted", fg="yellow", err=True)


#: commands whose first argument may be a word naming a sub-action (`iclab sweep status DIR`): a mistyped
#: word close to one of them is a usage error with a suggestion, not a config file that does not exist
_SUB_ACTIONS = {"sweep": ("status",)}


class _OneLineErrors(TyperGroup):
    """Every expected failure of every command: one line on stderr and a non-zero exit code."""

    def resolve_command(self, ctx, args):
        """click suggests close command names itself; this adds the sub-actions of `_SUB_ACTIONS`."""
        name, cmd, rest = super().resolve_command(ctx, args)
        words = _SUB_ACTIONS.get(name or "", ())
        first = next((a for a in rest if not a.startswith("-")), None)
        if words and first is not None and first not in words and "." not in first and "/" not in first:
            close = difflib.get_close_matches(first, words, n=1, cutoff=0.6)
            if close:
                from click.exceptions import UsageError

                raise UsageError(f"no such action {first!r} of `iclab {name}`; did you mean {close[0]!r}?", ctx)
        return name, cmd, rest

    def invoke(self, ctx):
        """Run the command: the library's errors, an interruption and warnings (what a command raises)."""
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except (IclabError, OSError) as e:
            typer.secho(f"error: {_one_line(e)}", fg="red", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:  # before typer turns it into a silent exit 130
            _interrupted(e)
            raise typer.Exit(130) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Usage errors (a missing argument, an unknown option, a bad option value): one line, exit 2."""
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
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_OneLineErrors,
    help="iclab: train and evaluate transformers on in-context learning of function classes and on token sequences.",
)


def _version(value: bool) -> None:
    if value:
        from iclab import __version__

        typer.echo(f"iclab {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="print the version of iclab and exit"
    ),
):
    pass
