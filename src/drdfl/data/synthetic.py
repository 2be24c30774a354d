"""The built-in synthetic LLM-inference workload: drdfl's default data.

A seeded generator of token demand per interval (context tokens per 5 s by default) that
looks like the Azure LLM inference traces. Per regime, a Neyman-Scott cluster process
(sessions of requests) driven by a log-Gaussian Cox intensity:

* **Calendar profile** of the request rate: ``log rate = level + swing * shape(hour)``
  with a two-harmonic daily shape in UTC, and weekday and weekend levels and swings
  blended smoothly across midnight, so daily and weekly seasonality both show.
* **Rate modulation**: the log-rate adds stationary Gaussian AR(1) processes (surges of
  seconds to minutes, drift over hours), normalised so the mean rate is the profile.
* **Sessions**: Poisson numbers of sessions start in each interval; a session holds a
  geometric number of requests spread over ``session_s`` seconds. This is where the
  bursts come from: the near-linear decay of the 5 s autocorrelation over the first
  half-minute, and burst variance that shrinks like Poisson noise as the deployment
  grows, are both what the 2024 traces show.
* **Request sizes**: lognormal context lengths, rounded to whole tokens and capped at the
  model's context window, so the demand per interval has heavy-tailed jumps.

The demand of an interval is the sum of the sizes of the requests that fall into it.
Everything is simulated with array operations; requests are drawn in chunks of bounded
size so a week at 5 s stays within a few hundred MB.

Regimes and calibration (asserted in ``tests/test_synthetic.py``): ``chat`` is calibrated
to the 2024 Azure conversation trace binned at 5 s (``azure-llm-2024-5s/conv_5s.csv``,
3.5 days from Sunday 2024-05-12 00:00 UTC), ``code`` to the 2024 coding trace
(``code_5s.csv``, 3.5 days from Friday 2024-05-10 00:00 UTC), over the same calendar
window: the daily shape and weekday/weekend levels by least squares on hourly means
(the hourly residual spread sets the drift), sessions, sizes and surges on the
autocorrelation and spread of the series relative to its 1-hour moving mean, split by
load level. ``shift`` is ``chat`` for the first half of the intervals and ``code`` for
the second half, on one continuous clock. ``rate_scale`` resizes the deployment (the
2023 traces come from one about 14 (chat) to 30 (code) times smaller).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from drdfl.data.series import Series
from drdfl.errors import DataError

#: Default first interval: a Monday, so a multi-day series starts with the working week.
DEFAULT_START = pd.Timestamp("2024-05-13 00:00:00", tz="UTC")

#: Resolution (seconds) at which the rate modulation is simulated; coarser intervals
#: sum the rate over sub-steps so its fluctuations aggregate correctly.
_BASE_STEP_S = 5.0
#: At most this many requests are drawn at once (bounds memory for long series).
_CHUNK_REQUESTS = 2_000_000
_SECONDS_PER_DAY = 86_400.0
#: 1970-01-01 was a Thursday: day index + 3 gives Monday = 0.
_EPOCH_WEEKDAY = 3


@dataclass(frozen=True)
class Regime:
    """Parameters of one workload regime (rates in requests per second, sizes in tokens).

    ``weekday_rate``/``weekend_rate`` are the daily geometric-mean request rates,
    ``weekend_swing`` scales the daily shape on weekends, ``daily_shape`` holds the
    log-rate harmonics ``(cos 24 h, sin 24 h, cos 12 h, sin 12 h)`` in UTC, and
    ``modulation`` the ``(sd, tau_s)`` of each AR(1) log-rate component.
    """

    name: str
    description: str
    weekday_rate: float
    weekend_rate: float
    weekend_swing: float
    daily_shape: tuple[float, float, float, float]
    size_median: float
    size_log_sd: float
    size_max: int
    session_mean: float
    session_s: float
    session_skew: float
    modulation: tuple[tuple[float, float], ...]


REGIMES: dict[str, Regime] = {
    "chat": Regime(
        name="chat",
        description="conversation traffic: sessions of ~5 mid-sized prompts over half a "
        "minute, weekday/weekend ratio about 2 (calibrated to Azure 2024 conv at 5 s)",
        weekday_rate=53.7,
        weekend_rate=27.9,
        weekend_swing=0.97,
        daily_shape=(-0.129, -0.066, -0.017, 0.057),
        size_median=1200.0,
        size_log_sd=0.8,
        size_max=16_384,
        session_mean=5.2,
        session_s=35.0,
        session_skew=1.0,
        modulation=((0.035, 600.0), (0.1, 10_800.0)),
    ),
    "code": Regime(
        name="code",
        description="coding traffic: sessions of long, heavy-tailed prompts, short "
        "bursts and a sharp office-hours peak on weekdays (calibrated to Azure 2024 code "
        "at 5 s)",
        weekday_rate=28.2,
        weekend_rate=9.92,
        weekend_swing=0.6,
        daily_shape=(0.457, -0.889, -0.174, 0.214),
        size_median=1000.0,
        size_log_sd=1.5,
        size_max=8_192,
        session_mean=6.0,
        session_s=25.0,
        session_skew=2.5,
        modulation=((0.09, 25.0), (0.06, 300.0), (0.2, 10_800.0)),
    ),
}

#: Values accepted by :func:`generate` for ``regime``.
REGIME_NAMES: tuple[str, ...] = ("chat", "code", "shift")


def _utc(start: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(start)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def calendar_profile(regime: Regime, epoch_s: np.ndarray) -> np.ndarray:
    """Expected request rate (requests/s) at the given UTC times (seconds since the epoch).

    ``log rate = level + swing * daily_shape(hour)``, where level and swing are the
    weekday or weekend values blended with a logistic ramp of about 1.5 h around
    midnight (no jump at Monday's start or Friday's end).
    """
    days = epoch_s / _SECONDS_PER_DAY
    week_pos = (days + _EPOCH_WEEKDAY) % 7.0  # Monday 00:00 = 0
    ramp = 1.5 / 24.0

    def rise(d: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-d / ramp))

    # Weekday weight: ~1 from Monday 00:00 to Saturday 00:00; the last term is
    # the rise into next Monday, so the weight is continuous across the week wrap.
    weekday = rise(week_pos) * rise(5.0 - week_pos) + rise(week_pos - 7.0)
    angle = 2.0 * np.pi * (days % 1.0)
    c1, s1, c2, s2 = regime.daily_shape
    shape = c1 * np.cos(angle) + s1 * np.sin(angle)
    shape += c2 * np.cos(2.0 * angle) + s2 * np.sin(2.0 * angle)
    weekend_level = np.log(regime.weekend_rate)
    level = weekend_level + weekday * (np.log(regime.weekday_rate) - weekend_level)
    swing = regime.weekend_swing + weekday * (1.0 - regime.weekend_swing)
    return np.exp(level + swing * shape)


def _ar1(n: int, tau_steps: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary unit-variance AR(1) with correlation time ``tau_steps``."""
    phi = float(np.exp(-1.0 / max(tau_steps, 1e-9)))
    white = rng.standard_normal(n)
    # Initial state drawn from the stationary law, so the series has no warm-up.
    zi = np.array([phi * rng.standard_normal()])
    out, _ = lfilter([np.sqrt(1.0 - phi**2)], [1.0, -phi], white, zi=zi)
    return out


def rate_modulation(
    regime: Regime, n_steps: int, step_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Multiplicative rate modulation ``exp(g)``, ``E[exp(g)] = 1``, at ``step_s`` resolution.

    ``g`` is a sum of independent stationary Gaussian AR(1) processes, one per
    ``(sd, tau_s)`` pair of ``regime.modulation`` (e.g. surges of seconds to minutes,
    drift over hours).
    """
    g = np.zeros(n_steps)
    for sd, tau_s in regime.modulation:
        g += sd * _ar1(n_steps, tau_s / step_s, rng)
    variance = sum(sd**2 for sd, _ in regime.modulation)
    return np.exp(g - 0.5 * variance)


def expected_requests(
    regime: Regime,
    n: int,
    interval_s: float,
    start: pd.Timestamp,
    rng: np.random.Generator,
    rate_scale: float = 1.0,
    lead: int = 0,
) -> np.ndarray:
    """Random expected number of requests in ``lead`` intervals before ``start`` and ``n``
    from it (the Cox intensity).

    The rate is simulated at most every 5 s and summed within longer intervals, so its
    fluctuations aggregate the same way at any interval.
    """
    sub = max(1, int(np.ceil(interval_s / _BASE_STEP_S - 1e-9)))
    step_s = interval_s / sub
    mid = start.value / 1e9 + (np.arange(-lead * sub, n * sub) + 0.5) * step_s
    # The lead intervals reuse the first modulation value, so the path inside the window
    # does not depend on the lead (nor, on the 5 s grid, on the interval).
    modulation = np.pad(rate_modulation(regime, n * sub, step_s, rng), (lead * sub, 0), "edge")
    rate = calendar_profile(regime, mid) * modulation
    return rate_scale * step_s * rate.reshape(n + lead, sub).sum(axis=1)


def sample_tokens(
    regime: Regime, requests: np.ndarray, interval_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Tokens per interval from sessions of requests with lognormal sizes.

    ``requests[i]`` is the expected number of requests of the sessions that start in
    interval ``i``. Each session holds a geometric number of requests (mean
    ``session_mean``) placed over ``session_s`` seconds from its start (offsets
    ``session_s * U**session_skew``: uniform for skew 1, front-loaded above 1), so its
    tokens spill into the following intervals. The result has one value per input
    interval.
    """
    n = requests.shape[0]
    spill = int(np.ceil(regime.session_s / interval_s)) + 1
    tokens = np.zeros(n + spill)
    sessions_mean = requests / regime.session_mean
    # Chunks of intervals holding at most ~_CHUNK_REQUESTS expected requests each.
    bounds = np.searchsorted(
        np.cumsum(requests), np.arange(_CHUNK_REQUESTS, requests.sum(), _CHUNK_REQUESTS)
    )
    edges = np.unique(np.concatenate(([0], bounds, [n])))
    for lo, hi in itertools.pairwise(edges):
        sessions = rng.poisson(sessions_mean[lo:hi])
        session_slot = np.repeat(np.arange(hi - lo), sessions)
        session_start = session_slot + rng.random(session_slot.shape[0])  # in intervals
        per_session = rng.geometric(1.0 / regime.session_mean, session_slot.shape[0])
        request_time = np.repeat(session_start, per_session)
        # float32 draws: half the memory traffic, ample precision for offsets and sizes.
        offset = rng.random(request_time.shape[0], dtype=np.float32)
        if regime.session_skew != 1.0:
            offset **= regime.session_skew
        request_time += offset * (regime.session_s / interval_s)
        sizes = rng.standard_normal(request_time.shape[0], dtype=np.float32)
        sizes *= regime.size_log_sd
        sizes += np.log(regime.size_median)
        np.exp(sizes, out=sizes)
        np.clip(np.rint(sizes, out=sizes), 1.0, regime.size_max, out=sizes)
        slot = request_time.astype(np.int64)
        tokens[lo : hi + spill] += np.bincount(slot, weights=sizes, minlength=hi - lo + spill)
    return tokens[:n]


def simulate(
    regime: Regime,
    n: int,
    interval_s: float,
    start: pd.Timestamp,
    seed: int | np.random.SeedSequence,
    rate_scale: float = 1.0,
) -> np.ndarray:
    """Tokens per interval for ``n`` intervals of one regime from ``start`` (UTC)."""
    if n == 0:
        return np.zeros(0)
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rate_seq, size_seq = seq.spawn(2)
    # Sessions that began shortly before ``start`` still send requests into the window.
    lead = int(np.ceil(regime.session_s / interval_s))
    requests = expected_requests(
        regime, n, interval_s, start, np.random.default_rng(rate_seq), rate_scale, lead
    )
    tokens = sample_tokens(regime, requests, interval_s, np.random.default_rng(size_seq))
    return tokens[lead:]


#: the longest synthetic series, in days (as ``data.synthetic_days`` of a run allows) and
#: in intervals (60 days at 1 s: a few hundred MB while it is generated)
MAX_DAYS = 60.0
MAX_INTERVALS = 5_184_000


def generate(
    days: float,
    regime: str,
    seed: int,
    interval_s: float = 5.0,
    *,
    start: pd.Timestamp | str = DEFAULT_START,
    rate_scale: float = 1.0,
) -> Series:
    """A synthetic context-token demand series of ``days`` days at ``interval_s`` seconds.

    ``regime`` is ``chat``, ``code`` or ``shift`` (chat for the first half of the
    intervals, then code); ``start`` is the UTC time of the first interval (naive times
    are taken as UTC) and ``rate_scale`` multiplies the request rate. Same arguments,
    same series.
    """
    if regime not in REGIME_NAMES:
        raise DataError(
            f"unknown synthetic regime {regime!r}: expected one of {', '.join(REGIME_NAMES)}"
        )
    if not (np.isfinite(days) and 0 < days <= MAX_DAYS):
        raise DataError(
            f"synthetic series: days must be a positive number of at most {MAX_DAYS:g}, got {days}"
        )
    if not (np.isfinite(interval_s) and interval_s > 0):
        raise DataError(
            f"synthetic series: interval must be a positive number of seconds, got {interval_s}"
        )
    if not (np.isfinite(rate_scale) and rate_scale > 0):
        raise DataError(f"synthetic series: rate_scale must be positive, got {rate_scale}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"synthetic series: seed must be a non-negative integer, got {seed!r}")
    n = round(days * _SECONDS_PER_DAY / interval_s)
    if n < 1:
        raise DataError(
            f"synthetic series of {days} days at {interval_s} s holds no whole interval"
        )
    if n > MAX_INTERVALS:
        raise DataError(
            f"synthetic series of {days} days at {interval_s} s would hold {n:,} intervals, "
            f"more than {MAX_INTERVALS:,}; choose fewer days or a longer interval"
        )
    t0 = _utc(start)
    meta: dict[str, object] = {
        "generator": "drdfl.data.synthetic",
        "regime": regime,
        "seed": seed,
        "days": days,
        "rate_scale": rate_scale,
    }
    if regime == "shift":
        first, second = np.random.SeedSequence(seed).spawn(2)
        switch = n // 2
        second_start = t0 + pd.Timedelta(seconds=switch * interval_s)
        values = np.concatenate(
            (
                simulate(REGIMES["chat"], switch, interval_s, t0, first, rate_scale),
                simulate(REGIMES["code"], n - switch, interval_s, second_start, second, rate_scale),
            )
        )
        meta["switch_index"] = switch
        meta["regimes"] = {"chat": asdict(REGIMES["chat"]), "code": asdict(REGIMES["code"])}
    else:
        values = simulate(REGIMES[regime], n, interval_s, t0, seed, rate_scale)
        meta["regimes"] = {regime: asdict(REGIMES[regime])}
    return Series(values, f"synthetic-{regime}", interval_s, "tokens", t0, meta)
