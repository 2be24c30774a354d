"""``drdfl diffusion train | sample | evaluate`` end to end, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drdfl.cli import main
from drdfl.diffusion.model import DiffusionModel, get_preset


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``drdfl ARGS``; returns (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def series_csv(tmp_path: Path) -> Path:
    """A binned series file: a daily-like wave plus noise, 1,280 slots."""
    rng = np.random.default_rng(0)
    slots = np.arange(1280)
    values = 1000 + 400 * np.sin(slots / 40) + 50 * rng.standard_normal(1280)
    path = tmp_path / "demand.csv"
    pd.DataFrame({"ContextTokens": np.round(values)}).to_csv(path, index=False)
    return path


@pytest.fixture
def trained(tmp_path: Path, series_csv: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "diff"
    code, stdout, err = run(
        capsys, "diffusion", "train", "--train", str(series_csv), "--preset", "tiny",
        "--iterations", "4", "--head", "0.75", "--no-progress", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "4 iterations" in stdout and "960 slots" in stdout
    assert "quality gate failed (ddpm)" in stdout
    return out


def test_train_sample_evaluate(
    trained: Path, series_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = DiffusionModel.load(trained, expect=get_preset("tiny").model)
    assert model.meta["iterations"] == 4 and model.meta["train_rows"] == 960

    out_csv = tmp_path / "gen.csv"
    code, stdout, err = run(
        capsys, "diffusion", "sample", str(trained), "--n", "3", "--sampler", "ddim",
        "--steps", "5", "--seed", "1", "-o", str(out_csv),
    )  # fmt: skip
    assert code == 0, err
    frame = pd.read_csv(out_csv)
    assert list(frame.columns) == ["segment", "slot", "demand", "normalized"]
    assert len(frame) == 3 * 64 and frame["segment"].nunique() == 3
    assert (frame["demand"] >= 0).all()
    assert model.scaler is not None
    expected = np.clip(model.scaler.inverse_transform(frame["normalized"].to_numpy()), 0, None)
    assert np.allclose(frame["demand"], expected, rtol=1e-6)

    code, stdout, err = run(
        capsys, "diffusion", "evaluate", str(trained), "--reference", str(series_csv),
        "--tail", "0.25", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    # By default the methods' sampler (DDPM, every step) is scored, and the gate reported.
    assert report["sampler"] == "ddpm" and report["steps"] is None
    gate = report["gate"]
    assert gate["sampler"] == "ddpm" and gate["status"] == "failed"
    assert gate["split"]["kind"] == "blocks" and gate["split"]["fit_slots"] < 960
    assert gate["figures"] == model.meta["quality"]["figures"]  # as judged after training
    assert report["n_generated"] == 960 // 64
    assert report["heldout_vs_train"]["n_candidate"] == 320 // 64
    for key in ("generated_vs_train", "heldout_vs_train", "generated_vs_heldout"):
        assert 0 <= report[key]["discriminative"] <= 1
    # DDIM scoring stays available, and the table form names the verdict.
    code, stdout, err = run(
        capsys, "diffusion", "evaluate", str(trained), "--sampler", "ddim", "--steps", "5",
    )  # fmt: skip
    assert code == 0, err
    assert "quality gate (ddim" in stdout and "quality gate failed (ddim)" in stdout


def test_train_seed_fixes_the_weights(
    series_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = []
    # 384 slots hold no held-out part for the gate, so these fits are not judged (fast).
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        code, _, err = run(
            capsys, "diffusion", "train", "--train", str(series_csv), "--preset", "tiny",
            "--iterations", "2", "--seed", seed, "--head", "0.3", "--no-progress",
            "-o", str(tmp_path / name),
        )  # fmt: skip
        assert code == 0, err
        weights.append(DiffusionModel.load(tmp_path / name).state_dict())
    a, b, c = weights
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "--n must be a positive number of segments, got 0"),
        (["--n", "-2"], "--n must be a positive number of segments, got -2"),
        (["--n", "2", "--sampler", "euler"], "unknown sampler 'euler'"),
        (["--n", "2", "--sampler", "ddim", "--steps", "999"], "steps must be in 1..T=100"),
    ],
)
def test_sample_bad_input(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(
        capsys, "diffusion", "sample", str(trained), *args, "-o", str(tmp_path / "x.csv")
    )
    assert code == 2 and message in err
    assert not (tmp_path / "x.csv").exists()


def test_checkpoint_from_another_configuration(
    trained: Path, series_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "diffusion", "train", "--train", str(series_csv), "--preset", "tiny",
        "--iterations", "8", "--head", "0.75", "--layout", "2d", "--no-progress",
        "-o", str(trained),
    )  # fmt: skip
    assert code == 2
    assert "another configuration: layout is '1d' there, '2d' here" in err


def test_train_bad_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.csv"
    pd.DataFrame({"ContextTokens": np.arange(50)}).to_csv(short, index=False)
    code, _, err = run(
        capsys, "diffusion", "train", "--train", str(short), "--preset", "tiny",
        "--no-progress", "-o", str(tmp_path / "d"),
    )  # fmt: skip
    assert code == 2 and "50 slots is shorter than one segment of 64 slots" in err
    holes = tmp_path / "holes.csv"
    holes.write_text("ContextTokens\n" + "5\n" * 40 + "\n".join(["nan"] + ["5"] * 40) + "\n")
    code, _, err = run(
        capsys, "diffusion", "train", "--train", str(holes), "--preset", "tiny",
        "--no-progress", "-o", str(tmp_path / "d"),
    )  # fmt: skip
    assert code == 2 and "holes.csv" in err and "line 42" in err
    code, _, err = run(
        capsys, "diffusion", "train", "--train", str(holes), "--preset", "huge",
        "-o", str(tmp_path / "d"),
    )  # fmt: skip
    assert code == 2 and "unknown diffusion preset 'huge'" in err


def test_evaluate_needs_a_trained_directory(
    tmp_path: Path, series_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "diffusion", "evaluate", str(tmp_path), "--reference", str(series_csv)
    )
    assert code == 2 and "no diffusion model here" in err


def test_real_series(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 2024 conversation series by name: train on its head, judge on its tail."""
    out = tmp_path / "conv"
    code, stdout, err = run(
        capsys, "diffusion", "train", "--train", "azure-2024-conv-5s", "--data-dir",
        str(data_dir), "--preset", "tiny", "--iterations", "3", "--head", "0.05",
        "--no-progress", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "azure-2024-conv-5s (3024 slots)" in stdout
    code, stdout, err = run(
        capsys, "diffusion", "evaluate", str(out), "--reference", "azure-2024-conv-5s",
        "--data-dir", str(data_dir), "--tail", "0.02", "--n", "10", "--steps", "4", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    assert report["reference"] == "azure-2024-conv-5s"
    # The last 2 % (1,209 slots) against the first 5 %: a real, measurable shift.
    assert report["heldout_vs_train"]["n_candidate"] == 1209 // 64
    assert report["heldout_vs_train"]["wasserstein"] > 0
