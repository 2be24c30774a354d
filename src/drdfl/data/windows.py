"""Sliding windows, chronological splits and the train-fitted min-max ``Scaler``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from drdfl.data.series import Series
from drdfl.errors import DataError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Scaler:
    """Min-max scaling ``(z - lo) / (hi - lo)``; fitted on the training series only."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        """Fit on ``values`` (the training series)."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            raise DataError("cannot fit a Scaler on an empty series")
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            hi = lo + 1.0
        return cls(lo, hi)

    @property
    def span(self) -> float:
        return self.hi - self.lo

    def transform(self, z: ArrayT) -> ArrayT:
        """Real units → normalized units (numpy or torch, differentiable)."""
        return (z - self.lo) / self.span

    def inverse_transform(self, u: ArrayT) -> ArrayT:
        """Normalized units → real units (numpy or torch, differentiable)."""
        return u * self.span + self.lo

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "minmax", "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(float(d["lo"]), float(d["hi"]))


@dataclass(frozen=True)
class Windows:
    """Input windows ``x [N, w]`` and targets ``y [N, h]`` in normalized units.

    ``start`` holds the index (in the source series) of each window's first input slot;
    the targets begin ``lead`` slots after the last input (the decision made at slot
    ``start + w`` is for slots ``start + w + lead`` … ``start + w + lead + h - 1``).
    """

    x: np.ndarray
    y: np.ndarray
    start: np.ndarray
    name: str = ""
    lead: int = 0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def window(self) -> int:
        return int(self.x.shape[1])

    @property
    def horizon(self) -> int:
        return int(self.y.shape[1])

    @property
    def span(self) -> int:
        """Slots of the series one window covers: inputs, lead and targets."""
        return self.window + self.lead + self.horizon

    def tensors(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` as float32 tensors on ``device``."""
        return (
            torch.as_tensor(self.x, dtype=torch.float32, device=device),
            torch.as_tensor(self.y, dtype=torch.float32, device=device),
        )

    def subset(self, index: np.ndarray) -> Windows:
        return Windows(self.x[index], self.y[index], self.start[index], self.name, self.lead)

    @staticmethod
    def concat(parts: list[Windows], name: str = "") -> Windows:
        leads = {p.lead for p in parts}
        if len(leads) > 1:
            raise DataError(f"{name or 'windows'}: cannot join windows of leads {sorted(leads)}")
        return Windows(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.start for p in parts]),
            name,
            leads.pop() if leads else 0,
        )


def check_shape(window: int, horizon: int, lead: int, stride: int, name: str) -> int:
    """The slots one window spans (``window + lead + horizon``); :class:`DataError` naming
    ``name`` when a size is out of range."""
    if window < 1 or horizon < 1 or stride < 1 or lead < 0:
        raise DataError(
            f"{name}: window, horizon and stride must be >= 1 and lead >= 0 "
            f"(got window={window}, horizon={horizon}, stride={stride}, lead={lead})"
        )
    return window + lead + horizon


def describe_span(window: int, horizon: int, lead: int) -> str:
    """``"7 inputs + 1 targets"``, with the lead between them when there is one."""
    gap = f" + {lead} lead" if lead else ""
    return f"{window} inputs{gap} + {horizon} targets"


def make_windows(
    values: np.ndarray,
    window: int,
    horizon: int,
    stride: int = 1,
    name: str = "",
    lead: int = 0,
) -> Windows:
    """All windows of ``window`` inputs, then ``lead`` slots skipped, then ``horizon``
    targets, every ``stride`` slots."""
    values = np.asarray(values, dtype=np.float32)
    need = check_shape(window, horizon, lead, stride, name or "series")
    if values.ndim != 1 or values.shape[0] < need:
        raise DataError(
            f"{name or 'series'}: {values.shape[0] if values.ndim == 1 else values.shape} slots "
            f"cannot hold one window of {describe_span(window, horizon, lead)} ({need} slots)"
        )
    views = np.lib.stride_tricks.sliding_window_view(values, need)[::stride]
    start = np.arange(0, values.shape[0] - need + 1, stride)
    return Windows(views[:, :window].copy(), views[:, window + lead :].copy(), start, name, lead)


def chronological_split(
    n: int, fractions: tuple[float, ...] = (0.7, 0.15, 0.15), gap: int = 0
) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive ``(start, stop)`` parts with ``gap`` slots between.

    The gap keeps windows of one part from reading slots of the next.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise DataError(f"split fractions must sum to 1, got {fractions}")
    if any(f <= 0 for f in fractions):
        raise DataError(f"split fractions must be positive, got {fractions}")
    usable = n - gap * (len(fractions) - 1)
    if usable <= 0:
        raise DataError(f"series of {n} slots too short for {len(fractions)} parts with gap {gap}")
    bounds = np.floor(np.cumsum((0.0, *fractions)) * usable).astype(int)
    parts = []
    for i in range(len(fractions)):
        start = int(bounds[i]) + i * gap
        stop = int(bounds[i + 1]) + i * gap
        parts.append((start, stop))
    return parts


def split_series(
    series: Series, fractions: tuple[float, ...] = (0.7, 0.15, 0.15), gap: int = 0
) -> list[Series]:
    """Chronological parts of ``series`` (see :func:`chronological_split`)."""
    names = ["train", "val", "test", "part3", "part4"]
    return [
        series.slice(a, b, f"{series.name}:{names[i]}")
        for i, (a, b) in enumerate(chronological_split(len(series), fractions, gap))
    ]
