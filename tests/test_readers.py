import json

import numpy as np
import pandas as pd
import pytest

from drdfl.data.readers import azure, binned, burstgpt, detect_format, mooncake, read_series
from drdfl.data.series import Series
from drdfl.errors import DataError, DatasetNotFoundError

AZURE_2023 = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:49.9999999,100,10
2023-11-16 18:15:50.0000000,7,3
2023-11-16 18:16:02.1000000,20,2
"""

# 2024 style: offset always present, microseconds omitted when they are zero.
AZURE_2024 = """TIMESTAMP,ContextTokens,GeneratedTokens
2024-05-10 00:00:00+00:00,1000,5
2024-05-10 00:00:01.008000+00:00,200,6
2024-05-10 00:00:05+00:00,30,7
2024-05-10 00:00:14.999999+00:00,4,8
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_azure_2023_naive_seven_digit_timestamps(tmp_path):
    path = write(tmp_path, "conv.csv", AZURE_2023)
    series = azure.read(path, "5s")
    assert series.start == pd.Timestamp("2023-11-16 18:15:45")
    assert series.start.tz is None
    np.testing.assert_array_equal(series.values, [474.0, 7.0, 0.0, 20.0])
    assert series.name == "conv"
    assert series.meta["requests"] == 4


def test_azure_2024_tz_aware_with_and_without_microseconds(tmp_path):
    path = write(tmp_path, "code_1week.csv", AZURE_2024)
    series = azure.read(path, "5s")
    assert series.start == pd.Timestamp("2024-05-10 00:00:00", tz="UTC")
    np.testing.assert_array_equal(series.values, [1200.0, 30.0, 4.0])
    np.testing.assert_array_equal(azure.read(path, "5s", tokens="generated").values, [11, 7, 8])
    np.testing.assert_array_equal(azure.read(path, "10s", tokens="total").values, [1248, 12])


def test_azure_offsets_are_converted_to_utc(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 02:00:03+02:00,5,1\n"
    series = azure.read(write(tmp_path, "tz.csv", text), "5s")
    assert series.start == pd.Timestamp("2024-05-10 00:00:00", tz="UTC")


def test_mixed_naive_and_offset_timestamps_take_naive_as_utc(tmp_path):
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:01,5,1\n"
        "2024-05-10 02:00:06+02:00,7,1\n"
        "2024-05-10 00:00:12.5,9,1\n"
    )
    series = azure.read(write(tmp_path, "mixed.csv", text), "5s")
    np.testing.assert_array_equal(series.values, [5.0, 7.0, 9.0])


def test_chunked_reading_equals_one_chunk(tmp_path):
    rng = np.random.default_rng(11)
    n = 600
    gaps = rng.exponential(0.7, size=n)
    stamps = pd.Timestamp("2024-05-10", tz="UTC") + pd.to_timedelta(np.cumsum(gaps), unit="s")
    frame = pd.DataFrame(
        {
            "TIMESTAMP": stamps.map(pd.Timestamp.isoformat).str.replace("T", " "),
            "ContextTokens": rng.integers(1, 8_000, n),
            "GeneratedTokens": rng.integers(0, 900, n),
        }
    )
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    whole = azure.read(path, "5s", tokens="total", chunksize=n)
    for chunksize in (1, 37, 250):
        chunked = azure.read(path, "5s", tokens="total", chunksize=chunksize)
        np.testing.assert_array_equal(chunked.values, whole.values)
        assert chunked.start == whole.start
    assert whole.values.sum() == frame["ContextTokens"].sum() + frame["GeneratedTokens"].sum()


def test_mooncake_jsonl(tmp_path):
    records = [
        {"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [0, 1]},
        {"timestamp": 4999, "input_length": 5, "output_length": 1, "hash_ids": [2]},
        {"timestamp": 5000, "input_length": 300, "output_length": 20, "hash_ids": []},
        {"timestamp": 16000, "input_length": 7, "output_length": 3, "hash_ids": [9]},
    ]
    path = write(tmp_path, "mooncake.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    assert detect_format(path) == "mooncake"
    series = read_series(path, interval="5s")
    assert series.start == pd.Timestamp(0)
    np.testing.assert_array_equal(series.values, [6960, 300, 0, 7])
    np.testing.assert_array_equal(
        mooncake.read(path, "5s", tokens="generated", chunksize=3).values, [53, 20, 0, 3]
    )


BURSTGPT = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,250,1337,Conversation log
118,GPT-4,417,276,693,Conversation log
119.5,ChatGPT,1360,0,1360,Conversation log
"""


def test_burstgpt_csv(tmp_path):
    path = write(tmp_path, "BurstGPT_1.csv", BURSTGPT)
    assert detect_format(path) == "burstgpt"
    series = read_series(path, interval="1min")
    np.testing.assert_array_equal(series.values, [1559, 1777])
    total = burstgpt.read(path, "1min", tokens="total", chunksize=2)
    np.testing.assert_array_equal(total.values, [1827, 2053])


def test_format_detection_tells_azure_from_paper_style_binned(tmp_path, data_dir):
    assert detect_format(write(tmp_path, "a.csv", AZURE_2023)) == "azure"
    paper = data_dir / "paper-3dl" / "AzureLLMInferenceTrace_2023_Conversation_compressed-5s.csv"
    assert detect_format(paper) == "binned"  # same header, but minute labels, not requests
    assert detect_format(data_dir / "azure-llm-2024-5s" / "code_5s.csv") == "binned"


PAPER_ROWS = {
    "AzureLLMInferenceTrace_2023_Conversation_compressed-5s.csv": 21_030,
    "AzureLLMInferenceTrace_2023_Coding_compressed-5s.csv": 22_368,
    "Combined_AzureLLMInferenceTrace_2023_Coding_2024_Coding_compressed-5s.csv": 71_663,
    "Combined_AzureLLMInferenceTrace_2023_Coding_2024_Conversation_compressed-5s.csv": 71_664,
    "Combined_AzureLLMInferenceTrace_2024_Coding_2024_Conversation_compressed-5s.csv": 120_959,
}


def test_every_paper_and_2024_5s_file_reads(data_dir):
    files = {data_dir / "paper-3dl" / f: n for f, n in PAPER_ROWS.items()}
    files[data_dir / "azure-llm-2024-5s" / "code_5s.csv"] = 60_479
    files[data_dir / "azure-llm-2024-5s" / "conv_5s.csv"] = 60_480
    assert sorted(p.name for p in (data_dir / "paper-3dl").glob("*.csv")) == sorted(PAPER_ROWS)
    for path, rows in files.items():
        series = read_series(path)
        assert len(series) == rows, path
        assert series.interval_s == 5.0
        assert series.start is None  # the paper's minute labels repeat: not a time axis
        assert np.all(np.isfinite(series.values)) and series.values.min() >= 0
    code = read_series(data_dir / "azure-llm-2024-5s" / "code_5s.csv").values
    combined = read_series(data_dir / "paper-3dl" / list(PAPER_ROWS)[4]).values
    np.testing.assert_array_equal(combined[:60_479], code)


def test_binned_column_choice_and_round_trip(tmp_path):
    series = Series(
        np.array([3.0, 0.0, 7.0, 1.0]), "s", 60.0, start=pd.Timestamp("2024-05-10", tz="UTC")
    )
    path = tmp_path / "out.csv"
    binned.write(series, path, column="GeneratedTokens")
    assert path.read_text().splitlines()[:2] == [
        "TIMESTAMP,GeneratedTokens",
        "2024-05-10T00:00:00+00:00,3",
    ]
    back = binned.read(path, column="GeneratedTokens")
    np.testing.assert_array_equal(back.values, series.values)
    assert back.interval_s == 60.0 and back.start == series.start
    with pytest.raises(DataError, match=r"binned at 1min .* not 5s"):
        binned.read(path, column="GeneratedTokens", interval="5s")
    fractional = Series(np.array([0.25, 1e-3]), "f", 5.0)
    binned.write(fractional, path)
    np.testing.assert_array_equal(binned.read(path).values, fractional.values)


# --- bad input -------------------------------------------------------------------------


def test_missing_column_lists_the_columns(tmp_path):
    path = write(tmp_path, "x.csv", "TIMESTAMP,Context,GeneratedTokens\n2023-11-16 18:15:46,1,2\n")
    with pytest.raises(
        DataError,
        match=r"no column 'ContextTokens'; the file has columns "
        r"'TIMESTAMP', 'Context', 'GeneratedTokens'",
    ):
        azure.read(path)
    with pytest.raises(DataError, match=r"x.csv: no column 'Tokens'"):
        binned.read(path, column="Tokens")


def test_unparsable_timestamp_names_file_and_line(tmp_path):
    text = AZURE_2023.replace("2023-11-16 18:15:50.0000000", "2023-11-16 25:15:50")
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(DataError, match=r"bad.csv, line 4: cannot parse TIMESTAMP '2023-11-16 25"):
        azure.read(path, chunksize=2)


def test_missing_timestamp_names_the_line(tmp_path):
    path = write(tmp_path, "gap.csv", AZURE_2023.replace("2023-11-16 18:15:50.0000000", ""))
    with pytest.raises(DataError, match=r"gap.csv, line 4: cannot parse TIMESTAMP missing"):
        azure.read(path)


def test_non_monotone_timestamps_name_the_line(tmp_path):
    lines = AZURE_2023.splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    path = write(tmp_path, "unsorted.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"unsorted.csv, line 4: timestamp goes back in time"):
        azure.read(path)
    with pytest.raises(DataError, match=r"line 4: timestamp goes back"):
        azure.read(path, chunksize=2)  # the step back straddles two chunks


@pytest.mark.parametrize(
    ("value", "what"), [("", "missing"), ("-5", "-5"), ("abc", "'abc'"), ("nan", "missing")]
)
def test_bad_token_counts_name_the_line(tmp_path, value, what):
    path = write(tmp_path, "tok.csv", AZURE_2023.replace(",7,3", f",{value},3"))
    with pytest.raises(DataError, match=rf"tok.csv, line 4: ContextTokens is {what}"):
        azure.read(path)


def test_empty_file_and_header_only(tmp_path):
    empty = write(tmp_path, "empty.csv", "")
    for read in (azure.read, binned.read, burstgpt.read, mooncake.read, read_series):
        with pytest.raises(DataError, match=r"empty.csv is empty"):
            read(empty)
    header = write(tmp_path, "header.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n")
    with pytest.raises(DataError, match=r"header.csv: no requests"):
        azure.read(header)
    with pytest.raises(DataError, match=r"header.csv: no rows below the header"):
        binned.read(header)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="is a directory; expected a trace or series file"):
        read_series(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="nope.csv does not exist"):
        azure.read(tmp_path / "nope.csv")


def test_mooncake_bad_json_and_missing_key(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"timestamp": 1, "input_length": 2, "output_length": 3}\n{')
    with pytest.raises(DataError, match=r"m.jsonl: not valid JSON lines"):
        mooncake.read(path)
    path = write(tmp_path, "k.jsonl", '{"timestamp": 1, "input_tokens": 2, "output_length": 3}\n')
    with pytest.raises(DataError, match=r"no column 'input_length'; the file has columns"):
        mooncake.read(path)


def test_burstgpt_bad_timestamp(tmp_path):
    path = write(tmp_path, "b.csv", BURSTGPT.replace("118,", "soon,"))
    with pytest.raises(DataError, match=r"b.csv, line 4: cannot read Timestamp 'soon'"):
        burstgpt.read(path)


def test_unknown_tokens_and_column_on_request_trace(tmp_path):
    path = write(tmp_path, "a.csv", AZURE_2023)
    with pytest.raises(DataError, match="tokens 'prompt' is not one of context, generated, total"):
        read_series(path, tokens="prompt")
    with pytest.raises(DataError, match="per-request azure trace: choose tokens"):
        read_series(path, column="ContextTokens")


# --- format detection from the columns present ------------------------------------------


def test_request_trace_without_generated_tokens_is_read_as_requests(tmp_path):
    # Three requests over a minute and a half: one bin per request, not one row per 5 s.
    text = "TIMESTAMP,ContextTokens\n" + "".join(
        f"2023-11-16 18:{m}:{s:02d}.5,{t}\n" for m, s, t in [(15, 46, 5), (15, 49, 6), (17, 1, 7)]
    )
    path = write(tmp_path, "ctx.csv", text)
    assert detect_format(path) == "azure"
    series = read_series(path, interval="5s")
    assert len(series) == 16 and series.values.sum() == 18
    assert series.start == pd.Timestamp("2023-11-16 18:15:45")
    with pytest.raises(DataError, match=r"ctx.csv: no column 'GeneratedTokens'; the file has"):
        read_series(path, tokens="generated")


def test_a_binned_file_with_request_style_timestamps_stays_binned(tmp_path):
    series = Series(np.array([3.0, 0.0, 7.0]), "s", 5.0, start=pd.Timestamp("2024-05-10 00:00"))
    path = tmp_path / "binned.csv"
    binned.write(series, path, column="ContextTokens")
    assert detect_format(path) == "binned"
    np.testing.assert_array_equal(read_series(path).values, series.values)


def test_a_header_that_fits_two_request_formats_is_refused(tmp_path):
    text = "TIMESTAMP,ContextTokens,Timestamp,Request tokens\n2023-11-16 18:15:46,1,0,2\n"
    path = write(tmp_path, "both.csv", text)
    with pytest.raises(
        DataError,
        match=r"both.csv: the columns 'TIMESTAMP', 'ContextTokens', 'Timestamp', "
        r"'Request tokens' fit both the azure and the burstgpt request formats",
    ):
        read_series(path)


# --- values a one-column series must not hold -------------------------------------------

BAD_SERIES = {
    "blank line": ("ContextTokens\n1\n2\n\n4\n", r"line 4: ContextTokens is missing"),
    "empty cell": ("TIMESTAMP,ContextTokens\nA,1\nB,\nC,3\n", r"line 3: ContextTokens is missing"),
    "inf": ("ContextTokens\n1\ninf\n", r"line 3: ContextTokens is inf; expected a finite number"),
    "beyond float32": (
        "ContextTokens\n1\n2\n1e300\n",
        r"line 4: ContextTokens is 1e\+300; .*float32",
    ),
    "nan": ("ContextTokens\nnan\n", r"line 2: ContextTokens is 'nan'"),
}


@pytest.mark.parametrize("case", list(BAD_SERIES))
def test_bad_series_values_name_file_and_line(tmp_path, case):
    text, pattern = BAD_SERIES[case]
    path = write(tmp_path, "series.csv", text)
    with pytest.raises(DataError, match=rf"series.csv, {pattern}"):
        read_series(path)


def test_trailing_blank_lines_are_only_the_end_of_the_file(tmp_path):
    path = write(tmp_path, "s.csv", "ContextTokens\n1\n2\n\n\n")
    np.testing.assert_array_equal(read_series(path).values, [1.0, 2.0])


def test_request_tokens_beyond_float32_name_the_line(tmp_path):
    path = write(tmp_path, "big.csv", AZURE_2023.replace(",7,3", ",1e300,3"))
    with pytest.raises(DataError, match=r"big.csv, line 4: ContextTokens is 1e\+300"):
        azure.read(path)
    # Each within the limit, together past it: their sum would square past float32.
    many = "TIMESTAMP,ContextTokens\n" + "2023-11-16 18:15:46,1.5e19\n" * 2
    with pytest.raises(DataError, match=r"sums to 3e\+19 tokens, beyond .* float32 can square"):
        azure.read(write(tmp_path, "sum.csv", many))
