"""BurstGPT-style CSV traces: one request per row.

Columns ``Timestamp`` (seconds, counted from the trace's start), ``Request tokens`` and
``Response tokens``; the others (``Session ID``, ``Model``, ``Log Type`` …) are ignored.
Timestamps counted from zero give a series starting at the Unix epoch. Read and binned in
chunks.
"""

from __future__ import annotations

from typing import Final

from drdfl.data.readers._common import RequestFormat, numeric_times

TIME_COLUMN: Final = "Timestamp"
TOKEN_COLUMNS: Final = {
    "context": ("Request tokens",),
    "generated": ("Response tokens",),
    "total": ("Request tokens", "Response tokens"),
}

FORMAT: Final = RequestFormat(
    name="burstgpt",
    time_column=TIME_COLUMN,
    token_columns=TOKEN_COLUMNS,
    to_ns=numeric_times(1_000_000_000),
    bad_time="cannot read {column} {value}; expected seconds as a number",
)
iter_requests = FORMAT.iter_requests
read = FORMAT.read
