"""Data that would make meaningless numbers: refused where it is read, naming the file and
line, before any output exists; or, when it can only teach nothing (a constant training
series), said at the top of the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from drdfl.data.readers import read_series
from drdfl.data.series import Series
from drdfl.data.suites import chronological_suite
from drdfl.errors import DataError

HONEST_FILES = (
    "azure-llm-2023/AzureLLMInferenceTrace_code.csv",
    "azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
    "azure-llm-2024-5s/code_5s.csv",
    "azure-llm-2024-5s/conv_5s.csv",
)
#: the honest suite's training trace
TRAIN_FILE = "azure-llm-2024-5s/conv_5s.csv"
FAST = [
    "data.suite=honest",
    "seeds=0",
    "methods=mse",
    "train.epochs=1",
    "evaluation.skyline=false",
    "evaluation.corruptions=false",
    "evaluation.online=false",
    "data.test_max_rows=200",
]


def _run_args(out: Path, data: Path, sets: list[str]) -> list[str]:
    args = ["run", "--out", str(out), "--no-progress", "--data-dir", str(data)]
    for item in sets:
        args += ["--set", item]
    return args


def _honest_copy(data_dir: Path, into: Path, train_lines: list[str]) -> Path:
    """The honest suite's files in ``into``, its training trace replaced by ``train_lines``."""
    for name in HONEST_FILES:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        if name != TRAIN_FILE:
            shutil.copy(data_dir / name, into / name)
    (into / TRAIN_FILE).write_text("".join(train_lines))
    return into


def _series_file(path: Path, values: list[str]) -> Path:
    path.write_text("ContextTokens\n" + "".join(f"{v}\n" for v in values))
    return path


def test_a_test_value_whose_square_overflows_float32_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3e38 fits float32, its square does not: the MSE read inf beside a finite regret.
    values = [str(1000 + i % 7) for i in range(300)]
    values[49] = "3e38"
    test = _series_file(tmp_path / "spike.csv", values)
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "run", "--out", str(out), "--set", "seeds=0", "--test", str(test)
    )
    assert code == 2 and not out.exists()
    assert err.strip() == (
        f"error: {test}, line 51: ContextTokens is 3e+38; expected a finite number whose "
        "square the model's float32 can hold (at most 1.84e+19)"
    )


def test_a_value_that_would_set_the_scaler_alone_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    values = [f"{v:.0f}" for v in rng.uniform(1e4, 2e4, 2000)]
    values[99] = "1e12"  # within float32's square, but 5e7 times the rest
    path = _series_file(tmp_path / "trace.csv", values)
    with pytest.raises(DataError) as error:
        chronological_suite("mine", read_series(path))
    assert str(error.value).startswith(
        f"{path}, line 101: ContextTokens is 1e+12, over 1000 times the 99th percentile of "
        "the training series"
    )
    # A spike in the test part is not fitted to: it only raises that part's errors.
    values[99], values[1900] = values[98], "1e12"
    suite = chronological_suite("mine", read_series(_series_file(path, values)))
    assert suite.data.scaler.hi < 2e4
    # An ordinary burst is not a dominant value.
    burst = np.r_[np.full(990, 100.0), np.full(10, 5e4)]
    assert Series(burst, "bursty").dominant() is None


def test_a_dominated_training_trace_stops_the_run_before_any_output(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (data_dir / TRAIN_FILE).read_text().splitlines(keepends=True)
    lines[1001] = "1e12\n"
    data = _honest_copy(data_dir, tmp_path / "data", lines)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *_run_args(out, data, FAST))
    assert code == 2 and not out.exists()
    assert err.startswith(f"error: {data / TRAIN_FILE}, line 1002: ContextTokens is 1e+12")
    assert "\n" not in err.strip()


def test_a_constant_training_series_is_warned_about_at_the_top_of_the_report(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path / "cache"))
    rows = len((data_dir / TRAIN_FILE).read_text().splitlines()) - 1
    data = _honest_copy(data_dir, tmp_path / "data", ["ContextTokens\n", *["5000\n"] * rows])
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="constant"):  # also said as the unit trains
        code, _, err = run_cli(capsys, *_run_args(out, data, [*FAST, "jobs=1"]))
    assert code == 0, err
    head = (out / "report.md").read_text(encoding="utf-8").split("\n## ")[0]
    assert (
        f"- **warning**: training series 24V:train ({data / TRAIN_FILE}): it is constant "
        "(5000) in all 42,326 intervals; a forecaster learns nothing from it"
    ) in head
