"""``drdfl run`` with the replicas task, a lead time and a horizon, its backtest in the
report; and a minute interval that the old fixed capacity range capped silently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drdfl.cli import main

pytestmark = pytest.mark.slow

BASE = [
    "seeds=0",
    "methods=mse,dfl",
    "train.epochs=1",
    "data.synthetic_days=0.3",
    "evaluation.corruptions=false",
    "evaluation.skyline=false",
    "report.mse_ablation=false",
]


def _code(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _run(out: Path, settings: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--profile", "quick", "--out", str(out), "--no-progress", "--jobs", "1"]
    for item in [*BASE, *settings]:
        args += ["--set", item]
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    assert exc.value.code == 0, captured.err


def test_a_replicas_run_with_a_lead_reports_its_backtest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    settings = [
        "task=replicas:strict",
        "data.lead=6",
        "data.horizon=2",
        "evaluation.backtest=true",
        "methods=mse,dfl,threed",
        "method_params.threed.pool=16",
        "method_params.threed.adversarial_samples=8",
    ]
    _run(out, settings, capsys)
    results = pd.read_csv(out / "results.csv")
    main_rows = results[(results.suite == "synthetic") & (results.metric == "normalized_regret")]
    assert {"mse", "dfl", "threed"} <= set(main_rows["method"])
    assert len(main_rows) == 3 * main_rows["method"].nunique() and main_rows["value"].notna().all()
    assert (main_rows["value"] > 0).all()
    table = pd.read_csv(out / "backtest" / "backtest.csv")
    assert {"mse", "dfl", "threed", "dfl+online", "reactive", "oracle"} <= set(table.policy)
    meta = json.loads((out / "backtest" / "backtest.json").read_text())
    assert meta["lead"] == 6 and meta["task"]["preset"] == "strict"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Backtest: replicas over a replayed trace" in report
    assert "](backtest/backtest.png)" in report
    assert "decisions: task `replicas:strict`" in report and "slots t+6 … t+7" in report
    assert "data:image/png;base64" in (out / "report.html").read_text(encoding="utf-8")

    # the worst cases as a stress trace, replayed by the backtest
    stress = tmp_path / "stress.csv"
    code = _code(["diffusion", "sample", "--run", str(out), "-o", str(stress)])
    assert code == 0
    trace = pd.read_csv(stress)
    worst = np.load(out / "units" / "threed-s0" / "worst_case.npy")
    assert list(trace.columns) == ["slot", "tokens", "segment"]
    assert len(trace) == worst.size and (trace["tokens"] >= 0).all()
    assert trace["slot"].tolist() == list(range(worst.size))
    bt = tmp_path / "stress-bt"
    model = out / "units" / "dfl-s0" / "model"
    assert _code(["backtest", str(model), "--trace", str(stress), "-o", str(bt)]) == 0
    assert (pd.read_csv(bt / "backtest.csv")["gpu_hours"] > 0).all()
    # θ₀'s own samples from its directory, as a trace too
    (reference,) = (tmp_path / "cache").glob("diffusion/*/config.json")
    samples = tmp_path / "theta0.csv"
    args = ["diffusion", "sample", str(reference.parent), "--n", "3", "--trace", "-o", str(samples)]
    assert _code(args) == 0
    assert len(pd.read_csv(samples)) == 3 * worst.shape[1]


def test_a_minute_interval_no_longer_caps_every_decision(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    settings = ["data.interval=1min", "data.synthetic_days=1", "methods=dfl"]
    _run(out, [*settings, "evaluation.online=false"], capsys)  # 207 test windows: too few
    assert any("the range is scaled ×12" in r.getMessage() for r in caplog.records)
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert any("capacity range [200, 400,000]" in n for n in notes)
    results = pd.read_csv(out / "results.csv")
    regret = results[(results.suite == "synthetic") & (results.metric == "normalized_regret")]
    assert (regret["value"] > 1e-4).all(), regret
