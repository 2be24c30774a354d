"""The report refuses a run directory that is incomplete or malformed, before writing
anything, with one line naming the file; units the run reports failed are listed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from drdfl.errors import DataError
from drdfl.report import load_run, write_report
from tests.test_report import MAIN, NR, SEEDS, parse_table, write_run


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.iloc[: len(f) // 2], r"method '[a-z-]+' seed \d on suite '\w+' lacks "),
        (lambda f: f[f["method"] != "threed-mse"], r"threed-mse seed 0, threed-mse seed 1"),
        (lambda f: f[~((f["method"] == "mse") & (f["seed"] == 1))], r"mse seed 1"),
        (
            lambda f: f[f["metric"] != "mse"].iloc[:-1],
            r"threed@0.04. seed 1 on suite .synthetic. lacks chat→code/w_distance",
        ),
    ],
)
def test_an_incomplete_results_csv_is_refused_and_nothing_is_written(tmp_path, damage, message):
    write_run(tmp_path)
    frame = pd.read_csv(tmp_path / "results.csv")
    damage(frame).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(DataError, match=message):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_a_truncated_results_csv_is_refused(tmp_path):
    write_run(tmp_path)
    write_report(tmp_path)
    good = (tmp_path / "report.md").read_bytes()
    _truncate(tmp_path / "results.csv", 0.5)
    with pytest.raises(DataError, match="results.csv: truncated"):
        write_report(tmp_path)
    # cut at a line end: the rows left are well formed but a unit lacks some
    lines = (tmp_path / "results.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "results.csv").write_text("".join(lines[:-3]), encoding="utf-8")
    with pytest.raises(DataError, match=r"lacks .*drdfl run --resume"):
        write_report(tmp_path)
    # results.json's copy of the rows says how many there were
    meta = json.loads((tmp_path / "results.json").read_text())
    meta["results"] = [{}] * (len(lines) + 5)
    (tmp_path / "results.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"\d+ rows but results.json records \d+"):
        write_report(tmp_path)
    # a row with too few fields
    (tmp_path / "results.csv").write_text("".join([*lines[:-4], "dfl,0,synthetic\n"]))
    with pytest.raises(DataError, match=r"line \d+: 3 fields, expected 6"):
        write_report(tmp_path)
    assert (tmp_path / "report.md").read_bytes() == good


def test_results_json_units_are_the_expected_grid(tmp_path):
    write_run(tmp_path)
    meta = json.loads((tmp_path / "results.json").read_text())
    meta["units"] = [{"label": m, "seed": s} for m in [*NR, "kldro"] for s in SEEDS]
    (tmp_path / "results.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="no results for kldro seed 0, kldro seed 1, expected by"):
        write_report(tmp_path)


def test_units_the_run_reports_failed_are_listed_not_required(tmp_path):
    write_run(tmp_path)
    frame = pd.read_csv(tmp_path / "results.csv")
    lost = (frame["method"] == "threed") & (frame["seed"] == 1)
    frame[~lost].to_csv(tmp_path / "results.csv", index=False)
    meta = json.loads((tmp_path / "results.json").read_text())
    del meta["units"]
    (tmp_path / "results.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="no results for threed seed 1, expected by config.toml"):
        write_report(tmp_path)
    (tmp_path / "failed.json").write_text(json.dumps([{"trial": "threed-s1", "attempts": 2}]))
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**failed or not run** (no results): `threed-s1`" in md
    assert parse_table(md, MAIN)["threed"]["code"][0] == "0.200 (n=1)"


def test_bad_inputs_raise_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="results.csv: not found"):
        write_report(tmp_path)
    (tmp_path / "units").mkdir()
    with pytest.raises(DataError, match="--resume"):
        write_report(tmp_path)
    write_run(tmp_path, optional=False)
    frame = pd.read_csv(tmp_path / "results.csv", dtype={"value": str})
    frame.loc[5, "value"] = "oops"
    frame.to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(DataError, match=r"results.csv, line 7: column 'value' is 'oops'"):
        load_run(tmp_path)
    frame.drop(columns="metric").to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(DataError, match="missing column"):
        load_run(tmp_path)


def test_report_command_prints_one_line_errors(tmp_path, capsys):
    from drdfl.cli import main

    write_run(tmp_path, optional=False)
    _truncate(tmp_path / "results.csv", 0.7)
    with pytest.raises(SystemExit) as exited:
        main(["report", str(tmp_path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "results.csv: truncated" in err and "\n" not in err
    assert not (tmp_path / "report.md").exists()
