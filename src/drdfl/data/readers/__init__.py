"""Trace and series readers, one module per file format, all producing a :class:`Series`.

Per-request traces (``azure``, ``mooncake``, ``burstgpt``) are binned into tokens per
interval while they are read; binned series files (``binned``) are read as they are.
:func:`detect_format` tells the formats apart by extension, header and first row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pandas as pd

from drdfl.data.binning import DEFAULT_INTERVAL, TOKENS
from drdfl.data.readers import azure, binned, burstgpt, mooncake
from drdfl.data.readers._common import check_file
from drdfl.data.series import Series
from drdfl.errors import DataError

FORMATS: Final = ("azure", "binned", "mooncake", "burstgpt")
REQUEST_FORMATS: Final = {"azure": azure, "mooncake": mooncake, "burstgpt": burstgpt}
_JSON_SUFFIXES: Final = {".json", ".jsonl", ".ndjson"}
_COMPRESSION_SUFFIXES: Final = {".gz", ".bz2", ".xz", ".zip", ".zst"}


def detect_format(path: str | Path) -> str:
    """The format of a trace file: JSON lines are Mooncake-style; a CSV is BurstGPT-style,
    an Azure per-request trace (second-resolution timestamps) or else a binned series."""
    path = Path(path)
    check_file(path)
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSION_SUFFIXES]
    if suffixes and suffixes[-1] in _JSON_SUFFIXES:
        return "mooncake"
    try:
        head = pd.read_csv(path, nrows=1, dtype=str)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty; expected a header line and data rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV: {exc}") from exc
    columns = list(head.columns)
    if burstgpt.looks_like(columns):
        return "burstgpt"
    first_row = head.iloc[0].to_dict() if len(head) else {}
    if azure.looks_like(columns, first_row):
        return "azure"
    return "binned"


def read_series(
    path: str | Path,
    fmt: str | None = None,
    interval: str | float | None = DEFAULT_INTERVAL,
    tokens: str = "context",
    column: str | None = None,
    name: str | None = None,
) -> Series:
    """Read any supported file as a demand series.

    A per-request trace is binned at ``interval`` (None: 5 s), counting ``tokens``. For a
    binned file ``interval`` is the length of its rows, checked against its timestamps
    where it has them; None takes the file's own (5 s when it does not say). ``column``
    picks a binned file's column (default: the column of ``tokens``, e.g. ContextTokens).
    """
    path = Path(path)
    if tokens not in TOKENS:
        raise DataError(f"tokens {tokens!r} is not one of {', '.join(TOKENS)}")
    fmt = fmt or detect_format(path)
    if fmt == "binned":
        return binned.read(path, column or binned.TOKEN_COLUMN[tokens], interval, name)
    if fmt not in REQUEST_FORMATS:
        raise DataError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if column is not None:
        raise DataError(
            f"{path} is a per-request {fmt} trace: choose tokens (context, generated, total) "
            f"instead of a column"
        )
    return REQUEST_FORMATS[fmt].read(
        path, interval=interval or DEFAULT_INTERVAL, tokens=tokens, name=name
    )


__all__ = [
    "FORMATS",
    "azure",
    "binned",
    "burstgpt",
    "detect_format",
    "mooncake",
    "read_series",
]
