"""Errors name their cause: the file, the key the user set, the limit; never Ctrl-C's
"aborted", never a bare decompressor or disk message, never a key the user did not set."""

from __future__ import annotations

import errno
import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from drdfl import _io

TINY = [
    "seeds=0",
    "methods=mse",
    "train.epochs=1",
    "data.synthetic_days=0.25",
    "evaluation.skyline=false",
    "evaluation.corruptions=false",
]
SERIES = "ContextTokens\n" + "".join(f"{1000 + i % 7}\n" for i in range(20_000))


def _run(out: Path, *extra: str) -> list[str]:
    args = ["run", "--out", str(out), "--no-progress", "--jobs", "1"]
    for item in TINY:
        args += ["--set", item]
    return [*args, *extra]


@pytest.mark.parametrize("debug", [False, True])
def test_a_truncated_gzip_names_the_file_and_is_not_an_interrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], debug: bool
) -> None:
    packed = gzip.compress(SERIES.encode())
    path = tmp_path / "trace.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    out = tmp_path / "out"
    message = (
        f"{path}: ends before its compressed data does (truncated?); expected a complete .gz "
        "file (Compressed file ended before the end-of-stream marker was reached)"
    )
    if debug:  # the traceback's error is the same line
        with pytest.raises(Exception, match=r"ends before its compressed data does") as exc:
            run_cli(capsys, "--debug", *_run(out, "--test", str(path)))
        assert str(exc.value) == message
    else:
        code, _, err = run_cli(capsys, *_run(out, "--test", str(path)))
        assert code == 2 and err.strip() == f"error: {message}"
    assert not out.exists()


def test_a_plain_file_named_gz_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "trace.csv.gz"
    path.write_text(SERIES)
    code, _, err = run_cli(capsys, "data", "info", str(path))
    assert code == 2
    assert err.strip() == (
        f"error: {path}: not a readable .gz file although its name says so (Not a gzipped "
        "file (b'Co')); rename it, or compress it again"
    )


def test_an_eof_error_elsewhere_is_an_error_not_an_interrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from drdfl.runner import driver

    def truncated(self: driver.Run, executor: object = None) -> None:
        raise EOFError("Ran out of input")

    monkeypatch.setattr(driver.Run, "execute", truncated)
    code, _, err = run_cli(capsys, *_run(tmp_path / "out"))
    assert code == 1
    assert err.strip() == "error: EOFError: Ran out of input (--debug shows the traceback)"


def test_a_full_disk_names_the_file_whoever_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An OSError without a file name gets the one being written.
    with pytest.raises(OSError, match="No space left") as exc, _io.atomic_open(tmp_path / "a"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert exc.value.filename == str(tmp_path / "a")
    # torch's writer reports a short write in its own words: on a full disk, it is one.
    from drdfl import artifacts

    def short_write(obj: object, handle: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3520")

    monkeypatch.setattr(_io, "disk_full", lambda directory: True)
    monkeypatch.setattr(artifacts.torch, "save", short_write)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *_run(out))
    assert code == 2
    assert err.strip() == (
        f"error: {out / 'units/mse-s0/model/model.pt'}: No space left on device (RuntimeError: "
        "[enforce fail at inline_container.cc:672] . unexpected pos 3520)"
    )
    # With room on the disk, the error is left as it was raised.
    monkeypatch.setattr(_io, "disk_full", lambda directory: False)
    with pytest.raises(RuntimeError, match="disk on fire"), _io.atomic_open(tmp_path / "b"):
        raise RuntimeError("disk on fire")


def test_threed_trains_on_a_constant_series_without_blaming_a_key_never_set() -> None:
    from drdfl.data.windows import Scaler
    from drdfl.diffusion.model import DiffusionModel, get_preset
    from drdfl.errors import ConfigError
    from drdfl.methods.threed import check_reference_series

    real = np.full(500, 5000.0)
    # θ₀ fitted to it: its scaler spans 5000..5001, as any scaler of a constant series does.
    model = DiffusionModel(get_preset("tiny").model, Scaler.fit(real))
    check_reference_series(model, real)
    with pytest.raises(ConfigError, match="ranging 5000..5001, the training series ranges 7000"):
        check_reference_series(model, np.full(500, 7000.0))


@pytest.mark.parametrize(
    ("days", "interval", "message"),
    [
        ("1e9", "5s", "days must be a positive number of at most 60, got 1000000000.0"),
        ("50", "1ms", "would hold 4,320,000,000 intervals, more than 5,184,000"),
    ],
)
def test_an_oversized_synthetic_series_is_refused_before_it_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str, interval: str, message: str
) -> None:
    out = tmp_path / "s.csv"
    args = ["data", "synth", "--days", days, "--interval", interval, "--regime", "chat"]
    code, _, err = run_cli(capsys, *args, "--seed", "0", "-o", str(out))
    assert code == 2 and message in err and "\n" not in err.strip() and not out.exists()


def test_a_data_dir_that_is_a_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "traces.csv"
    a_file.write_text(SERIES)
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, *_run(out, "--set", "data.suite=honest", "--data-dir", str(a_file))
    )
    assert code == 2 and not out.exists()
    assert err.strip() == (
        f"error: {a_file}: is a file, not a data directory (--data-dir or data.data_dir) of "
        "trace files"
    )
