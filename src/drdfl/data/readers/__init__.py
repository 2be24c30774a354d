"""Trace and series readers, one module per file format, all producing a :class:`Series`.

Per-request traces (``azure``, ``mooncake``, ``burstgpt``) are binned into tokens per
interval while they are read, all by one reader (:class:`RequestFormat`) that each format
fills with its columns and timestamp parsing; binned series files (``binned``) are read as
they are. :func:`detect_format` tells the formats apart by extension, columns and the first
rows' timestamps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pandas as pd

from drdfl.data.binning import DEFAULT_INTERVAL, TOKENS
from drdfl.data.readers import azure, binned, burstgpt, mooncake
from drdfl.data.readers._common import RequestFormat, check_file, csv_error, reading
from drdfl.data.series import Series
from drdfl.errors import DataError

FORMATS: Final = ("azure", "binned", "mooncake", "burstgpt")
REQUEST_FORMATS: Final = {m.FORMAT.name: m.FORMAT for m in (azure, mooncake, burstgpt)}
_JSON_SUFFIXES: Final = {".json", ".jsonl", ".ndjson"}
_COMPRESSION_SUFFIXES: Final = {".gz", ".bz2", ".xz", ".zip", ".zst"}
# Rows read to tell a request trace from a binned series by its timestamps.
_SNIFF_ROWS: Final = 100


def detect_format(path: str | Path) -> str:
    """The format of a trace file, from its columns: JSON lines are Mooncake-style; a CSV
    with BurstGPT's time column and a token column is BurstGPT-style; one with Azure's is an
    Azure request trace when its timestamps are requests (see
    :func:`azure.is_request_stream`), else a binned series. A header that fits two request
    formats is refused."""
    path = Path(path)
    check_file(path)
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSION_SUFFIXES]
    if suffixes and suffixes[-1] in _JSON_SUFFIXES:
        return "mooncake"
    try:
        with reading(path):
            head = pd.read_csv(path, nrows=_SNIFF_ROWS, dtype=str)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty; expected a header line and data rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise csv_error(path, exc) from exc
    columns = list(head.columns)
    matches = [f.name for f in REQUEST_FORMATS.values() if not f.jsonl and f.matches(columns)]
    if len(matches) > 1:
        raise DataError(
            f"{path}: the columns {', '.join(repr(c) for c in columns)} fit both the "
            f"{' and the '.join(matches)} request formats; keep one format's columns"
        )
    if matches == ["burstgpt"]:
        return "burstgpt"
    if matches == ["azure"] and azure.is_request_stream(head[azure.TIME_COLUMN]):
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
        with reading(path):
            return binned.read(path, column or binned.TOKEN_COLUMN[tokens], interval, name)
    if fmt not in REQUEST_FORMATS:
        raise DataError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if column is not None:
        raise DataError(
            f"{path} is a per-request {fmt} trace: choose tokens (context, generated, total) "
            f"instead of a column"
        )
    return REQUEST_FORMATS[fmt].read(path, interval or DEFAULT_INTERVAL, tokens, name)


__all__ = [
    "FORMATS",
    "REQUEST_FORMATS",
    "RequestFormat",
    "azure",
    "binned",
    "burstgpt",
    "detect_format",
    "mooncake",
    "read_series",
]
