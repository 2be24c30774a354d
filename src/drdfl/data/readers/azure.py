"""Azure LLM inference traces (2023 and 2024): one request per row.

Columns ``TIMESTAMP,ContextTokens,GeneratedTokens``. The 2023 files have naive timestamps
with 7 fractional digits (``2023-11-16 18:15:46.6805900``); the 2024 week-long files carry an
offset (``2024-05-10 00:00:00.008000+00:00``, microseconds omitted when zero). Naive
timestamps are taken as UTC, so a file mixing both styles still bins consistently. The file
is read in chunks and each chunk is binned at once: the request table is never in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from drdfl.data.binning import DEFAULT_INTERVAL, Binner
from drdfl.data.readers._common import (
    DEFAULT_CHUNKSIZE,
    check_columns,
    check_file,
    series_from_binner,
    sum_token_columns,
    token_columns,
)
from drdfl.data.series import Series
from drdfl.errors import DataError

TIME_COLUMN: Final = "TIMESTAMP"
TOKEN_COLUMNS: Final = {
    "context": ("ContextTokens",),
    "generated": ("GeneratedTokens",),
    "total": ("ContextTokens", "GeneratedTokens"),
}
# A per-request timestamp has (at least) second resolution; the paper's binned files carry
# minute labels like ``2023/11/16 18:15`` in the same column and are not request traces.
REQUEST_TIMESTAMP: Final = re.compile(r"^\s*\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")
_OFFSET: Final = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})\s*$")


def looks_like(columns: list[str], first_row: dict[str, object]) -> bool:
    """Whether a CSV header and first row are those of an Azure per-request trace."""
    needed = {TIME_COLUMN, *TOKEN_COLUMNS["total"]}
    stamp = first_row.get(TIME_COLUMN)
    is_request_time = isinstance(stamp, str) and bool(REQUEST_TIMESTAMP.match(stamp))
    return needed <= set(columns) and is_request_time


def iter_requests(
    path: str | Path, tokens: str = "context", chunksize: int = DEFAULT_CHUNKSIZE
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Chunks of ``(epoch ns int64, token counts float64, file line of the first row)``."""
    path = Path(path)
    check_file(path)
    columns = token_columns(tokens, TOKEN_COLUMNS)
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty; expected a header {TIME_COLUMN},...") from exc
    check_columns(header, (TIME_COLUMN, *columns), str(path))
    first_line = 2  # line 1 is the header
    try:
        # Parsing the timestamps inside read_csv is ~4x faster than parsing strings after it;
        # a chunk it cannot parse as one column stays text and goes the slow, exact way.
        with pd.read_csv(
            path,
            usecols=[TIME_COLUMN, *columns],
            parse_dates=[TIME_COLUMN],
            date_format="ISO8601",
            chunksize=chunksize,
        ) as reader:
            for chunk in reader:
                times_ns = _parse_times(chunk[TIME_COLUMN], path, first_line)
                counts = sum_token_columns(chunk, columns, str(path), first_line)
                yield times_ns, counts, first_line
                first_line += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV near line {first_line}: {exc}") from exc


def read(
    path: str | Path,
    interval: str | float = DEFAULT_INTERVAL,
    tokens: str = "context",
    name: str | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> Series:
    """Bin an Azure per-request trace into tokens per interval (see module docstring)."""
    path = Path(path)
    binner = Binner(interval, source=str(path))
    for times_ns, counts, first_line in iter_requests(path, tokens, chunksize):
        binner.add(times_ns, counts, first_line)
    # The series start is tz-aware (UTC) when the trace's timestamps carry an offset.
    first = pd.read_csv(path, nrows=1, usecols=[TIME_COLUMN], dtype=str)[TIME_COLUMN]
    tz_aware = len(first) > 0 and bool(_OFFSET.search(str(first.iloc[0])))
    meta = {"source": str(path), "format": "azure", "tokens": tokens}
    return series_from_binner(binner, name or path.stem, tz_aware, meta)


def _parse_times(stamps: pd.Series, path: Path, first_line: int) -> np.ndarray:
    parsed = stamps
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        parsed = pd.to_datetime(stamps, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        shown = "missing" if pd.isna(stamps.iloc[i]) else repr(stamps.iloc[i])
        raise DataError(
            f"{path}, line {first_line + i}: cannot parse {TIME_COLUMN} {shown}; "
            "expected e.g. 2023-11-16 18:15:46.6805900 or 2024-05-10 00:00:00.008000+00:00"
        )
    # Epoch nanoseconds: UTC for offset-aware stamps, the wall clock for naive ones.
    return parsed.array.as_unit("ns").asi8
