import numpy as np
import pandas as pd
import pytest

from drdfl.data.binning import (
    MAX_BINS,
    Binner,
    bin_requests,
    format_interval,
    interval_ns,
    parse_interval,
)
from drdfl.data.readers import azure
from drdfl.errors import DataError

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("500ms", 0.5),
        ("1min", 60.0),
        ("1h", 3600.0),
        ("2 minutes", 120.0),
        ("1.5h", 5400.0),
        ("250us", 250e-6),
        ("1d", 86400.0),
        ("10", 10.0),
        ("1h30min", 5400.0),
        ("1 day", 86400.0),
        (2.5, 2.5),
    ],
)
def test_parse_interval(text, seconds):
    assert parse_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 parsecs", "", "five seconds", "5s5", "1e3s", "nan", "inf"])
def test_parse_interval_rejects_unparsable(text):
    with pytest.raises(DataError, match=r"interval .* does not parse: expected .*5s"):
        parse_interval(text)


@pytest.mark.parametrize("value", ["0s", 0, -1.0, "0.1ns", "-5s"])
def test_parse_interval_rejects_non_positive(value):
    with pytest.raises(DataError, match="not positive"):
        parse_interval(value)


def test_format_interval_round_trips():
    for text in ["5s", "500ms", "1min", "1h", "90s", "250us"]:
        assert format_interval(parse_interval(text)) == text


def test_bins_align_to_epoch_multiples_and_keep_empty_bins():
    times = np.array([12.0, 14.9, 15.0, 31.0]) * S
    start, values = bin_requests(times.astype(np.int64), np.array([1.0, 2.0, 4.0, 8.0]), "5s")
    assert start == 10 * S  # 12 s falls in the bin starting at the multiple of 5 below it
    np.testing.assert_array_equal(values, [3.0, 4.0, 0.0, 0.0, 8.0])


def test_sub_second_interval():
    times = np.array([0, 100, 499, 500, 1600], dtype=np.int64) * 1_000_000  # ms → ns
    _, values = bin_requests(times, np.ones(5), "500ms")
    np.testing.assert_array_equal(values, [3.0, 1.0, 0.0, 1.0])


def test_chunked_binning_matches_pandas_resample():
    rng = np.random.default_rng(3)
    times = np.sort(rng.integers(1_700_000_000 * S, 1_700_003_600 * S, size=5_000))
    tokens = rng.integers(1, 5_000, size=times.size).astype(float)
    binner = Binner("1min")
    for part_t, part_w in zip(np.array_split(times, 7), np.array_split(tokens, 7), strict=True):
        binner.add(part_t, part_w)
    reference = pd.Series(tokens, index=pd.to_datetime(times)).resample("1min").sum()
    assert binner.start_ns == reference.index[0].value
    np.testing.assert_array_equal(binner.values, reference.to_numpy())
    assert binner.rows == 5_000


def test_equal_timestamps_are_allowed_but_going_back_is_an_error():
    binner = Binner("5s", source="trace.csv")
    binner.add(np.array([0, 0, 5 * S]), np.ones(3), first_line=2)
    with pytest.raises(DataError, match=r"trace.csv, line 9: timestamp goes back in time"):
        binner.add(np.array([6 * S, 7 * S, 3 * S]), np.ones(3), first_line=7)
    across = Binner("5s", source="t.csv")
    across.add(np.array([10 * S]), np.ones(1), first_line=2)
    with pytest.raises(DataError, match=r"t.csv, line 3: timestamp goes back"):
        across.add(np.array([9 * S]), np.ones(1), first_line=3)


@pytest.mark.parametrize(("bad", "what"), [(np.nan, "missing or not a number"), (-3.0, "negative")])
def test_bad_token_counts_name_the_line(bad, what):
    binner = Binner("5s", source="x.csv")
    with pytest.raises(DataError, match=rf"x.csv, line 12: token count is {what}"):
        binner.add(np.arange(4) * S, np.array([1.0, 2.0, bad, 4.0]), first_line=10)


def test_too_many_bins_is_an_error_not_an_allocation():
    with pytest.raises(DataError, match=f"more than {MAX_BINS:,} intervals"):
        bin_requests(np.array([0, 10 * S]), np.ones(2), "10ns")
    # An hour at 1 ns would be 3.6e12 bins (29 TB): refused before anything is allocated.
    with pytest.raises(DataError, match=f"more than {MAX_BINS:,} intervals"):
        bin_requests(np.array([0, 3600 * S]), np.ones(2), "1ns")


def test_interval_ns_is_exact_for_decimal_strings():
    assert interval_ns("0.1s") == 100_000_000
    assert interval_ns("1min") == 60 * S


def test_binning_2023_conversation_reproduces_paper_file(data_dir):
    series = azure.read(data_dir / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv", "5s")
    paper = pd.read_csv(
        data_dir / "paper-3dl" / "AzureLLMInferenceTrace_2023_Conversation_compressed-5s.csv"
    )
    assert len(series) == 701
    np.testing.assert_array_equal(series.values, paper["ContextTokens"].to_numpy()[:701])
    assert series.start == pd.Timestamp("2023-11-16 18:15:45")
    assert series.meta["requests"] == 19_366  # the data README says 19,365: one short
