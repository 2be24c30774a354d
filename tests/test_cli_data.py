import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from drdfl.cli import main
from drdfl.data import load_series, registry
from drdfl.data.registry import DATASETS, Dataset
from drdfl.errors import DataError

TRACE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:49.9999999,100,10
2023-11-16 18:15:50.0000000,7,3
2023-11-16 18:16:02.1000000,20,2
"""


def run(capsys, *args):
    """Run ``drdfl ARGS``; returns (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DRDFL_DATA_DIR", raising=False)
    monkeypatch.setenv("DRDFL_OFFLINE", "1")
    return tmp_path


def test_list_marks_local_datasets(capsys, data_dir, env):
    code, out, _ = run(capsys, "data", "list", "--data-dir", str(data_dir), "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert set(rows) == set(DATASETS)
    assert rows["azure-2023-conv"]["available"] == "data dir"
    assert rows["azure-2024-code-week"]["available"] is None
    assert rows["azure-2024-code-week"]["downloadable"] is True
    code, out, _ = run(capsys, "data", "list", "--data-dir", str(data_dir))
    lines = [line for line in out.splitlines() if any(name in line for name in DATASETS)]
    assert len(lines) == len(DATASETS)
    assert sum("✓" in line for line in lines) == len(DATASETS) - 2  # the week traces are absent


def test_info_json_matches_an_independent_binning(capsys, data_dir, env):
    code, out, _ = run(
        capsys, "data", "info", "azure-2023-code", "--data-dir", str(data_dir), "--json",
        "--interval", "1min", "--tokens", "total",
    )  # fmt: skip
    assert code == 0
    info = json.loads(out)
    raw = pd.read_csv(data_dir / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv")
    minute = pd.to_datetime(raw["TIMESTAMP"]).dt.floor("1min")
    per_minute = (raw["ContextTokens"] + raw["GeneratedTokens"]).groupby(minute).sum()
    per_minute = per_minute.reindex(pd.date_range(per_minute.index[0], per_minute.index[-1],
                                                  freq="1min"), fill_value=0)  # fmt: skip
    assert info["rows"] == len(per_minute) == 58
    assert info["mean"] == pytest.approx(per_minute.mean())
    assert info["std"] == pytest.approx(per_minute.std(ddof=0))
    assert info["max"] == per_minute.max() and info["min"] == per_minute.min()
    assert info["interval"] == "1min" and info["start"] == str(per_minute.index[0])
    assert info["requests"] == len(raw)


def test_info_table(capsys, data_dir, env):
    code, out, _ = run(capsys, "data", "info", "paper-2023-conv", "--data-dir", str(data_dir))
    assert code == 0
    assert "21,030" in out and "106,957" in out and "paper-2023-conv" in out


def test_info_reference_w_distance(capsys, data_dir, env):
    code, out, _ = run(
        capsys, "data", "info", "paper-23code-24conv", "--reference", "paper-2023-conv",
        "--data-dir", str(data_dir), "--json",
    )  # fmt: skip
    assert code == 0
    info = json.loads(out)
    assert info["reference"] == "paper-2023-conv"
    assert info["w_distance"] == pytest.approx(0.1359, abs=3e-4)  # the paper's 23D24V value


def test_bin_writes_a_series_that_reads_back(capsys, tmp_path, env):
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    out_csv = tmp_path / "out" / "binned.csv"
    code, out, _ = run(
        capsys, "data", "bin", str(trace), "--interval", "5s", "--tokens", "total",
        "-o", str(out_csv),
    )  # fmt: skip
    assert code == 0 and "4 intervals of 5s" in out
    assert out_csv.read_text().splitlines() == [
        "TIMESTAMP,TotalTokens",
        "2023-11-16T18:15:45,528",
        "2023-11-16T18:15:50,10",
        "2023-11-16T18:15:55,0",
        "2023-11-16T18:16:00,22",
    ]
    back = load_series(out_csv, tokens="total")
    np.testing.assert_array_equal(back.values, [528, 10, 0, 22])
    assert back.start == pd.Timestamp("2023-11-16 18:15:45")

    minute_csv = tmp_path / "minute.csv"
    assert (
        run(capsys, "data", "bin", str(trace), "--interval", "1min", "-o", str(minute_csv))[0] == 0
    )
    code, out, _ = run(capsys, "data", "info", str(minute_csv), "--json")  # the file's interval
    assert code == 0
    assert json.loads(out)["interval"] == "1min" and json.loads(out)["max"] == 481


def test_synth_is_seeded_and_readable(capsys, tmp_path, env):
    a, b, c = (tmp_path / f"{n}.csv" for n in "abc")
    for path, seed in ((a, 7), (b, 7), (c, 8)):
        args = ["--days", "0.05", "--regime", "shift", "--seed", str(seed), "-o", str(path)]
        assert run(capsys, "data", "synth", *args)[0] == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    series = load_series(a)
    assert len(series) == 864 and series.interval_s == 5.0
    code, out, _ = run(capsys, "data", "info", str(a), "--json")
    assert code == 0 and json.loads(out)["rows"] == 864


# --- bad input: one line on stderr, exit status 2, no traceback, no output file ---------


def assert_clean_failure(code, out, err, pattern, out_dir):
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + out
    import re

    assert re.search(pattern, err), err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


BAD_TRACES = {
    "missing column": (
        TRACE.replace("ContextTokens", "Context"),
        r"no column 'ContextTokens'; the file has columns 'TIMESTAMP', 'Context', "
        r"'GeneratedTokens'",
    ),
    "unparsable timestamp": (
        TRACE.replace("2023-11-16 18:15:50.0000000", "16/11/2023 soon"),
        r"bad.csv, line 4: cannot parse TIMESTAMP '16/11/2023 soon'",
    ),
    "non-monotone": (
        TRACE.replace("18:16:02.1", "18:15:02.1"),
        r"bad.csv, line 5: timestamp goes back in time",
    ),
    "nan tokens": (TRACE.replace(",7,3", ",,3"), r"bad.csv, line 4: ContextTokens is missing"),
    "negative tokens": (
        TRACE.replace(",7,3", ",-7,3"),
        r"bad.csv, line 4: ContextTokens is -7; expected a non-negative number",
    ),
    "empty file": ("", r"bad.csv is empty"),
    "inf tokens": (TRACE.replace(",7,3", ",inf,3"), r"bad.csv, line 4: ContextTokens is inf"),
    "tokens beyond float32": (
        TRACE.replace(",7,3", ",1e300,3"),
        r"bad.csv, line 4: ContextTokens is 1e\+300; expected a finite number whose square "
        r"the model's float32 can hold \(at most 1.84e\+19\)",
    ),
    "tokens whose square overflows float32": (
        TRACE.replace(",7,3", ",3e38,3"),
        r"bad.csv, line 4: ContextTokens is 3e\+38; expected a finite number whose square",
    ),
    "two request formats": (
        "TIMESTAMP,ContextTokens,Timestamp,Request tokens\n2023-11-16 18:15:46,1,0,2\n",
        r"bad.csv: the columns .* fit both the azure and the burstgpt request formats",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TRACES))
def test_bad_trace(capsys, tmp_path, env, case):
    text, pattern = BAD_TRACES[case]
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    out_dir = tmp_path / "out"
    result = run(capsys, "data", "bin", str(bad), "-o", str(out_dir / "x.csv"))
    assert_clean_failure(*result, pattern, out_dir)


BAD_SERIES = {
    "blank line": ("ContextTokens\n5\n\n7\n", r"bad.csv, line 3: ContextTokens is missing"),
    "inf": ("ContextTokens\n5\ninf\n", r"bad.csv, line 3: ContextTokens is inf"),
    "1e300": ("ContextTokens\n1e300\n", r"bad.csv, line 2: ContextTokens is 1e\+300"),
    "text": ("ContextTokens\n5\nlots\n", r"bad.csv, line 3: ContextTokens is 'lots'"),
}


@pytest.mark.parametrize("case", list(BAD_SERIES))
def test_bad_series(capsys, tmp_path, env, case):
    text, pattern = BAD_SERIES[case]
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    assert_clean_failure(*run(capsys, "data", "info", str(bad)), pattern, tmp_path / "out")


def test_directory_instead_of_file(capsys, tmp_path, env):
    out_dir = tmp_path / "out"
    result = run(capsys, "data", "bin", str(tmp_path), "-o", str(out_dir / "x.csv"))
    assert_clean_failure(*result, r"is a directory; expected a trace or series file", out_dir)


def test_unknown_dataset_suggests(capsys, tmp_path, env):
    result = run(capsys, "data", "info", "azure-2024-conv-5", "--data-dir", str(tmp_path))
    assert_clean_failure(*result, r"did you mean azure-2024-conv-5s", tmp_path / "out")


def test_interval_that_does_not_parse(capsys, tmp_path, env):
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    out_dir = tmp_path / "out"
    result = run(capsys, "data", "bin", str(trace), "--interval", "5 parsecs", "-o",
                 str(out_dir / "x.csv"))  # fmt: skip
    assert_clean_failure(*result, r"interval '5 parsecs' does not parse", out_dir)


def test_debug_shows_the_traceback(tmp_path, env):
    with pytest.raises(DataError, match="is a directory"):
        main(["--debug", "data", "bin", str(tmp_path), "-o", str(tmp_path / "x.csv")])


class _Handler(BaseHTTPRequestHandler):
    """Serves TRACE, in full or cut off short of its declared length."""

    def do_GET(self):
        body = TRACE.encode()
        self.send_response(200)
        extra = 100 if self.path == "/truncated.csv" else 0
        self.send_header("Content-Length", str(len(body) + extra))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("route", "sha256", "pattern"),
    [
        ("good.csv", "f" * 64, r"checksum mismatch for tiny .* the download was discarded"),
        ("truncated.csv", None, r"download of tiny .* is truncated"),
    ],
)
def test_bad_download(capsys, tmp_path, env, monkeypatch, server, route, sha256, pattern):
    monkeypatch.delenv("DRDFL_OFFLINE")
    sha256 = sha256 or hashlib.sha256(TRACE.encode()).hexdigest()
    dataset = Dataset("tiny", "t/tiny.csv", "azure", "test", sha256, f"{server}/{route}")
    monkeypatch.setattr(registry, "DATASETS", {"tiny": dataset})
    out_dir = tmp_path / "out"
    result = run(capsys, "data", "bin", "tiny", "-o", str(out_dir / "x.csv"))
    assert_clean_failure(*result, pattern, out_dir)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").rglob("*.*")) == []


# --- misuse of `drdfl data bin` -----------------------------------------------------------


def test_bin_refuses_to_replace_its_own_input(capsys, tmp_path, env):
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    link = tmp_path / "link.csv"
    link.symlink_to(trace)
    for output in (trace, link):
        code, out, err = run(capsys, "data", "bin", str(trace), "-o", str(output))
        assert code == 2 and "is the input trace" in err and str(output) in err, err
        assert err.count("\n") == 1 and "Traceback" not in err + out
    assert trace.read_text() == TRACE


def test_bin_into_a_directory_is_refused(capsys, tmp_path, env):
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    code, _, err = run(capsys, "data", "bin", str(trace), "-o", str(tmp_path))
    assert code == 2 and "is a directory; expected a CSV file to write" in err, err


def test_bin_at_one_nanosecond_is_refused_before_allocating(capsys, tmp_path, env):
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    out_dir = tmp_path / "out"
    result = run(capsys, "data", "bin", str(trace), "--interval", "1ns", "-o", str(out_dir / "x"))
    assert_clean_failure(*result, r"trace.csv: binning at 1ns gives more than", out_dir)
