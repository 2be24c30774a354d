"""What every reader shares: value checks, and the one reader under the per-request formats.

A per-request format (Azure, Mooncake, BurstGPT) declares only its columns and how its
time column becomes epoch nanoseconds (:class:`RequestFormat`); reading in chunks, line
numbers in errors, token selection and binning are done here once.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from drdfl.data.binning import DEFAULT_INTERVAL, TOKENS, Binner
from drdfl.data.series import Series
from drdfl.errors import DataError, DatasetNotFoundError

# Rows per chunk of a per-request trace: reading then takes ~75 MB above the interpreter's
# own footprint whatever the file's size (benchmarks/results/readers.json).
DEFAULT_CHUNKSIZE = 500_000

# Forecasters and metrics compute in float32, and squared errors square a value: one
# whose square float32 cannot hold makes the MSE inf beside finite regrets, so such a value
# is refused where it is read (no workload comes near it: it is 1.8e19 tokens per interval).
MAX_VALUE: Final = float(np.sqrt(np.finfo(np.float32).max))


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
    """Float64 sum of ``columns``; a value that is missing, not a number, negative, infinite
    or beyond float32 is an error naming its line."""
    total = np.zeros(len(frame), dtype=np.float64)
    for column in columns:
        raw = frame[column]
        values = (
            raw.to_numpy(dtype=np.float64, na_value=np.nan)
            if pd.api.types.is_numeric_dtype(raw)
            else pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        )
        # NaN compares False: catches missing, non-numeric and negative values at once.
        bad = ~((values >= 0) & (values <= MAX_VALUE))
        if bad.any():
            i = int(np.argmax(bad))
            shown = raw.iloc[i]
            blank = pd.isna(shown) or (isinstance(shown, str) and not shown.strip())
            what = "missing" if blank else repr(shown) if isinstance(shown, str) else shown
            expected = "a non-negative number"
            if values[i] > MAX_VALUE:
                expected = (
                    "a finite number whose square the model's float32 can hold "
                    f"(at most {MAX_VALUE:.3g})"
                )
            raise DataError(
                f"{source}, line {first_line + i}: {column} is {what}; expected {expected}"
            )
        total += values
    return total


_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def csv_error(path: Path, exc: Exception) -> DataError:
    """A CSV that pandas cannot parse as one line naming the file (and the line, when a row
    has more fields than the header)."""
    if match := _FIELDS.search(str(exc)):
        expected, line, saw = match.groups()
        return DataError(
            f"{path}, line {line}: {saw} fields where the header has {expected}; expected "
            "one value per column"
        )
    return DataError(f"{path}: not a readable CSV: {exc}")


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Inside the block, a file that is not what its name says or that ends early (a
    truncated or mislabelled ``.gz``, ``.bz2``, ``.xz``, ``.zip``) raises a one-line
    :class:`DataError` naming it; the decompressors' own errors name no file, and Python's
    ``EOFError`` read like Ctrl-C on the command line."""
    try:
        yield
    except (DataError, DatasetNotFoundError):
        raise
    except EOFError as exc:
        raise DataError(
            f"{path}: ends before its compressed data does (truncated?); expected a complete "
            f"{path.suffix or 'compressed'} file ({exc})"
        ) from exc
    except (zlib.error, lzma.LZMAError, zipfile.BadZipFile, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{path}: not a readable {path.suffix} file although its name says so ({exc}); "
            "rename it, or compress it again"
        ) from exc
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def check_file(path: Path) -> None:
    """A readable, non-empty regular file, or a one-line error saying what it is instead."""
    if path.is_dir():
        raise DataError(f"{path} is a directory; expected a trace or series file")
    if not path.exists():
        raise DatasetNotFoundError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; expected a header line and data rows")


@dataclass(frozen=True)
class RequestFormat:
    """A per-request trace format: its columns and how its timestamps read.

    ``to_ns`` turns one chunk's time column into epoch nanoseconds, NaN-free rows as int64
    and a mask of the rows it could not read; ``bad_time`` is the error for such a row
    (``{column}`` and ``{value}`` filled in). ``tz_aware`` tells from the file whether the
    series start carries a time zone.
    """

    name: str
    time_column: str
    token_columns: Mapping[str, tuple[str, ...]]
    to_ns: Callable[[pd.Series], tuple[np.ndarray, np.ndarray]]
    bad_time: str
    jsonl: bool = False
    csv_options: Mapping[str, Any] = field(default_factory=dict)
    tz_aware: Callable[[Path], bool] | None = None

    def matches(self, columns: Iterable[str]) -> bool:
        """Whether a header has this format's time column and at least one token column."""
        present = set(columns)
        tokens = {c for cols in self.token_columns.values() for c in cols}
        return self.time_column in present and bool(tokens & present)

    def iter_requests(
        self, path: str | Path, tokens: str = "context", chunksize: int = DEFAULT_CHUNKSIZE
    ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """Chunks of ``(epoch ns int64, token counts float64, file line of the first row)``."""
        path = Path(path)
        check_file(path)
        columns = token_columns(tokens, self.token_columns)
        needed = (self.time_column, *columns)
        first_line = 1 if self.jsonl else 2  # a CSV's line 1 is the header
        with reading(path):
            try:
                for chunk in self._chunks(path, needed, chunksize):
                    check_columns(list(chunk.columns), needed, str(path))
                    times_ns = self._times(chunk[self.time_column], path, first_line)
                    counts = sum_token_columns(chunk, columns, str(path), first_line)
                    yield times_ns, counts, first_line
                    first_line += len(chunk)
            except DataError:
                raise
            except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is one
                what = "valid JSON lines" if self.jsonl else "a readable CSV"
                expected = "; expected one JSON object per line" if self.jsonl else ""
                raise DataError(
                    f"{path}: not {what} at or after line {first_line}{expected} ({exc})"
                ) from exc

    def read(
        self,
        path: str | Path,
        interval: str | float = DEFAULT_INTERVAL,
        tokens: str = "context",
        name: str | None = None,
        chunksize: int = DEFAULT_CHUNKSIZE,
    ) -> Series:
        """Bin the trace at ``path`` into ``tokens`` per ``interval``."""
        path = Path(path)
        binner = Binner(interval, source=str(path))
        for times_ns, counts, first_line in self.iter_requests(path, tokens, chunksize):
            binner.add(times_ns, counts, first_line)
        if binner.rows == 0 or binner.start_ns is None:
            raise DataError(f"{path}: no requests in the file; expected at least one row")
        values = binner.values
        if values.max() > MAX_VALUE:
            raise DataError(
                f"{path}: an interval of {binner.interval_ns / 1e9:g} s sums to "
                f"{values.max():.3g} tokens, beyond what the model's float32 can square "
                f"(at most {MAX_VALUE:.3g})"
            )
        tz = "UTC" if self.tz_aware is not None and self.tz_aware(path) else None
        start = pd.Timestamp(binner.start_ns, unit="ns", tz=tz)
        meta = {"source": str(path), "format": self.name, "tokens": tokens, "requests": binner.rows}
        return Series(values, name or path.stem, binner.interval_ns / 1e9, "tokens", start, meta)

    def _chunks(self, path: Path, needed: Sequence[str], chunksize: int) -> Iterator[pd.DataFrame]:
        if self.jsonl:
            with pd.read_json(path, lines=True, chunksize=chunksize, dtype=False) as reader:
                yield from reader
            return
        try:
            header = list(pd.read_csv(path, nrows=0).columns)
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{path} is empty; expected a header {self.time_column},...") from exc
        check_columns(header, needed, str(path))
        with pd.read_csv(
            path, usecols=list(needed), chunksize=chunksize, **self.csv_options
        ) as reader:
            yield from reader

    def _times(self, stamps: pd.Series, path: Path, first_line: int) -> np.ndarray:
        times_ns, bad = self.to_ns(stamps)
        if bad.any():
            i = int(np.argmax(bad))
            value = "missing" if pd.isna(stamps.iloc[i]) else repr(stamps.iloc[i])
            message = self.bad_time.format(column=self.time_column, value=value)
            raise DataError(f"{path}, line {first_line + i}: {message}")
        return times_ns


def numeric_times(ns_per_unit: int) -> Callable[[pd.Series], tuple[np.ndarray, np.ndarray]]:
    """A ``to_ns`` for timestamps given as numbers of a unit (``ns_per_unit`` ns each)."""

    def to_ns(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        units = pd.to_numeric(stamps, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(units)
        return np.round(np.where(bad, 0.0, units) * ns_per_unit).astype(np.int64), bad

    return to_ns
