"""The demand series: what every reader produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: how many times the series' 99th percentile (above its minimum) a value may reach before
#: it alone would set a min-max scaler's range, squeezing 99 % of the others into its
#: lowest 0.1 % (the real traces' largest value is at most 2.2 times it)
DOMINANCE = 1000.0
#: ``meta`` key: the position of the series' first interval in its source file
OFFSET_KEY = "offset"


@dataclass(frozen=True)
class Series:
    """Demand per interval (e.g. context tokens per 5 s) with its metadata.

    ``values`` is a 1-D float64 array of non-negative demand in real units; ``start`` is
    the timestamp of the first interval when the source had timestamps. ``meta`` says
    where it was read from (``source``; ``first_line``, the file line of a binned file's
    first value; ``offset``, where a slice starts in it).
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
        meta = dict(self.meta)
        first = range(len(self))[start:stop].start if len(self) else 0
        meta[OFFSET_KEY] = int(meta.get(OFFSET_KEY, 0)) + first
        return Series(
            self.values[start:stop].copy(),
            name or self.name,
            self.interval_s,
            self.unit,
            new_start,
            meta,
        )

    def location(self, index: int) -> str:
        """Where interval ``index`` comes from: the file and line of a binned file, the file
        and interval of a binned trace, else the series' name and interval."""
        position = int(self.meta.get(OFFSET_KEY, 0)) + index
        source = self.meta.get("source")
        if source is None:
            return f"series {self.name}, interval {index}"
        if self.meta.get("first_line") is not None:
            return f"{source}, line {int(self.meta['first_line']) + position}"
        when = ""
        if self.start is not None:
            when = f" ({self.start + pd.Timedelta(seconds=self.interval_s * index)})"
        return f"{source}, interval {position}{when}"

    def dominant(self) -> int | None:
        """The index of a value that alone would set a min-max scaler's range (more than
        :data:`DOMINANCE` times the series' 99th percentile, both above its minimum), or
        None. A series at its minimum 99 % of the time is not judged."""
        v = self.values
        if len(v) < 2:
            return None
        lo = float(v.min())
        typical = float(np.quantile(v, 0.99)) - lo
        i = int(np.argmax(v))
        return i if typical > 0 and v[i] - lo > DOMINANCE * typical else None

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


def check_scalable(series: Series, role: str = "training series") -> None:
    """Refuse ``series`` (the ``role`` a scaler is fitted to) when one value would set that
    scaler's range by itself (:meth:`Series.dominant`), naming where the value is."""
    from drdfl.errors import DataError

    i = series.dominant()
    if i is None:
        return
    v = series.values
    column = series.meta.get("column") if series.meta.get("first_line") is not None else None
    what = f"{column} is {v[i]:.6g}" if column else f"the value is {v[i]:.6g} {series.unit}"
    raise DataError(
        f"{series.location(i)}: {what}, over {DOMINANCE:g} times the 99th percentile of "
        f"the {role} ({np.quantile(v, 0.99):.3g}); a scaler fitted to it would squeeze 99 % "
        "of the values into 0.1 % of its range, and every regret would say nothing; correct "
        "or remove that value"
    )
