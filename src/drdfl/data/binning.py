"""Binning requests (time, tokens) into a demand series: tokens summed per interval.

Bins are aligned to multiples of the interval since the Unix epoch (a 5 s bin starts at a
wall-clock second divisible by 5), and empty bins are kept as zeros, so the series has one
value per interval from the first request's bin to the last one's.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Final

import numpy as np
import pandas as pd

from drdfl.errors import DataError

DEFAULT_INTERVAL: Final = "5s"
TOKENS: Final = ("context", "generated", "total")

# Units that format_interval writes, largest first.
_NS_PER_UNIT: Final = {
    "d": 86_400_000_000_000,
    "h": 3_600_000_000_000,
    "min": 60_000_000_000,
    "s": 1_000_000_000,
    "ms": 1_000_000,
    "us": 1_000,
}

# A guard against an interval far too fine for the span (e.g. 1 ms over a week): beyond
# this many bins the series would not fit comfortably in memory.
MAX_BINS: Final = 200_000_000


def parse_interval(interval: str | float) -> float:
    """Interval length in seconds from ``"5s"``, ``"500ms"``, ``"1min"``, ``"1h"`` or a number
    of seconds; raises :class:`DataError` for anything else or a non-positive length."""
    return interval_ns(interval) / 1e9


def interval_ns(interval: str | float) -> int:
    """Interval length in integer nanoseconds (see :func:`parse_interval`).

    A string is read by :class:`pandas.Timedelta` (``5s``, ``500ms``, ``2 minutes``,
    ``1h30min``, ``1d``), a bare number as seconds.
    """
    expected = "expected a positive length such as 5s, 500ms, 1min or 1h"
    if isinstance(interval, bool):
        raise DataError(f"interval {interval!r} does not parse: {expected}")
    seconds: float | None = None
    if isinstance(interval, int | float):
        seconds = float(interval)
    else:
        with contextlib.suppress(ValueError):
            seconds = float(interval)
    if seconds is not None:
        if not np.isfinite(seconds):
            raise DataError(f"interval {interval!r} does not parse: {expected}")
        ns = round(seconds * 1e9)
    else:
        try:
            # Day units spelt "d" are deprecated in pandas' parser but are what people write.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                delta = pd.Timedelta(str(interval))
        except (ValueError, OverflowError):
            delta = pd.NaT
        if delta is pd.NaT:
            raise DataError(f"interval {interval!r} does not parse: {expected}")
        ns = int(delta.value)
    if ns <= 0:
        raise DataError(f"interval {interval!r} is not positive: {expected}")
    return ns


def format_interval(seconds: float) -> str:
    """Short human form of an interval length: 5s, 500ms, 1min, 1h."""
    ns = round(seconds * 1e9)
    for unit, per_unit in _NS_PER_UNIT.items():
        if ns % per_unit == 0:
            return f"{ns // per_unit}{unit}"
    return f"{ns}ns"


class Binner:
    """Accumulates requests chunk by chunk into per-interval token sums.

    Requests must arrive in non-decreasing time order (within and across chunks); only the
    bins, never the requests, are kept, so a trace of any length bins in bounded memory.
    ``source`` (a file name) and each chunk's ``first_line`` make errors point at the row.
    """

    def __init__(self, interval: str | float = DEFAULT_INTERVAL, source: str = "requests") -> None:
        self.interval_ns = interval_ns(interval)
        self.source = source
        self.rows = 0
        self._first_bin: int | None = None
        self._last_time: int | None = None
        self._sums = np.zeros(0, dtype=np.float64)
        self._used = 0

    def add(self, times_ns: np.ndarray, tokens: np.ndarray, first_line: int = 1) -> None:
        """Add a chunk of requests: int64 epoch nanoseconds and their token counts.

        ``first_line`` is the file line of the chunk's first request, used in errors.
        """
        times_ns = np.asarray(times_ns, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.float64)
        if times_ns.shape != tokens.shape or times_ns.ndim != 1:
            raise ValueError(f"times {times_ns.shape} and tokens {tokens.shape} must be 1-D alike")
        if times_ns.size == 0:
            return
        self._check_tokens(tokens, first_line)
        self._check_order(times_ns, first_line)
        bins = times_ns // self.interval_ns
        if self._first_bin is None:
            self._first_bin = int(bins[0])
        offset = int(bins[0]) - self._first_bin
        # Sorted times: the chunk's last bin is its highest, so the size is known (and
        # checked) before bincount allocates it.
        self._reserve(int(bins[-1]) - self._first_bin + 1)
        local = np.bincount(bins - bins[0], weights=tokens)
        self._sums[offset : offset + local.size] += local
        self._used = max(self._used, offset + local.size)
        self._last_time = int(times_ns[-1])
        self.rows += int(times_ns.size)

    @property
    def start_ns(self) -> int | None:
        """Epoch nanoseconds of the first bin's start (None before any request)."""
        return None if self._first_bin is None else self._first_bin * self.interval_ns

    @property
    def values(self) -> np.ndarray:
        """Token sum per interval from the first to the last request's bin (a copy)."""
        return self._sums[: self._used].copy()

    def _check_tokens(self, tokens: np.ndarray, first_line: int) -> None:
        bad = ~(tokens >= 0)  # NaN compares False, so this catches NaN and negatives at once
        if bad.any():
            i = int(np.argmax(bad))
            what = "missing or not a number" if np.isnan(tokens[i]) else f"negative ({tokens[i]:g})"
            raise DataError(
                f"{self.source}, line {first_line + i}: token count is {what}; "
                "expected a non-negative number"
            )

    def _check_order(self, times_ns: np.ndarray, first_line: int) -> None:
        if self._last_time is not None and times_ns[0] < self._last_time:
            i, previous = 0, self._last_time
        else:
            back = np.flatnonzero(np.diff(times_ns) < 0)
            if back.size == 0:
                return
            i = int(back[0]) + 1
            previous = int(times_ns[i - 1])
        raise DataError(
            f"{self.source}, line {first_line + i}: timestamp goes back in time "
            f"({pd.Timestamp(int(times_ns[i]))} after {pd.Timestamp(previous)}); "
            "expected requests sorted by time"
        )

    def _reserve(self, size: int) -> None:
        if size > MAX_BINS:
            raise DataError(
                f"{self.source}: binning at {format_interval(self.interval_ns / 1e9)} gives more "
                f"than {MAX_BINS:,} intervals; choose a coarser interval"
            )
        if size > self._sums.size:
            grown = np.zeros(max(size, 2 * self._sums.size), dtype=np.float64)
            grown[: self._used] = self._sums[: self._used]
            self._sums = grown


def bin_requests(
    times_ns: np.ndarray, tokens: np.ndarray, interval: str | float = DEFAULT_INTERVAL
) -> tuple[int | None, np.ndarray]:
    """Bin one array of sorted requests; returns (first bin's start in epoch ns, sums)."""
    binner = Binner(interval)
    binner.add(times_ns, tokens)
    return binner.start_ns, binner.values
