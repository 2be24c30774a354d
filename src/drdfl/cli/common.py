"""Helpers shared by the CLI modules: config files and table printing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from drdfl.config import ExperimentConfig


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
