"""Mooncake-style JSONL traces: one request per line.

Keys ``timestamp`` (milliseconds, usually counted from the trace's start), ``input_length``
and ``output_length`` (tokens); others such as ``hash_ids`` are ignored. Timestamps counted
from zero give a series starting at the Unix epoch. Read and binned in chunks.
"""

from __future__ import annotations

from typing import Final

from drdfl.data.readers._common import RequestFormat, numeric_times

TIME_KEY: Final = "timestamp"
TOKEN_COLUMNS: Final = {
    "context": ("input_length",),
    "generated": ("output_length",),
    "total": ("input_length", "output_length"),
}

FORMAT: Final = RequestFormat(
    name="mooncake",
    time_column=TIME_KEY,
    token_columns=TOKEN_COLUMNS,
    to_ns=numeric_times(1_000_000),
    bad_time="cannot read {column} {value}; expected milliseconds as a number",
    jsonl=True,
)
iter_requests = FORMAT.iter_requests
read = FORMAT.read
