"""No silent surprises: an option that would be overridden, a configuration that would be
rewritten, a field that would be dropped, an output that would be overwritten or not
written, a hint that would not work: each is said, or made to work."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

from drdfl.config import DataConfig, resolve_config
from drdfl.data.readers import binned, read_series
from drdfl.errors import ConfigError, DataError, ModelError
from drdfl.methods.settings import TrainConfig
from drdfl.runner.store import OutputDir, RunStore, write_unit


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP trained for one epoch (read-only for the tests: they copy it)."""
    from drdfl.runner.steps import build_suite, save_trained, train_model

    suite = build_suite(DataConfig(synthetic_days=0.25))
    model, _ = train_model(
        "mse", suite, forecaster="mlp", train=TrainConfig(epochs=1, batch_size=256)
    )
    return save_trained(model, suite, tmp_path_factory.mktemp("m") / "model")


@pytest.fixture
def model(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def _series(path: Path, first: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ContextTokens\n" + "".join(f"{first + i % 7}\n" for i in range(400)))
    return path


# ----------------------------------------------------------------------------- train


def test_a_warm_start_and_another_forecaster_are_refused(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "next"
    args = ["train", "--method", "mse", "--warm-start", str(model), "--epochs", "1"]
    code, _, err = run_cli(capsys, *args, "--forecaster", "lstm", "-o", str(out))
    assert code == 2
    assert err.strip() == (
        f"error: --forecaster lstm: the --warm-start model {model} is a mlp forecaster, and "
        "training continues it; drop --forecaster or pass mlp"
    )
    assert not (out / "model.pt").exists()


# ----------------------------------------------------------------------------- config


def test_a_set_under_a_key_the_file_gives_a_value_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("train = 5\n")
    # It replaced the profile's whole [train] table with the defaults, silently.
    with pytest.raises(ConfigError, match=r"^--set train.epochs: train is 5, not a table"):
        resolve_config(path=config, overrides=["train.epochs=1"])


def test_a_profile_option_and_a_file_naming_another_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('profile = "paper"\n')
    with pytest.raises(ConfigError, match=r"--profile quick and .*c.toml's profile = 'paper'"):
        resolve_config("quick", config)
    assert resolve_config("paper", config).profile == "paper"


def test_a_method_given_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"methods: method\(s\) dfl given more than once"):
        resolve_config("quick", overrides=["methods=dfl,mse,dfl"])


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize(
    ("text", "line", "fields", "header"),
    [
        ("ContextTokens\n" + "100\n" * 300 + "5000,7\n100\n", 302, 2, 1),  # past the sniff
        ("ContextTokens\n5000,7\n100,1\n", 2, 2, 1),  # pandas took it for an index column
        ("TIMESTAMP,ContextTokens\n2024-01-01 00:00:00,1\n2024-01-01 00:00:05,2,3\n", 3, 3, 2),
    ],
)
def test_a_row_with_a_field_more_than_its_header_is_refused(
    tmp_path: Path, text: str, line: int, fields: int, header: int
) -> None:
    path = tmp_path / "series.csv"
    path.write_text(text)
    message = f"{path}, line {line}: {fields} fields where the header has {header}"
    for read in (read_series, binned.read):
        with pytest.raises(DataError, match=f"^{message}; expected one value per column$"):
            read(path)


# ----------------------------------------------------------------------------- evaluate


def test_evaluations_of_files_sharing_a_name_each_keep_their_file(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _series(tmp_path / "a" / "x.csv"), _series(tmp_path / "b" / "x.csv", 3000)
    written = []
    for path in (first, second, first):
        code, out, err = run_cli(capsys, "evaluate", str(model), "--test", str(path), "--json")
        assert code == 0, err
        written.append(json.loads(out)["file"])
    # The second x.csv used to overwrite the first one's eval-x.csv.
    assert written == [str(model / n) for n in ("eval-x.csv", "eval-x-2.csv", "eval-x.csv")]
    means = [pd.read_csv(p).query("metric == 'mse'")["value"].iloc[0] for p in written[:2]]
    assert means[0] != means[1]


def test_an_evaluation_keeps_the_letters_of_its_test_file(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _series(tmp_path / "données-été.csv")
    code, out, err = run_cli(capsys, "evaluate", str(model), "--test", str(path))
    assert code == 0, err
    assert (model / "eval-données-été.csv").is_file()  # was eval-donn_es-_t_.csv
    assert out.strip().endswith(f"written: {model / 'eval-données-été.csv'}")


def test_an_unwritable_model_directory_is_said_before_any_work(
    model: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code, out, err = run_cli(capsys, "evaluate", str(model))
    assert code == 2 and out == ""
    assert err.strip() == (
        f"error: {model}: cannot write the evaluation's files there (Read-only file system); "
        "copy the model directory somewhere writable"
    )


# ----------------------------------------------------------------------------- run


def test_report_on_a_run_still_working_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with OutputDir(out).claim({"config": "a"}, False):
        code, _, err = run_cli(capsys, "report", str(out))
    assert code == 2 and "--resume" not in err
    assert err.startswith(f"error: {out} is in use by drdfl pid ")
    assert err.strip().endswith(
        f"the run is still working; run drdfl report {out} once it has finished"
    )
    code, _, err = run_cli(capsys, "report", str(out))
    assert code == 2 and "--resume" in err  # no longer working: resume rebuilds it


def test_a_unit_whose_worst_case_was_deleted_is_redone_on_resume(tmp_path: Path) -> None:
    import numpy as np

    store = RunStore(tmp_path)
    folder = store.unit_dir("threed-s0")
    folder.mkdir(parents=True)
    frame = pd.DataFrame({"a": [1]})
    write_unit(folder, frame, frame, frame, {"worst_case": np.zeros((2, 4))}, {"rows": 1})
    assert store.is_done("threed-s0")
    (folder / "worst_case.npy").unlink()  # as the hint for a corrupt one says
    assert not store.is_done("threed-s0")


def test_a_corrupt_worst_case_says_resume_redoes_its_unit(tmp_path: Path) -> None:
    from drdfl.runner.driver import Run

    cfg = resolve_config("quick", overrides=["seeds=0", "methods=mse"])
    run = Run(cfg, tmp_path / "run", progress=False)
    folder = run.store.unit_dir("threed-s0")
    folder.mkdir(parents=True)
    (folder / "worst_case.npy").write_bytes(b"not an array")
    with pytest.raises(ModelError) as error:
        run._write_samples(None)
    assert str(error.value).endswith("; delete it and resume the run (--resume) to redo its unit")
    assert str(error.value).startswith(f"{folder / 'worst_case.npy'}: not a readable array")
