"""The built-in synthetic workload: calibration against the real traces, and its contract.

Calibration references (read directly with pandas, column ``ContextTokens``, 5 s bins):

* ``chat`` is calibrated to ``azure-llm-2024-5s/conv_5s.csv`` (60,480 bins = 3.5 days,
  taken to start Sunday 2024-05-12 00:00 UTC: its first day is the weekend level and the
  weekday rise starts at bin 17,280);
* ``code`` is calibrated to ``azure-llm-2024-5s/code_5s.csv`` (60,479 bins, Friday
  2024-05-10 00:00 UTC: one office-hours peak, then the weekend).

The generator is run over the same calendar window. Tolerances (met by seeds 0-11, not
only by seed 0 used here):

=========  =========  ========  ===================  ===============================
regime     mean       CV        ACF lags 1-12        burst structure (vs 1 h mean)
=========  =========  ========  ===================  ===============================
chat       ±7 %       ±15 %     ±0.04 per lag        CV ±10 %, ACF lags 1-6 ±0.05
code       ±15 %      ±25 %     ±0.06 per lag        CV ±10 %, ACF lags 1-6 ±0.06
=========  =========  ========  ===================  ===============================

Code is looser because its 3.5-day window holds a single working day, whose level the
hours-long drift moves by ±20 % from seed to seed (CV 0.75-1.09 over seeds 0-11, against
0.95 real). Chat's mean is within 5.4 % and its CV within 10.5 % over seeds 0-11.

The 2023 series (first 701 bins of the 2023 conversation file, first 233 of the coding
file; one hour of a deployment 14-30 times smaller) are not calibration targets. They are
compared with the generator at the same UTC hour and a ``rate_scale`` fitted to their
token rate: CV within 25 % (chat) and 40 % (code). What is not matched, and why: the
2023 conversation hour holds a 20-minute surge to twice the level, which lifts its
autocorrelation to about 0.58 at every lag 1-12 (the generator's chat has 0.25-0.43 at
lag 1, falling to about 0 by lag 12); the 2023 coding file keeps only the 233 non-empty bins
of 688 (batch submissions leave 66 % of bins empty), while the generator, calibrated on
2024, fills more than 99 % of bins, so its CV there is lower (0.61-0.68 against 0.81).
Its lag-1 autocorrelation does match (within 0.15).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import uniform_filter1d

from drdfl.data.synthetic import DEFAULT_START, REGIME_NAMES, generate
from drdfl.errors import DataError

LAGS = np.arange(1, 13)


def autocorrelation(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Sample autocorrelation at ``lags`` (biased estimator, mean removed)."""
    z = x - x.mean()
    var = float(np.mean(z * z))
    return np.array([np.mean(z[:-lag] * z[lag:]) / var for lag in lags])


def burst_part(x: np.ndarray) -> np.ndarray:
    """``x`` relative to its centred 1-hour moving mean (720 bins of 5 s)."""
    return x / uniform_filter1d(x, 721, mode="nearest")


def read_tokens(path: Path, rows: int | None = None) -> np.ndarray:
    return pd.read_csv(path, nrows=rows)["ContextTokens"].to_numpy(dtype=np.float64)


CALIBRATION = {
    # regime: (file, calendar start, mean tol, CV tol, ACF tol, burst ACF tol)
    "chat": ("conv_5s.csv", "2024-05-12", 0.07, 0.15, 0.04, 0.05),
    "code": ("code_5s.csv", "2024-05-10", 0.15, 0.25, 0.06, 0.06),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("regime", ["chat", "code"])
def test_regime_matches_its_2024_reference(data_dir: Path, regime: str) -> None:
    name, start, mean_tol, cv_tol, acf_tol, burst_acf_tol = CALIBRATION[regime]
    real = read_tokens(data_dir / "azure-llm-2024-5s" / name)
    synth = generate(len(real) * 5.0 / 86_400, regime, seed=0, start=start).values
    assert synth.shape == real.shape

    assert synth.mean() == pytest.approx(real.mean(), rel=mean_tol)
    cv_real, cv_synth = real.std() / real.mean(), synth.std() / synth.mean()
    assert cv_synth == pytest.approx(cv_real, rel=cv_tol)
    np.testing.assert_allclose(
        autocorrelation(synth, LAGS), autocorrelation(real, LAGS), atol=acf_tol
    )

    # The short-term bursts on their own (seasonality divided out).
    real_b, synth_b = burst_part(real), burst_part(synth)
    assert synth_b.std() == pytest.approx(real_b.std(), rel=0.10)
    np.testing.assert_allclose(
        autocorrelation(synth_b, LAGS[:6]), autocorrelation(real_b, LAGS[:6]), atol=burst_acf_tol
    )


@pytest.mark.shared_data
def test_chat_at_2023_scale_has_the_2023_spread(data_dir: Path) -> None:
    real = read_tokens(
        data_dir / "paper-3dl" / "AzureLLMInferenceTrace_2023_Conversation_compressed-5s.csv",
        rows=701,
    )
    start = "2023-11-16 18:15:00"
    days = len(real) * 5.0 / 86_400
    # rate_scale fitted to the 2023 mean (the rate path does not depend on the scale).
    scale = real.mean() / generate(days, "chat", seed=0, start=start).values.mean()
    synth = generate(days, "chat", seed=0, start=start, rate_scale=scale).values
    assert synth.std() / synth.mean() == pytest.approx(real.std() / real.mean(), rel=0.25)


@pytest.mark.shared_data
def test_code_at_2023_scale_on_non_empty_bins(data_dir: Path) -> None:
    real = read_tokens(
        data_dir / "paper-3dl" / "AzureLLMInferenceTrace_2023_Coding_compressed-5s.csv",
        rows=233,
    )
    start, bins = "2023-11-16 18:17:00", 688  # the hour the 233 non-empty bins come from
    days = bins * 5.0 / 86_400
    scale = real.sum() / bins / generate(days, "code", seed=0, start=start).values.mean()
    synth = generate(days, "code", seed=0, start=start, rate_scale=scale).values
    busy = synth[synth > 0]
    assert busy.std() / busy.mean() == pytest.approx(real.std() / real.mean(), rel=0.40)
    assert autocorrelation(busy, LAGS[:1])[0] == pytest.approx(
        autocorrelation(real, LAGS[:1])[0], abs=0.15
    )


def test_same_seed_same_series_and_other_seeds_differ() -> None:
    for regime in REGIME_NAMES:
        a = generate(0.25, regime, seed=11)
        b = generate(0.25, regime, seed=11)
        c = generate(0.25, regime, seed=12)
        np.testing.assert_array_equal(a.values, b.values)
        assert not np.array_equal(a.values, c.values)
        assert a.start == b.start and a.meta["seed"] == 11


def test_values_are_whole_non_negative_token_counts() -> None:
    s = generate(0.5, "code", seed=3)
    assert len(s) == 8_640 and s.interval_s == 5.0 and s.unit == "tokens"
    assert np.all(s.values >= 0)
    np.testing.assert_array_equal(s.values, np.round(s.values))


@pytest.mark.parametrize("regime", ["chat", "code"])
def test_daily_and_weekly_seasonality(regime: str) -> None:
    # Two weeks from a Monday at 5-minute intervals, on a small deployment (fast).
    s = generate(14, regime, seed=5, interval_s=300.0, rate_scale=0.01, start="2024-05-13")
    hourly = s.values.reshape(14, 24, 12).sum(axis=2)  # day x hour of day (UTC)
    week1, week2 = hourly[0:5].mean(axis=0), hourly[7:12].mean(axis=0)
    # The working-day shape recurs: each week's mean working day has a clear peak over
    # its trough, and the two weeks' shapes agree.
    for day in (week1, week2):
        assert day.max() / day.min() > 1.3
    assert np.corrcoef(week1, week2)[0, 1] > 0.75
    # Weekends carry less traffic than working days.
    assert hourly[np.r_[0:5, 7:12]].mean() > 1.5 * hourly[np.r_[5:7, 12:14]].mean()


def test_coarser_interval_aggregates_the_same_process() -> None:
    fine = generate(1, "chat", seed=9, interval_s=5.0, rate_scale=0.1).values
    coarse = generate(1, "chat", seed=9, interval_s=60.0, rate_scale=0.1).values
    assert coarse.shape == (1_440,)
    # Same rate path (simulated at 5 s in both), independent requests: hourly totals
    # differ only by request noise (relative sd about 3 % per hour here).
    hourly_fine = fine.reshape(24, 720).sum(axis=1)
    hourly_coarse = coarse.reshape(24, 60).sum(axis=1)
    np.testing.assert_allclose(hourly_coarse, hourly_fine, rtol=0.12)
    assert hourly_coarse.sum() == pytest.approx(hourly_fine.sum(), rel=0.03)


def test_shift_switches_from_chat_to_code_in_the_middle() -> None:
    s = generate(1, "shift", seed=2)
    n = len(s)
    assert n == 17_280 and s.meta["switch_index"] == n // 2
    first, second = s.values[: n // 2], s.values[n // 2 :]
    noon = pd.Timestamp(DEFAULT_START) + pd.Timedelta(hours=12)
    chat = generate(0.5, "chat", seed=3).values
    code = generate(0.5, "code", seed=3, start=noon).values
    # Each half has the burstiness of its regime over the same hours: code's 5 s spread
    # around the hourly mean is about twice chat's.
    spread = {k: burst_part(v).std() for k, v in {"1st": first, "2nd": second}.items()}
    assert spread["1st"] == pytest.approx(burst_part(chat).std(), rel=0.15)
    assert spread["2nd"] == pytest.approx(burst_part(code).std(), rel=0.15)
    assert spread["2nd"] > 1.5 * spread["1st"]


def test_bad_arguments_raise_data_error() -> None:
    with pytest.raises(DataError, match="chat, code, shift"):
        generate(1, "video", seed=0)
    with pytest.raises(DataError, match="days"):
        generate(0, "chat", seed=0)
    with pytest.raises(DataError, match="interval"):
        generate(1, "chat", seed=0, interval_s=-5)
    with pytest.raises(DataError, match="seed"):
        generate(1, "chat", seed=-1)
    with pytest.raises(DataError, match="no whole interval"):
        generate(1e-6, "chat", seed=0)
