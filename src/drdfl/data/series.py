"""The demand series: what every reader produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Series:
    """Demand per interval (e.g. context tokens per 5 s) with its metadata.

    ``values`` is a 1-D float64 array of non-negative demand in real units; ``start`` is
    the timestamp of the first interval when the source had timestamps.
    """

    values: np.ndarray
    name: str
    interval_s: float = 5.0
    unit: str = "tokens"
    start: pd.Timestamp | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        arr = np.asarray(self.values, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"series {self.name!r}: expected a 1-D array, got shape {arr.shape}")
        object.__setattr__(self, "values", arr)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> pd.Timestamp | None:
        """Timestamp of the end of the last interval, when the start is known."""
        if self.start is None:
            return None
        return self.start + pd.Timedelta(seconds=self.interval_s * len(self))

    def slice(self, start: int, stop: int, name: str | None = None) -> Series:
        """Intervals ``start:stop`` as a new series (start timestamp shifted accordingly)."""
        new_start = None
        if self.start is not None:
            new_start = self.start + pd.Timedelta(seconds=self.interval_s * start)
        return Series(
            self.values[start:stop].copy(),
            name or self.name,
            self.interval_s,
            self.unit,
            new_start,
            dict(self.meta),
        )

    def degeneracy(self) -> str | None:
        """Why the series cannot teach a forecaster anything (constant, all zero), or None."""
        v = self.values
        if len(v) == 0:
            return "it is empty"
        if v.max() == v.min():
            what = "all zero" if v.max() == 0 else f"constant ({v.max():g})"
            return f"it is {what} in all {len(v):,} intervals"
        return None

    def stats(self) -> dict[str, Any]:
        """Summary numbers: rows, span, interval, mean/std/min/max."""
        v = self.values
        return {
            "name": self.name,
            "rows": len(self),
            "interval_s": self.interval_s,
            "unit": self.unit,
            "start": None if self.start is None else str(self.start),
            "end": None if self.end is None else str(self.end),
            "span_s": self.interval_s * len(self),
            "mean": float(v.mean()) if len(v) else float("nan"),
            "std": float(v.std()) if len(v) else float("nan"),
            "min": float(v.min()) if len(v) else float("nan"),
            "max": float(v.max()) if len(v) else float("nan"),
        }
