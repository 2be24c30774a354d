"""The ``drdfl`` command line: parses arguments, calls the library, prints.

Sub-commands live in one module each (``cli/data.py`` …) and are mounted here. Errors that
drdfl raises on bad input (:class:`drdfl.errors.DrdflError`) become one line on stderr and
exit status 2, as does a file that cannot be written (full disk, a file where a directory
belongs); Ctrl-C exits 130 with a line saying how to resume; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import sys

import typer

from drdfl.errors import DrdflError

app = typer.Typer(
    name="drdfl",
    help="Distributionally robust decision-focused learning for LLM-serving capacity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


def _mount() -> None:
    from drdfl.cli import data, diffusion, run, sweep, train

    app.add_typer(data.app, name="data", help="Read, bin, describe and synthesise workload data.")
    app.add_typer(diffusion.app, name="diffusion", help="Train, sample and judge diffusion models.")
    app.command("train")(train.train)
    app.command("evaluate")(train.evaluate)
    app.command("run")(run.run)
    app.command("report")(run.report)
    app.command("sweep")(sweep.sweep)


_mount()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``drdfl`` script."""
    from drdfl.cli.common import Interrupted

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = app(args=argv, standalone_mode=False)
    except Interrupted as exc:
        typer.echo(str(exc), err=True)
        sys.exit(130)
    except DrdflError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: bad or missing options
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code or 2)
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (--debug shows the traceback)", err=True)
        sys.exit(1)
    # Without standalone mode click returns the code of typer.Exit instead of exiting.
    sys.exit(code if isinstance(code, int) else 0)
