"""BurstGPT-style CSV traces: one request per row.

Columns ``Timestamp`` (seconds, counted from the trace's start), ``Request tokens`` and
``Response tokens``; the others (``Session ID``, ``Model``, ``Log Type`` …) are ignored.
Timestamps counted from zero give a series starting at the Unix epoch. Read and binned in
chunks.
"""

from __future__ import annotations

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

TIME_COLUMN: Final = "Timestamp"
TOKEN_COLUMNS: Final = {
    "context": ("Request tokens",),
    "generated": ("Response tokens",),
    "total": ("Request tokens", "Response tokens"),
}
_NS_PER_S: Final = 1_000_000_000


def looks_like(columns: list[str]) -> bool:
    """Whether a CSV header is BurstGPT's."""
    return {TIME_COLUMN, *TOKEN_COLUMNS["total"]} <= set(columns)


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
        with pd.read_csv(path, usecols=[TIME_COLUMN, *columns], chunksize=chunksize) as reader:
            for chunk in reader:
                times_ns = _times_ns(chunk[TIME_COLUMN], path, first_line)
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
    """Bin a BurstGPT-style trace into tokens per interval (see module docstring)."""
    path = Path(path)
    binner = Binner(interval, source=str(path))
    for times_ns, counts, first_line in iter_requests(path, tokens, chunksize):
        binner.add(times_ns, counts, first_line)
    meta = {"source": str(path), "format": "burstgpt", "tokens": tokens}
    return series_from_binner(binner, name or path.stem, False, meta)


def _times_ns(stamps: pd.Series, path: Path, first_line: int) -> np.ndarray:
    seconds = pd.to_numeric(stamps, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(seconds)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{path}, line {first_line + i}: cannot read {TIME_COLUMN} {stamps.iloc[i]!r}; "
            "expected seconds as a number"
        )
    return np.round(seconds * _NS_PER_S).astype(np.int64)
