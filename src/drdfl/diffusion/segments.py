"""Segments: the fixed-length pieces of a series the diffusion model learns and generates."""

from __future__ import annotations

import numpy as np

from drdfl.data.windows import Windows, check_shape, describe_span
from drdfl.errors import DataError


def check_series(values: np.ndarray, segment_length: int, name: str = "series") -> np.ndarray:
    """``values`` as a float64 1-D array, or :class:`DataError` if it cannot feed segments.

    Rejects NaN/inf (naming the first bad slot) and series shorter than one segment.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D series, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{name}: {int(bad.sum())} non-finite value(s), first at slot {first} "
            f"({arr[first]}); fill or drop them before training"
        )
    if arr.shape[0] < segment_length:
        raise DataError(
            f"{name}: {arr.shape[0]} slots is shorter than one segment of {segment_length} slots"
        )
    return arr


def random_segments(
    values: np.ndarray, segment_length: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` overlapping crops ``[n, L]`` at uniformly random offsets of ``values``."""
    views = np.lib.stride_tricks.sliding_window_view(values, segment_length)
    return views[rng.integers(0, views.shape[0], size=n)]


def cut_segments(values: np.ndarray, segment_length: int, stride: int | None = None) -> np.ndarray:
    """Consecutive segments ``[m, L]`` every ``stride`` slots (default: non-overlapping)."""
    stride = stride or segment_length
    views = np.lib.stride_tricks.sliding_window_view(values, segment_length)
    return views[::stride].copy()


def segments_to_windows(
    segments: np.ndarray,
    window: int,
    horizon: int,
    stride: int = 1,
    name: str = "generated",
    lead: int = 0,
) -> Windows:
    """Forecasting windows cut from each segment, never across two segments.

    The same windowing as :func:`drdfl.data.windows.make_windows` (``lead`` slots between
    inputs and targets) applied to every row of ``segments [n, L]``; ``start`` indexes the
    segments laid end to end (segment ``i`` starts at slot ``i · L``).
    """
    segments = np.asarray(segments, dtype=np.float32)
    if segments.ndim != 2:
        raise DataError(f"{name}: expected segments [n, L], got shape {segments.shape}")
    need = check_shape(window, horizon, lead, stride, name)
    n, length = segments.shape
    if length < need:
        raise DataError(
            f"{name}: segments of {length} slots cannot hold one window of "
            f"{describe_span(window, horizon, lead)} ({need} slots)"
        )
    views = np.lib.stride_tricks.sliding_window_view(segments, need, axis=1)[:, ::stride]
    per_segment = views.shape[1]
    flat = views.reshape(n * per_segment, need)
    offsets = np.arange(0, length - need + 1, stride)
    start = (np.arange(n)[:, None] * length + offsets[None, :]).reshape(-1)
    return Windows(flat[:, :window].copy(), flat[:, window + lead :].copy(), start, name, lead)
