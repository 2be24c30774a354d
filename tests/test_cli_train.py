"""``drdfl train`` and ``drdfl evaluate`` through the command line."""

import json
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from drdfl.artifacts import ensure_new_model_dir, load_array, load_model
from drdfl.cli import main
from drdfl.config import DataConfig
from drdfl.data.suites import chronological_suite
from drdfl.errors import ModelError
from drdfl.evaluation.suites import evaluate_tests
from drdfl.methods.settings import TrainConfig
from drdfl.runner.steps import (
    DegenerateDataWarning,
    build_suite,
    evaluate_model,
    save_trained,
    train_model,
)


def _run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_then_evaluate_with_user_test_set(tmp_path, capsys):
    model = tmp_path / "model"
    code, out, err = _run(
        [
            "train",
            "--method",
            "dfl",
            "--forecaster",
            "mlp",
            "--epochs",
            "1",
            "--seed",
            "3",
            "--no-progress",
            "-o",
            str(model),
        ],
        capsys,
    )
    assert code == 0, err
    for name in ("model.pt", "model.json", "config.toml", "history.csv", "train_series.npy"):
        assert (model / name).is_file(), name
    meta = json.loads((model / "model.json").read_text())
    assert meta["method"] == "dfl" and meta["seed"] == 3 and meta["scaler"]["hi"] > 0

    series = tmp_path / "code.csv"
    code, _, err = _run(
        ["data", "synth", "--days", "0.2", "--regime", "code", "--seed", "5", "-o", str(series)],
        capsys,
    )
    assert code == 0, err
    code, out, err = _run(
        ["evaluate", str(model), "--test", str(series), "--per-window", "--json"], capsys
    )
    assert code == 0, err
    payload = json.loads(out)
    rows = pd.DataFrame(payload["results"])
    assert set(rows["test_set"]) == {"code"}
    nreg = rows[rows.metric == "normalized_regret"]["value"].iloc[0]
    assert 0 < nreg < 10
    windows = pd.read_csv(model / "windows-code.csv")  # named after the --test file
    assert {"window_start", "prediction", "truth", "decision", "regret"} <= set(windows.columns)
    assert (windows["regret"] >= -1e-6).all()
    assert abs(windows["regret"].mean() - rows[rows.metric == "regret"]["value"].iloc[0]) < 1e-9

    code, out, err = _run(["evaluate", str(model)], capsys)
    assert code == 0, err
    table = pd.read_csv(model / "eval-default.csv")
    assert set(table["test_set"]) == {"chat (test)", "code", "chat→code"}


def test_bad_input_is_one_line_with_exit_2(tmp_path, capsys):
    code, _, err = _run(["train", "--method", "magic", "-o", str(tmp_path / "m")], capsys)
    assert code == 2 and "valid methods" in err and "Traceback" not in err
    code, _, err = _run(["evaluate", str(tmp_path / "missing")], capsys)
    assert code == 2 and "not found" in err and not (tmp_path / "missing").exists()
    code, _, err = _run(
        ["train", "--forecaster", "gru", "--epochs", "1", "-o", str(tmp_path / "g")], capsys
    )
    assert code == 2 and "valid forecasters" in err
    code, _, err = _run(["train", "--task", "provisioning:nope", "-o", str(tmp_path / "t")], capsys)
    assert code == 2 and "paper-code" in err


# --- a model directory holds one model and says what it was trained on -----------------

QUICK = ["--method", "dfl", "--forecaster", "mlp", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on a non-default synthetic suite (half a day at 10 s), and the
    table of its evaluation on the suite object it was trained with."""
    data = DataConfig(synthetic_days=0.5, interval="10s", window=5)
    suite = build_suite(data)
    model, _ = train_model(
        "dfl", suite, forecaster="mlp", train=TrainConfig(epochs=1, batch_size=256), seed=2
    )
    directory = save_trained(model, suite, tmp_path_factory.mktemp("m") / "model")
    table, _ = evaluate_tests(model.forecaster, suite.tests, model.task, seed=2)
    return directory, table


def test_evaluate_rebuilds_the_suite_the_model_was_trained_on(trained, capsys):
    directory, at_training = trained
    table, _, _ = evaluate_model(directory)
    assert set(table["suite"]) == {"synthetic"}
    pd.testing.assert_frame_equal(
        table.drop(columns=["method", "seed", "suite"]).reset_index(drop=True),
        at_training.reset_index(drop=True),
    )
    # Naming the suite keeps the model's settings for it (not two days at 5 s).
    named = evaluate_model(directory, suite="synthetic")[0]
    np.testing.assert_array_equal(named["value"], table["value"])
    windows = table[table.metric == "windows"]["value"]
    assert windows.iloc[0] == 642  # the end of 4,320 intervals; a default suite has ~5,000
    code, _, err = _run(["evaluate", str(directory)], capsys)
    assert code == 0, err
    written = pd.read_csv(directory / "eval-default.csv")
    np.testing.assert_allclose(written["value"], at_training["value"], rtol=1e-12)
    saved = load_model(directory).config["data"]
    assert saved["synthetic_days"] == 0.5 and saved["interval"] == "10s" and saved["window"] == 5


def test_each_test_file_gets_its_own_output(tmp_path, trained, capsys):
    directory, _ = trained
    for name, regime in (("code-a", "code"), ("chat-b", "chat")):
        out = str(tmp_path / f"{name}.csv")
        args = ["--days", "0.1", "--regime", regime, "--seed", "1", "--interval", "10s", "-o", out]
        assert _run(["data", "synth", *args], capsys)[0] == 0
    for name in ("code-a", "chat-b"):
        code, _, err = _run(["evaluate", str(directory), "--test", str(tmp_path / f"{name}.csv")],
                            capsys)  # fmt: skip
        assert code == 0, err
    a, b = (pd.read_csv(directory / f"eval-{n}.csv") for n in ("code-a", "chat-b"))
    assert set(a["test_set"]) == {"code-a"} and set(b["test_set"]) == {"chat-b"}


def _a_run_dir(path):
    path.mkdir()
    (path / "config.toml").write_text('name = "quick"\n')
    (path / "results.csv").write_text("method,seed\n")
    (path / "units").mkdir()


def _an_old_model(path):
    path.mkdir()
    for name in ("model.pt", "model.json", "eval-default.csv"):
        (path / name).write_text("old")


def _a_file(path):
    path.write_text("mine")


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (_a_run_dir, r"already holds config.toml, results.csv, units; a model is written only"),
        (_an_old_model, r"already holds eval-default.csv, model.json, model.pt"),
        (_a_file, r"is a file; expected a new directory for the model"),
    ],
)
def test_train_never_writes_into_a_directory_that_holds_something(tmp_path, capsys, make, pattern):
    out = tmp_path / "out"
    make(out)
    before = {p: p.read_bytes() for p in [out, *out.rglob("*")] if p.is_file()}
    code, out_text, err = _run(["train", *QUICK, "-o", str(out)], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err) and out_text == "", err
    after = {p: p.read_bytes() for p in [out, *out.rglob("*")] if p.is_file()}
    assert after == before


def test_train_into_an_empty_directory_or_after_an_interrupted_training(tmp_path):
    (tmp_path / "empty").mkdir()
    assert ensure_new_model_dir(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "empty" / "checkpoint.pt").write_bytes(b"")
    assert ensure_new_model_dir(tmp_path / "empty") == tmp_path / "empty"


def _garbage_weights(model):
    (model / "model.pt").write_bytes(pickle.dumps({"not": "weights"}) + b"\x00garbage")


def _json_without(field):
    def damage(model):
        meta = json.loads((model / "model.json").read_text())
        del meta[field]
        (model / "model.json").write_text(json.dumps(meta))

    return damage


def _bad_toml(model):
    (model / "config.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")


def _bad_data_key(model):
    (model / "config.toml").write_text('[data]\nsuite = "synthetic"\nwindow = "seven"\n')


def _corrupt_series(model):
    (model / "train_series.npy").write_bytes(b"\x93NUMPY garbage")


BAD_MODELS = {
    "garbage model.pt": (_garbage_weights, r"model.pt: not a readable model state"),
    "model.json without scaler": (_json_without("scaler"), r"model.json: no field 'scaler'"),
    "model.json without window": (_json_without("window"), r"model.json: no field 'window'"),
    "binary config.toml": (_bad_toml, r"config.toml: not a readable TOML configuration"),
    "bad data setting": (_bad_data_key, r"config.toml: data.window: .*integer"),
    "corrupt train_series.npy": (_corrupt_series, r"train_series.npy: not a readable array"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_a_damaged_model_is_one_line_naming_the_file(tmp_path, trained, capsys, case):
    damage, pattern = BAD_MODELS[case]
    model = tmp_path / "model"
    model.mkdir()
    for path in trained[0].iterdir():
        (model / path.name).write_bytes(path.read_bytes())
    damage(model)
    code, out, err = _run(["evaluate", str(model)], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err), err
    assert "weights_only" not in err and "Traceback" not in err + out


def test_a_corrupt_array_file_names_itself(tmp_path):
    path = tmp_path / "worst_case.npy"
    path.write_bytes(b"not an array")
    with pytest.raises(ModelError, match=r"worst_case.npy: not a readable array file"):
        load_array(path)


def test_constant_training_data_warns_naming_the_file():
    from drdfl.data.series import Series

    flat = Series(np.full(3000, 42.0), "flat", meta={"source": "traces/flat.csv"})
    suite = chronological_suite("flat", flat)
    with pytest.warns(
        DegenerateDataWarning, match=r"flat:train \(traces/flat.csv\): it is constant \(42\)"
    ):
        train_model("mse", suite, forecaster="linear", train=TrainConfig(epochs=1))
    zeros = chronological_suite("z", Series(np.zeros(3000), "zeros"))
    with pytest.warns(DegenerateDataWarning, match=r"it is all zero in all 2,090 intervals"):
        train_model("mse", zeros, forecaster="linear", train=TrainConfig(epochs=1))


def test_threed_says_it_fits_its_own_reference_model(tmp_path, capsys):
    config = tmp_path / "threed.toml"
    config.write_text(
        "[data]\nsynthetic_days = 0.2\n[train]\nbatch_size = 256\n"
        '[method_params.threed]\npreset = "tiny"\ndiffusion_iterations = 3\npool = 16\n'
        "adversarial_samples = 8\n"
    )
    args = ["--method", "threed", "--forecaster", "mlp", "--epochs", "1", "--no-progress"]
    code, _, err = _run(["train", *args, "--config", str(config), "-o", str(tmp_path / "m")],
                        capsys)  # fmt: skip
    assert code == 0, err
    assert err.splitlines() == [
        "threed: fitting its own reference diffusion model θ₀ first (preset tiny, 3 "
        "iterations; roughly 1 s on one CPU core); --diffusion DIFF_DIR reuses a fitted one"
    ]


def test_evaluate_on_a_run_unit_reproduces_its_rows_of_results(tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [
        "methods=dfl", "seeds=1", "train.epochs=1", "data.synthetic_days=0.5",
        "data.interval=10s", "evaluation.corruptions=false", "evaluation.skyline=false",
    ]  # fmt: skip
    args = ["run", "--profile", "quick", "--out", str(out)]
    code, _, err = _run([*args, *[a for o in overrides for a in ("--set", o)]], capsys)
    assert code == 0, err
    code, stdout, err = _run(["evaluate", str(out / "units" / "dfl-s1" / "model"), "--json"],
                             capsys)  # fmt: skip
    assert code == 0, err
    evaluated = pd.DataFrame(json.loads(stdout)["results"])
    results = pd.read_csv(out / "results.csv")
    key = ["method", "seed", "suite", "test_set", "metric"]
    merged = evaluated.merge(results, on=key, suffixes=("", "_run"), validate="1:1")
    assert len(merged) == len(evaluated) == len(results) > 20
    np.testing.assert_allclose(merged["value"], merged["value_run"], rtol=1e-12, atol=0)


def test_test_sets_of_one_name_are_refused(tmp_path, trained, capsys):
    directory, _ = trained
    for folder in ("a", "b"):
        out = tmp_path / folder / "code.csv"
        args = ["--days", "0.1", "--regime", "code", "--seed", "1", "--interval", "10s"]
        assert _run(["data", "synth", *args, "-o", str(out)], capsys)[0] == 0
    twice = ["--test", str(tmp_path / "a" / "code.csv"), "--test", str(tmp_path / "b" / "code.csv")]
    code, _, err = _run(["evaluate", str(directory), *twice], capsys)
    assert code == 2 and "two test sets are named 'code'" in err and "b/code.csv" in err, err
    # The synthetic suite has a test set called code too.
    mixed = ["--suite", "synthetic", "--test", str(tmp_path / "a" / "code.csv")]
    code, _, err = _run(["evaluate", str(directory), *mixed], capsys)
    assert code == 2 and "two test sets are named 'code' (code-like regime" in err, err
    assert not list(directory.glob("eval-synthetic+code*"))


def test_train_on_a_constant_trace_warns_in_one_line_naming_it(tmp_path, data_dir, capsys):
    flat = tmp_path / "data"
    for folder in ("azure-llm-2023", "azure-llm-2024-5s"):
        (flat / folder).mkdir(parents=True)
    for name in ("azure-llm-2023/AzureLLMInferenceTrace_code.csv",
                 "azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
                 "azure-llm-2024-5s/code_5s.csv"):  # fmt: skip
        (flat / name).symlink_to(data_dir / name)
    conv = flat / "azure-llm-2024-5s" / "conv_5s.csv"
    conv.write_text("ContextTokens\n" + "0\n" * 3000)
    args = [*QUICK, "--suite", "honest", "--data-dir", str(flat), "-o", str(tmp_path / "m")]
    code, _, err = _run(["train", *args], capsys)
    assert code == 0, err
    assert err.splitlines() == [
        f"warning: training series 24V:train ({conv}): it is all zero in all 2,090 intervals; "
        "a forecaster learns nothing from it and its regret says nothing"
    ]


def test_every_diffusion_preset_has_a_training_time_estimate():
    from drdfl.cli.train import _CPU_S_PER_ITERATION
    from drdfl.diffusion.model import PRESETS

    assert set(_CPU_S_PER_ITERATION) == set(PRESETS)
