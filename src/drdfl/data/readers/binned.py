"""Binned series CSV: one value per interval in a numeric column, optional ``TIMESTAMP``.

This is the format of the paper's files (``paper-3dl``), of the 2024 5 s files and of what
``drdfl data bin`` writes. A ``TIMESTAMP`` column that advances by one constant step per
row gives the series' start and interval; any other (the paper's files carry minute labels
and repeat their hour) is ignored, and the interval comes from the caller.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from drdfl._io import atomic_open
from drdfl.data.binning import DEFAULT_INTERVAL, format_interval, parse_interval
from drdfl.data.readers._common import (
    check_columns,
    check_file,
    csv_error,
    sum_token_columns,
)
from drdfl.data.series import Series
from drdfl.errors import DataError

TIME_COLUMN: Final = "TIMESTAMP"
DEFAULT_COLUMN: Final = "ContextTokens"
# Which column holds which kind of tokens, in the files this project reads and writes.
TOKEN_COLUMN: Final = {
    "context": "ContextTokens",
    "generated": "GeneratedTokens",
    "total": "TotalTokens",
}


def read(
    path: str | Path,
    column: str = DEFAULT_COLUMN,
    interval: str | float | None = None,
    name: str | None = None,
) -> Series:
    """Read ``column`` as the series, values as they are.

    ``interval`` is the length of one row; when the file has a regular ``TIMESTAMP``
    column its step is used, and a different ``interval`` is an error (a binned file
    cannot be re-binned to another interval). Without either, the interval is 5 s.
    """
    path = Path(path)
    check_file(path)
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        check_columns(header, (column,), str(path))
        has_time = TIME_COLUMN in header and column != TIME_COLUMN
        usecols = [TIME_COLUMN, column] if has_time else [column]
        # A blank line is a missing value, not nothing: dropping it would shift every later
        # interval by one. Blank lines at the very end are only a file's trailing newlines.
        # Every column is read: a row with a field more than the header has is an error
        # (reading only some columns drops it without a word).
        options = {"skip_blank_lines": False}
        # pandas takes a first row with one field more than the header for an index column
        try:
            first = pd.read_csv(path, header=None, skiprows=1, nrows=1, dtype=str).shape[1]
        except pd.errors.EmptyDataError:  # no rows below the header: said below
            first = 0
        if first > len(header):
            raise DataError(
                f"{path}, line 2: {first} fields where the header has {len(header)}; "
                "expected one value per column"
            )
        frame = pd.read_csv(path, dtype={TIME_COLUMN: str} if has_time else None, **options)
        frame = frame[usecols]
        if frame.isna().to_numpy().any():  # rare: read the text again to see what is blank
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, **options)[usecols]
            filled = np.flatnonzero((frame != "").any(axis=1).to_numpy())
            frame = frame.iloc[: filled[-1] + 1 if filled.size else 0]
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty; expected a header naming column {column!r}") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise csv_error(path, exc) from exc
    if frame.empty:
        raise DataError(f"{path}: no rows below the header; expected one value per interval")
    values = sum_token_columns(frame, (column,), str(path), first_line=2)
    meta: dict[str, object] = {
        "source": str(path),
        "format": "binned",
        "column": column,
        "first_line": 2,
    }

    start, step_s = (None, None)
    if has_time:
        start, step_s = _regular_start(frame[TIME_COLUMN], path)
        meta["timestamps"] = "used" if start is not None else "ignored: not one step per row"
    requested_s = None if interval is None else parse_interval(interval)
    if step_s is not None and requested_s is not None and not np.isclose(step_s, requested_s):
        raise DataError(
            f"{path} is binned at {format_interval(step_s)} (its {TIME_COLUMN} column), not "
            f"{format_interval(requested_s)}; pass interval {format_interval(step_s)} or bin "
            "the raw trace at the interval you want"
        )
    interval_s = step_s or requested_s or parse_interval(DEFAULT_INTERVAL)
    return Series(values, name or path.stem, interval_s, "tokens", start, meta)


def write(series: Series, path: str | os.PathLike[str], column: str = DEFAULT_COLUMN) -> None:
    """Write ``series`` atomically as a binned CSV that :func:`read` reads back exactly.

    Integral values are written as integers; a known start adds a ``TIMESTAMP`` column.
    """
    values = series.values
    integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    data: dict[str, object] = {column: values.astype(np.int64) if integral else values}
    if series.start is not None:
        stamps = series.start + pd.to_timedelta(
            np.arange(len(series)) * round(series.interval_s * 1e9), unit="ns"
        )
        data = {TIME_COLUMN: stamps.map(pd.Timestamp.isoformat), **data}
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        pd.DataFrame(data).to_csv(handle, index=False, float_format="%.17g")


def _regular_start(stamps: pd.Series, path: Path) -> tuple[pd.Timestamp | None, float | None]:
    """(first timestamp, step in s) when the timestamps advance by one constant step."""
    try:
        parsed = pd.to_datetime(stamps, errors="coerce")
    except ValueError:  # mixed offsets: parse everything in UTC instead
        parsed = pd.to_datetime(stamps, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{path}, line {2 + i}: cannot parse {TIME_COLUMN} {stamps.iloc[i]!r}; "
            "expected a date and time such as 2023-11-16 18:15:45"
        )
    ns = parsed.array.as_unit("ns").asi8
    steps = np.diff(ns)
    if steps.size == 0 or steps[0] <= 0 or np.any(steps != steps[0]):
        return None, None
    return parsed.iloc[0], float(steps[0]) / 1e9
