"""Intervals of a mean: over seeds (Student-t) and over the autocorrelated windows of a
test set (moving-block bootstrap). Plain NumPy and SciPy: the report uses them without
torch."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval (e.g. over seeds)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.shape[0] == 0:
        return float("nan"), float("nan")
    if v.shape[0] == 1:
        return float(v[0]), float("nan")
    half = stats.t.ppf((1 + level) / 2, v.shape[0] - 1) * v.std(ddof=1) / np.sqrt(v.shape[0])
    return float(v.mean()), float(half)


#: block starts drawn at a time by :func:`block_bootstrap_ci`
_BOOTSTRAP_CHUNK = 2_000_000


def block_bootstrap_ci(
    values: np.ndarray, level: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, int]:
    """Moving-block bootstrap percentile interval of the mean of a serially dependent series.

    Consecutive test windows overlap and are autocorrelated, so resampling them one by one
    understates the uncertainty; blocks of consecutive values keep that dependence. The
    block length is Politis & White's (2004) automatic choice for the circular/moving
    block bootstrap (at least 1, from ``arch``). Each of ``n_boot`` resamples joins
    ``ceil(n / block)`` blocks of consecutive values starting anywhere in the series, cut
    to ``n`` values; every resample's mean comes from one cumulative sum, all resamples at
    once. Returns ``(low, high, block_length)``; NaN bounds when fewer than two values are
    given or any value is not finite, and a zero-width interval for a constant series.
    """
    from arch.bootstrap import optimal_block_length

    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    if n < 2 or not np.isfinite(v).all():
        return float("nan"), float("nan"), 0
    if np.ptp(v) == 0:
        return float(v[0]), float(v[0]), 1
    estimate = float(optimal_block_length(v)["circular"].iloc[0])
    block = int(np.clip(np.ceil(estimate), 1, n)) if np.isfinite(estimate) else 1
    blocks = -(-n // block)
    last = n - (blocks - 1) * block  # the last block is cut to what is left
    rng = np.random.default_rng(seed)
    total = np.concatenate(([0.0], np.cumsum(v)))
    lengths = np.full(blocks, block)
    lengths[-1] = last
    per = max(1, _BOOTSTRAP_CHUNK // blocks)  # resamples at a time: memory stays bounded
    means = np.empty(n_boot)
    for i in range(0, n_boot, per):
        starts = rng.integers(0, n - block + 1, size=(min(per, n_boot - i), blocks))
        sums = total[starts + lengths] - total[starts]
        means[i : i + starts.shape[0]] = sums.sum(axis=1) / n
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high), block


__all__ = ["block_bootstrap_ci", "mean_ci"]
