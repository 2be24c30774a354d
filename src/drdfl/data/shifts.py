"""Distribution shifts and corruptions of demand series, and the paper's shift measure.

Every function takes a 1-D array (raw tokens or normalized values) and returns a new
float64 array; none modifies its input. Random ones take a ``numpy.random.Generator``
or an int seed. Demand cannot be negative, so results are clipped at 0.

The 3D-Learning paper's own test-time noise (applied to min-max normalized series,
see :mod:`drdfl.data.paper`) corresponds to: ``gaussian_noise(u, σ)`` then clipping at
1; ``perlin_noise(u, m, octaves=1, base_cells=8)`` then clipping at 1 (the
``perlin_noise`` package's ``PerlinNoise(octaves=8)`` is one octave of gradient noise
with 8 lattice cells over the series); ``cutout_segment(u, frac, fill=1.0)`` (the
paper fills the cut segment with the series maximum, not zero).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import wasserstein_distance

from drdfl.errors import DataError

RngLike = np.random.Generator | int


def _series(x: np.ndarray, what: str = "series") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{what}: expected a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what}: contains NaN or infinite values")
    return arr


def _peak(x: np.ndarray) -> float:
    """Largest magnitude: the scale that fractions of the max refer to."""
    return float(np.max(np.abs(x))) if x.size else 0.0


def _fraction(value: float, what: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise DataError(f"{what} must be in [0, 1], got {value}")
    return float(value)


def gaussian_noise(x: np.ndarray, sigma_frac: float, rng: RngLike) -> np.ndarray:
    """Add i.i.d. Gaussian noise with standard deviation ``sigma_frac * max|x|``."""
    x = _series(x)
    if sigma_frac < 0:
        raise DataError(f"gaussian noise sigma must be >= 0, got {sigma_frac}")
    noise = np.random.default_rng(rng).standard_normal(x.shape[0])
    return np.maximum(x + sigma_frac * _peak(x) * noise, 0.0)


def gradient_noise(
    n: int, rng: RngLike, octaves: int = 8, base_cells: int = 8, persistence: float = 0.5
) -> np.ndarray:
    """Fractal 1-D Perlin (gradient) noise at ``n`` evenly spaced points over one period.

    Octave ``k`` has ``base_cells * 2**k`` lattice cells with random gradients in
    [-1, 1] and amplitude ``persistence**k``; within a cell the two corner ramps are
    blended with Perlin's quintic fade. The sum is made zero-mean and scaled to
    ``max |noise| = 1`` (all zeros if it is flat).
    """
    if n < 1 or octaves < 1 or base_cells < 1:
        raise DataError(
            f"gradient noise needs n, octaves and base_cells >= 1 "
            f"(got n={n}, octaves={octaves}, base_cells={base_cells})"
        )
    gen = np.random.default_rng(rng)
    pos = np.arange(n) / n
    total = np.zeros(n)
    for k in range(octaves):
        cells = base_cells * 2**k
        grads = gen.uniform(-1.0, 1.0, cells + 1)
        t = pos * cells
        cell = np.floor(t).astype(np.int64)
        f = t - cell
        fade = f * f * f * (f * (6.0 * f - 15.0) + 10.0)
        left, right = grads[cell] * f, grads[cell + 1] * (f - 1.0)
        total += persistence**k * (left + fade * (right - left))
    total -= total.mean()
    peak = np.max(np.abs(total))
    return total / peak if peak > 0 else total


def perlin_noise(
    x: np.ndarray,
    magnitude_frac: float,
    rng: RngLike,
    octaves: int = 8,
    base_cells: int = 8,
    persistence: float = 0.5,
) -> np.ndarray:
    """Add smooth fractal Perlin noise of peak ``magnitude_frac * max|x|``.

    The noise (see :func:`gradient_noise`) is zero-mean with ``max |noise| = 1`` before
    scaling, so the added perturbation peaks at exactly ``magnitude_frac * max|x|``.
    """
    x = _series(x)
    if magnitude_frac < 0:
        raise DataError(f"perlin noise magnitude must be >= 0, got {magnitude_frac}")
    noise = gradient_noise(x.shape[0], rng, octaves, base_cells, persistence) if x.size else x
    return np.maximum(x + magnitude_frac * _peak(x) * noise, 0.0)


def cutout(x: np.ndarray, p: float, rng: RngLike) -> np.ndarray:
    """Set each point to zero independently with probability ``p`` (dropped telemetry)."""
    x = _series(x)
    keep = np.random.default_rng(rng).random(x.shape[0]) >= _fraction(p, "cutout probability")
    return np.maximum(np.where(keep, x, 0.0), 0.0)


def cutout_segment(x: np.ndarray, frac: float, rng: RngLike, fill: float = 0.0) -> np.ndarray:
    """Set one contiguous segment of ``int(frac * n)`` points to ``fill`` (an outage).

    The segment starts uniformly at random among the positions where it fits.
    """
    x = _series(x)
    length = int(_fraction(frac, "cutout segment fraction") * x.shape[0])
    out = np.maximum(x, 0.0)
    if length == 0:
        return out
    start = int(np.random.default_rng(rng).integers(0, x.shape[0] - length + 1))
    out[start : start + length] = max(fill, 0.0)
    return out


def level_shift(x: np.ndarray, delta: float) -> np.ndarray:
    """Add ``delta`` (same units as ``x``) to every point, clipped at zero."""
    return np.maximum(_series(x) + delta, 0.0)


def scale_shift(x: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every point by ``factor`` (>= 0), e.g. a bigger or smaller deployment."""
    if factor < 0:
        raise DataError(f"scale factor must be >= 0, got {factor}")
    return np.maximum(_series(x) * factor, 0.0)


def concat_halves(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The first half of ``a`` followed by the first half of ``b`` (a shift in the middle).

    This is how the paper's combined test files were built: ``23D24D`` is the first
    11,184 of the 22,368 rows of the 2023 coding file, then the first 60,479 bins of the
    2024 coding week; ``24D24V`` is the first half of the 2024 coding week then the
    first half of the 2024 conversation week (each half is ``len // 2`` rows).
    """
    a, b = _series(a, "first series"), _series(b, "second series")
    return np.concatenate((a[: a.shape[0] // 2], b[: b.shape[0] // 2]))


def minmax_own(x: np.ndarray) -> np.ndarray:
    """``x`` min-max normalized by its own extremes (a constant series maps to zeros)."""
    x = _series(x)
    if x.size == 0:
        raise DataError("cannot normalize an empty series")
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo)


def wasserstein_marginal(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between the value distributions of two series, each
    min-max normalized by its own extremes: the 3D-Learning paper's shift measure.

    On the paper's files against the 2023 conversation file (whole files, as the
    paper's ``compute_normalized_wasserstein`` reads them) this gives 23D 0.1457,
    23D24D 0.1563, 23D24V 0.1359, 24D24V 0.0685.
    """
    return float(wasserstein_distance(minmax_own(a), minmax_own(b)))


Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

#: Corruptions by name; each is ``f(x, severity, rng)`` and ``severity = 0`` leaves
#: ``x`` unchanged (apart from clipping negatives). Severity means: ``gaussian``
#: σ / max; ``perlin`` peak / max; ``cutout`` probability; ``cutout_segment`` fraction
#: of the series; ``level`` shift / max; ``scale`` factor - 1.
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian": lambda x, s, rng: gaussian_noise(x, s, rng),
    "perlin": lambda x, s, rng: perlin_noise(x, s, rng),
    "cutout": lambda x, s, rng: cutout(x, s, rng),
    "cutout_segment": lambda x, s, rng: cutout_segment(x, s, rng),
    "level": lambda x, s, rng: level_shift(x, s * _peak(_series(x))),
    "scale": lambda x, s, rng: scale_shift(x, 1.0 + s),
}
#: The paper's Fig. 2 corruption levels (fraction of the series maximum / probability).
PAPER_CORRUPTIONS = {"gaussian": 0.10, "perlin": 0.05, "cutout": 0.005}


def apply_corruption(name: str, x: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """Apply the corruption ``name`` (see :data:`CORRUPTIONS`) at ``severity``, seeded."""
    if name not in CORRUPTIONS:
        raise DataError(
            f"unknown corruption {name!r}: expected one of {', '.join(sorted(CORRUPTIONS))}"
        )
    if not np.isfinite(severity):
        raise DataError(f"corruption {name!r}: severity must be finite, got {severity}")
    return CORRUPTIONS[name](x, float(severity), np.random.default_rng(seed))
