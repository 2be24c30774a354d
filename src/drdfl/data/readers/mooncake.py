"""Mooncake-style JSONL traces: one request per line.

Keys ``timestamp`` (milliseconds, usually counted from the trace's start), ``input_length``
and ``output_length`` (tokens); others such as ``hash_ids`` are ignored. Timestamps counted
from zero give a series starting at the Unix epoch. Read and binned in chunks.
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

TIME_KEY: Final = "timestamp"
TOKEN_COLUMNS: Final = {
    "context": ("input_length",),
    "generated": ("output_length",),
    "total": ("input_length", "output_length"),
}
_NS_PER_MS: Final = 1_000_000


def looks_like(keys: list[str]) -> bool:
    """Whether the keys of a JSONL trace's first record are Mooncake's."""
    return {TIME_KEY, *TOKEN_COLUMNS["total"]} <= set(keys)


def iter_requests(
    path: str | Path, tokens: str = "context", chunksize: int = DEFAULT_CHUNKSIZE
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Chunks of ``(epoch ns int64, token counts float64, file line of the first record)``."""
    path = Path(path)
    check_file(path)
    columns = token_columns(tokens, TOKEN_COLUMNS)
    first_line = 1
    try:
        with pd.read_json(path, lines=True, chunksize=chunksize, dtype=False) as reader:
            for chunk in reader:
                check_columns(list(chunk.columns), (TIME_KEY, *columns), str(path))
                times_ns = _times_ns(chunk[TIME_KEY], path, first_line)
                counts = sum_token_columns(chunk, columns, str(path), first_line)
                yield times_ns, counts, first_line
                first_line += len(chunk)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"{path}: not valid JSON lines at or after line {first_line}; expected one JSON "
            f"object per line ({exc})"
        ) from exc


def read(
    path: str | Path,
    interval: str | float = DEFAULT_INTERVAL,
    tokens: str = "context",
    name: str | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> Series:
    """Bin a Mooncake-style trace into tokens per interval (see module docstring)."""
    path = Path(path)
    binner = Binner(interval, source=str(path))
    for times_ns, counts, first_line in iter_requests(path, tokens, chunksize):
        binner.add(times_ns, counts, first_line)
    meta = {"source": str(path), "format": "mooncake", "tokens": tokens}
    return series_from_binner(binner, name or path.stem, False, meta)


def _times_ns(stamps: pd.Series, path: Path, first_line: int) -> np.ndarray:
    ms = pd.to_numeric(stamps, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(ms)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{path}, line {first_line + i}: cannot read {TIME_KEY} {stamps.iloc[i]!r}; "
            "expected milliseconds as a number"
        )
    return np.round(ms * _NS_PER_MS).astype(np.int64)
