"""Pieces every per-request reader shares: column checks, token selection, the Series."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drdfl.data.binning import TOKENS, Binner
from drdfl.data.series import Series
from drdfl.errors import DataError, DatasetNotFoundError

# Rows per chunk of a per-request trace: reading then takes ~75 MB above the interpreter's
# own footprint whatever the file's size (benchmarks/results/readers.json).
DEFAULT_CHUNKSIZE = 500_000


def token_columns(tokens: str, mapping: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The columns whose sum is the requested kind of tokens (context, generated, total)."""
    if tokens not in TOKENS:
        raise DataError(f"tokens {tokens!r} is not one of {', '.join(TOKENS)}")
    return mapping[tokens]


def check_columns(present: Sequence[str], required: Iterable[str], source: str) -> None:
    """Raise naming the first missing column and the columns the file does have."""
    missing = [c for c in required if c not in present]
    if missing:
        raise DataError(
            f"{source}: no column {missing[0]!r}; the file has columns "
            f"{', '.join(repr(c) for c in present) or '(none)'}"
        )


def sum_token_columns(
    frame: pd.DataFrame, columns: Sequence[str], source: str, first_line: int
) -> np.ndarray:
    """Float64 sum of ``columns``; a value that is not a number is an error naming its line."""
    total = np.zeros(len(frame), dtype=np.float64)
    for column in columns:
        raw = frame[column]
        values = (
            raw.to_numpy(dtype=np.float64, na_value=np.nan)
            if pd.api.types.is_numeric_dtype(raw)
            else pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        )
        bad = ~(values >= 0)  # NaN compares False: catches missing, non-numeric and negative
        if bad.any():
            i = int(np.argmax(bad))
            shown = raw.iloc[i]
            what = "missing" if pd.isna(shown) else repr(shown) if isinstance(shown, str) else shown
            raise DataError(
                f"{source}, line {first_line + i}: {column} is {what}; "
                "expected a non-negative number"
            )
        total += values
    return total


def series_from_binner(binner: Binner, name: str, tz_aware: bool, meta: dict[str, Any]) -> Series:
    """The binned demand series; an empty trace is an error."""
    if binner.rows == 0 or binner.start_ns is None:
        raise DataError(f"{binner.source}: no requests in the file; expected at least one row")
    start = pd.Timestamp(binner.start_ns, unit="ns", tz="UTC" if tz_aware else None)
    meta = {**meta, "requests": binner.rows}
    return Series(binner.values, name, binner.interval_ns / 1e9, "tokens", start, meta)


def check_file(path: Path) -> None:
    """A readable, non-empty regular file, or a one-line error saying what it is instead."""
    if path.is_dir():
        raise DataError(f"{path} is a directory; expected a trace or series file")
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; expected a header line and data rows")
