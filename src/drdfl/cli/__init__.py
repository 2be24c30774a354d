"""The ``drdfl`` command line: parses arguments, calls the library, prints.

Sub-commands live in one module each (``cli/data.py`` …) and are mounted here; a module is
imported only when its command runs, so ``drdfl --help`` loads neither torch nor pandas. Errors that
drdfl raises on bad input (:class:`drdfl.errors.DrdflError`) become one line on stderr and
exit status 2, as does a file that cannot be written (full disk, a file where a directory
belongs); Ctrl-C exits 130 (SIGTERM 143) with a line saying how to resume; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import signal
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from drdfl.errors import DrdflError

#: command -> (module, attribute: a Typer app or a command function, help in the listing;
#: ``None`` takes the function's docstring).
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "train": ("drdfl.cli.train", "train", None),
    "evaluate": ("drdfl.cli.train", "evaluate", None),
    "run": ("drdfl.cli.run", "run", None),
    "report": ("drdfl.cli.run", "report", None),
    "plan": ("drdfl.cli.operate", "plan", None),
    "backtest": ("drdfl.cli.operate", "backtest", None),
    "serve": ("drdfl.cli.operate", "serve", None),
    "sweep": ("drdfl.cli.sweep", "sweep", None),
    "data": ("drdfl.cli.data", "app", "Read, bin, describe and synthesise workload data."),
    "diffusion": ("drdfl.cli.diffusion", "app", "Train, sample and judge diffusion models."),
}


def _docstring(module: str, function: str) -> str | None:
    """A function's docstring, read from its source without importing the module."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    try:
        with open(spec.origin, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except OSError:  # no source file (e.g. a zipped install): the listing goes without
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return ast.get_docstring(node)
    return None


class _Deferred(TyperCommand):
    """Stands for a command in listings until the command is run."""

    def __init__(self, name: str) -> None:
        module, attr, about = COMMANDS[name]
        super().__init__(name, help=about or _docstring(module, attr))


def _load(name: str) -> Any:
    """The command ``name``, its module imported (a Typer group or command)."""
    module, attr, about = COMMANDS[name]
    target = getattr(importlib.import_module(module), attr)
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        holder = typer.Typer()
        holder.command(name)(target)
        command = typer.main.get_command(holder)
    command.name = name
    if about is not None:
        command.help = about
    return command


class _LazyGroup(TyperGroup):
    """The root group: lists every command, imports a command's module only to run it."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        for name in COMMANDS:
            self.commands.setdefault(name, _Deferred(name))

    def resolve_command(
        self, ctx: typer.Context, args: list[str]
    ) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, _Deferred):
            command = self.commands[name] = _load(name)
        return name, command, rest


app = typer.Typer(
    cls=_LazyGroup,
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``drdfl`` script."""
    from drdfl.cli.common import raise_terminated

    # SIGTERM (a scheduler's or timeout's stop) is taken like Ctrl-C, unless the caller
    # handles it already; the handler is the caller's again afterwards.
    previous = signal.getsignal(signal.SIGTERM)
    received: list[int] = []

    def terminated(signum: int, frame: object) -> None:
        received.append(signum)
        raise_terminated(signum, frame)

    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminated)
    try:
        code = _main(argv)
    finally:
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)
    # typer turns an interrupt outside a resumable command's work into status 130.
    sys.exit(128 + signal.SIGTERM if code == 128 + signal.SIGINT and received else code)


def _main(argv: list[str] | None) -> int:
    """Run the command line; its exit status (one-line messages printed)."""
    from drdfl.cli.common import Interrupted

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = app(args=argv, standalone_mode=False)
    except Interrupted as exc:
        typer.echo(str(exc), err=True)
        return exc.code
    except DrdflError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort as exc:
        # typer takes an EOFError for a closed prompt: one from reading a file is an error.
        cause = exc.__cause__
        if not isinstance(cause, EOFError):
            typer.echo("aborted", err=True)
            return 130
        if debug:
            raise cause from None
        typer.echo(f"error: EOFError: {cause} (--debug shows the traceback)", err=True)
        return 1
    except typer.TyperException as exc:  # usage errors: bad or missing options
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        return exc.exit_code or 2
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 2
    except Exception as exc:
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (--debug shows the traceback)", err=True)
        return 1
    # Without standalone mode click returns the code of typer.Exit instead of exiting.
    return code if isinstance(code, int) else 0
