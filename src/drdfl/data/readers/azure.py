"""Azure LLM inference traces (2023 and 2024): one request per row.

Columns ``TIMESTAMP,ContextTokens,GeneratedTokens``. The 2023 files have naive timestamps
with 7 fractional digits (``2023-11-16 18:15:46.6805900``); the 2024 week-long files carry an
offset (``2024-05-10 00:00:00.008000+00:00``, microseconds omitted when zero). Naive
timestamps are taken as UTC, so a file mixing both styles still bins consistently. The file
is read in chunks and each chunk is binned at once: the request table is never in memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from drdfl.data.readers._common import RequestFormat

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


def is_request_stream(stamps: pd.Series) -> bool:
    """Whether the first rows' ``TIMESTAMP`` values are requests, not one row per interval.

    Requests carry second-resolution stamps at irregular gaps; a binned series (as ``drdfl
    data bin`` writes it) advances by one constant step per row, and the paper's files carry
    minute labels.
    """
    stamps = stamps.dropna().astype(str)
    if stamps.empty or not stamps.map(lambda s: bool(REQUEST_TIMESTAMP.match(s))).all():
        return False
    ns = pd.to_datetime(stamps, format="ISO8601", utc=True, errors="coerce").array.as_unit("ns")
    steps = np.diff(ns.asi8)
    regular = steps.size > 0 and steps[0] > 0 and bool(np.all(steps == steps[0]))
    return not regular


def _to_ns(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    parsed = stamps
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        parsed = pd.to_datetime(stamps, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    # Epoch nanoseconds: UTC for offset-aware stamps, the wall clock for naive ones.
    return np.where(bad, 0, parsed.array.as_unit("ns").asi8), bad


def _tz_aware(path: Path) -> bool:
    """The series start is tz-aware (UTC) when the trace's first timestamp has an offset."""
    first = pd.read_csv(path, nrows=1, usecols=[TIME_COLUMN], dtype=str)[TIME_COLUMN]
    return len(first) > 0 and bool(_OFFSET.search(str(first.iloc[0])))


FORMAT: Final = RequestFormat(
    name="azure",
    time_column=TIME_COLUMN,
    token_columns=TOKEN_COLUMNS,
    to_ns=_to_ns,
    bad_time="cannot parse {column} {value}; expected e.g. 2023-11-16 18:15:46.6805900 or "
    "2024-05-10 00:00:00.008000+00:00",
    # Parsing the timestamps inside read_csv is ~4x faster than parsing strings after it; a
    # chunk it cannot parse as one column stays text and goes the slow, exact way.
    csv_options={"parse_dates": [TIME_COLUMN], "date_format": "ISO8601"},
    tz_aware=_tz_aware,
)
iter_requests = FORMAT.iter_requests
read = FORMAT.read
