"""``drdfl train`` and ``drdfl evaluate`` through the command line."""

import json

import pandas as pd

from drdfl.cli import main


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
    windows = pd.read_csv(model / "windows-user.csv")
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
