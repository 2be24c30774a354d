"""``drdfl sweep`` on a local Ray instance: grid points, retries, failures, resume.

Failures are injected by replacing the task function the Ray executor ships (the test's
own closure travels to the workers), never through the production code."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import attempts, flaky
from typer.testing import CliRunner

from drdfl.cli import app, main
from drdfl.config import expand_grid, parse_grid, resolve_config
from drdfl.errors import ConfigError, DrdflError
from drdfl.runner import unit as unit_module
from drdfl.runner.distributed import require_ray
from drdfl.runner.sweep import Sweep

TINY = [
    "seeds=0",
    "methods=mse,dfl",
    "train.epochs=1",
    "data.synthetic_days=0.3",
    "evaluation.skyline=false",
    "evaluation.corruptions=false",
    "evaluation.online=false",
]
POINTS = ("lr=0.001", "lr=0.003")


def _args(out: Path, *extra: str, sets: list[str] = TINY) -> list[str]:
    args = ["sweep", "--profile", "quick", "--out", str(out), "--no-progress"]
    for item in sets:
        args += ["--set", item]
    return [*args, *extra]


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray instance for the module; the diffusion cache in a temporary folder."""
    ray = require_ray()
    previous = os.environ.get("DRDFL_CACHE_DIR")
    os.environ["DRDFL_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if previous is None:
        os.environ.pop("DRDFL_CACHE_DIR")
    else:
        os.environ["DRDFL_CACHE_DIR"] = previous


@pytest.fixture(scope="module")
def grid_sweep(ray_local, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """A two-point learning-rate grid whose DFL unit at lr=0.001 fails once."""
    root = tmp_path_factory.mktemp("sweep")
    out, marks = root / "out", root / "marks"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(unit_module, "execute_task", flaky({"lr=0.001/dfl-s0": 1}, marks))
        result = CliRunner().invoke(app, _args(out, "--grid", "train.lr=1e-3,3e-3"))
    assert result.exit_code == 0, result.output
    return out, result.output, marks


def test_grid_sweep_has_every_point_method_and_seed(grid_sweep: tuple[Path, str, Path]) -> None:
    out, _, _ = grid_sweep
    results = pd.read_csv(out / "results.csv")
    main = results[(results["suite"] == "synthetic") & (results["metric"] == "normalized_regret")]
    expected = {f"{m}[{p}]" for m in ("mse", "dfl") for p in POINTS}
    assert set(main["method"]) == expected
    assert set(main["seed"]) == {0}
    per_method = main.groupby("method")["test_set"].nunique()
    assert (per_method == main["test_set"].nunique()).all() and main["test_set"].nunique() >= 3
    assert np.isfinite(main["value"]).all()
    for point in POINTS:
        folder = out / "points" / point
        own = pd.read_csv(folder / "results.csv")
        mine = results[results["method"].str.endswith(f"[{point}]")]
        assert len(own) == len(mine)
        assert np.array_equal(own["value"].to_numpy(), mine["value"].to_numpy())
        assert (folder / "report.md").is_file() and (folder / "units" / "dfl-s0").is_dir()
    lr = [resolve_config(path=out / "points" / p / "config.toml").train.lr for p in POINTS]
    assert lr == [1e-3, 3e-3]
    # The grid key took effect: the two learning rates train different forecasters.
    dfl = main[main["method"].str.startswith("dfl")].pivot(
        index="test_set", columns="method", values="value"
    )
    assert not np.allclose(dfl.iloc[:, 0], dfl.iloc[:, 1])
    report = (out / "report.md").read_text(encoding="utf-8")
    assert all(m in report for m in expected)
    assert (out / "report.html").stat().st_size > 1000
    meta = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [p["label"] for p in meta["points"]] == list(POINTS) and meta["failed"] == []


def test_a_failed_unit_is_retried_once(grid_sweep: tuple[Path, str, Path]) -> None:
    out, output, marks = grid_sweep
    trials = {t["trial"]: t for t in json.loads((out / "trials.json").read_text())}
    assert set(trials) == {f"{p}/{u}" for p in POINTS for u in ("mse-s0", "dfl-s0")}
    assert all(t["status"] == "done" for t in trials.values())
    assert attempts(marks) == {**dict.fromkeys(trials, 1), "lr=0.001/dfl-s0": 2}
    assert json.loads((out / "failed.json").read_text()) == []
    assert "4 trial(s): 4 done, 0 failed, 0 not run" in output
    assert "lr=0.001/dfl-s0: train" in (out / "sweep.log").read_text()


def test_resume_runs_nothing_and_keeps_the_table(grid_sweep: tuple[Path, str, Path]) -> None:
    out, _, _ = grid_sweep
    before = (out / "results.csv").read_bytes()
    result = CliRunner().invoke(app, _args(out, "--grid", "train.lr=1e-3,3e-3", "--resume"))
    assert result.exit_code == 0, result.output
    assert "0 trial(s)" in result.output
    assert (out / "results.csv").read_bytes() == before
    cfg = resolve_config("quick", overrides=TINY)
    with pytest.raises(ConfigError, match="grid"):
        Sweep(cfg, out, {"train.lr": [1e-3]}, resume=True).execute()
    with pytest.raises(ConfigError, match="already holds a sweep"):
        Sweep(cfg, out, {"train.lr": [1e-3, 3e-3]}).execute()


def test_a_unit_failing_twice_is_reported_with_what_it_blocked(
    ray_local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, marks = tmp_path / "out", tmp_path / "marks"
    monkeypatch.setattr(unit_module, "execute_task", flaky({"dfl-s0": 2}, marks))
    sets = [*TINY[:1], "methods=mse,dfl,wdro", *TINY[2:]]
    result = CliRunner().invoke(app, _args(out, sets=sets))
    assert result.exit_code == 1, result.output
    failed = {t["trial"]: t for t in json.loads((out / "failed.json").read_text())}
    assert set(failed) == {"dfl-s0", "wdro-s0"}
    assert failed["dfl-s0"]["status"] == "failed"
    assert failed["dfl-s0"]["error"] == "RuntimeError: dfl-s0: injected failure 2"
    assert failed["wdro-s0"]["status"] == "not run" and "dfl-s0" in failed["wdro-s0"]["error"]
    # The blocked unit never started; the failed one ran twice (one retry).
    assert attempts(marks) == {"mse-s0": 1, "dfl-s0": 2}
    assert "1 failed, 1 not run" in result.output
    assert "failed: dfl-s0" in result.output and "not run: wdro-s0" in result.output
    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"mse"} and np.isfinite(results["value"]).all()
    assert (out / "report.md").is_file()


def test_grid_parsing_labels_and_validation() -> None:
    grid = parse_grid(["train.lr=1e-3,3e-3", "method_params.threed.budget=0.02"])
    assert grid == {"train.lr": [1e-3, 3e-3], "method_params.threed.budget": [0.02]}
    cfg = resolve_config("quick", overrides=TINY)
    points = expand_grid(cfg, grid)
    assert [p.label for p in points] == ["lr=0.001,budget=0.02", "lr=0.003,budget=0.02"]
    assert [p.cfg.train.lr for p in points] == [1e-3, 3e-3]
    assert points[1].cfg.method_params["threed"]["budget"] == 0.02
    assert cfg.train.lr == 3e-3  # the base config is left alone
    both = expand_grid(
        cfg, {"train.objective": ["regret"], "method_params.threed.objective": ["mse"]}
    )
    assert both[0].label == "train.objective=regret,threed.objective=mse"
    assert expand_grid(cfg, {})[0].cfg is cfg
    for grid_, message in (
        ({"seeds": [0, 1]}, "already runs all seeds"),
        ({"train.lr": [-1.0]}, "train.lr"),
        ({"train.lrr": [1.0]}, "train.lrr: unknown key"),
        ({"train.lr.x": [1.0]}, "train.lr is a value"),
        ({"train.lr": [1e-3, 0.001]}, "repeated"),
        ({"method_params.threed.budgte": [0.1]}, "method_params.threed.budgte: unknown key"),
    ):
        with pytest.raises(ConfigError, match=message):
            expand_grid(cfg, grid_)
    with pytest.raises(ConfigError, match="expected key.path=value1"):
        parse_grid(["train.lr"])


def test_points_share_reference_models_and_name_their_needs(tmp_path: Path) -> None:
    sets = [*TINY[:1], "seeds=0,1", "methods=mse,dfl,threed,wdro", *TINY[2:]]
    cfg = resolve_config("quick", overrides=sets)
    sweep = Sweep(
        cfg,
        tmp_path / "out",
        {"method_params.threed.budget": [0.01, 0.02]},
        cache=tmp_path / "cache",
    )
    jobs = {j.node.id: j for j in sweep.jobs()}
    assert [i for i in jobs if "reference" in i] == [
        "budget=0.01/reference-s0",
        "budget=0.01/reference-s1",  # shared by both points
    ]
    threed = jobs["budget=0.02/threed-s1"].node
    assert threed.needs == ("budget=0.02/dfl-s1", "budget=0.01/reference-s1")
    assert jobs["budget=0.02/wdro-s0"].node.needs == ("budget=0.02/dfl-s0",)
    assert jobs["budget=0.01/mse-s0"].node.needs == ()
    assert jobs["budget=0.02/threed-s1"].out == (tmp_path / "out/points/budget=0.02").resolve()


def test_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DrdflError, match=r"pip install 'drdfl\[sweep\]'"):
        require_ray()


def test_cli_bad_grid_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for grid, message in (
        ("seeds=0,1", "error: --grid seeds: every point already runs all seeds"),
        ("train.lr=0.001,-1", "error: grid point lr=-1: train.lr: Input should be greater than 0"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(_args(out, "--grid", grid))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(message) and "\n" not in err
    assert not out.exists()
