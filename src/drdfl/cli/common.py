"""Helpers shared by the CLI modules: config files, interruption and table printing."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from drdfl.config import ExperimentConfig

if TYPE_CHECKING:
    import pandas as pd

# Options shared by the commands that resolve an experiment configuration.
ProfileOption = Annotated[str | None, typer.Option(help="quick (default) | paper | honest")]
ConfigOption = Annotated[Path | None, typer.Option(help="TOML config (may name a profile).")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set train.epochs=5 (repeatable)."),
]
ResumeOption = Annotated[bool, typer.Option(help="Skip units already finished in OUT.")]
DeviceOption = Annotated[
    str | None, typer.Option(help="cpu | cuda | cuda:N | mps (default: the config's).")
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory of trace files (default: $DRDFL_DATA_DIR)."),
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress")]
TestOption = Annotated[
    list[str] | None,
    typer.Option("--test", help="Extra OOD test set: dataset name or file (repeatable)."),
]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``timeout``'s stop), taken like Ctrl-C."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler that stops like Ctrl-C does."""
    raise Terminated


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a command that can be resumed; the message says how and
    ``code`` is the exit status (130 or 143)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def interruptible(command: str, out: Path) -> Iterator[None]:
    """Turn Ctrl-C (or SIGTERM) inside the block into :class:`Interrupted` saying how to
    resume."""
    try:
        yield
    except KeyboardInterrupt as exc:
        code = 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        raise Interrupted(
            f"interrupted; finished units are kept: run the same {command} command with "
            f"--resume --out {out} to continue",
            code,
        ) from None


def experiment_config(
    profile: str | None,
    config: Path | None,
    overrides: list[str] | None,
    device: str | None = None,
    data_dir: Path | None = None,
    tests: list[str] | None = None,
) -> ExperimentConfig:
    """The validated configuration from a profile, a TOML file, ``--set`` options and the
    command's own options (``--test`` files join ``data.extra_tests``); its device is
    checked to exist here, before any work."""
    import json

    from drdfl.config import resolve_config
    from drdfl.device import resolve_device

    items = list(overrides or [])
    if device is not None:
        items.append(f"device={device}")
    if data_dir is not None:
        items.append(f"data.data_dir={json.dumps(str(data_dir))}")
    cfg = resolve_config(profile, config, items)
    if tests:
        # Validated like any key: the suite-specific checks see the --test files.
        extra = [*cfg.data.extra_tests, *tests]
        cfg = resolve_config(profile, config, [*items, f"data.extra_tests={json.dumps(extra)}"])
    resolve_device(cfg.device)
    return cfg


def load_config_file(path: Path | None) -> ExperimentConfig:
    """The experiment config in ``path`` (TOML), or the defaults."""
    if path is None:
        return ExperimentConfig()
    from drdfl.config import load_config

    return load_config(path)


def echo_table(frame: pd.DataFrame, title: str = "", digits: int = 4) -> None:
    """Print ``frame`` (index as the first column) as a rich table."""
    table = Table(title=title or None)
    table.add_column(str(frame.index.name or ""))
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for idx, row in frame.iterrows():
        table.add_row(
            str(idx),
            *[f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in row.to_numpy()],
        )
    Console().print(table)
