"""The registry's contract, end to end: every registered method runs for one epoch through
``drdfl run`` and the report shows each method's own diagnostics, the columns its registry
entry declares and its history really holds."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from drdfl.cli import main
from drdfl.methods.labels import online_label
from drdfl.methods.registry import METHOD_NAMES, METHODS, SHARED_HISTORY

pytestmark = pytest.mark.slow


def test_every_registered_method_runs_and_reports_its_diagnostics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    settings = [
        "seeds=0",
        f"methods={','.join(METHOD_NAMES)}",
        "train.epochs=1",
        "report.mse_ablation=false",
        "report.adversary_ablation=false",
        "evaluation.skyline=false",
        "evaluation.corruption_severities=[]",
        "method_params.wdro.steps=2",
        "method_params.threed.pool=16",
        "method_params.threed.adversarial_samples=8",
        "method_params.diffusion-augment.samples=8",
        "method_params.naive-seasonal.period=7",  # one day is longer than the quick windows
        "evaluation.online=true",
        "evaluation.online_halflife=64",
    ]
    args = ["run", "--profile", "quick", "--out", str(out), "--no-progress", "--jobs", "1"]
    for item in settings:
        args += ["--set", item]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0, capsys.readouterr().err

    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {*METHOD_NAMES, *map(online_label, METHOD_NAMES)}
    online = results[results["method"].str.endswith("+online")]
    assert set(online["suite"]) == {"synthetic"}
    histories = pd.read_csv(out / "histories.csv")
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in METHOD_NAMES:
        spec = METHODS[name]
        own = histories[histories["method"] == name].dropna(axis=1, how="all")
        written = set(own.columns) - {"method", "seed"} - set(SHARED_HISTORY)
        assert written <= set(spec.history), (name, written - set(spec.history))
        if spec.untrained:  # trains nothing: what it chose is a table, not a curve
            training = report[report.index("## Training curves") :]
            assert f"| {name} |" in training, name
            continue
        if not spec.history:
            continue
        assert written, f"{name} declares diagnostics but wrote none"
        figure = f"figures/diagnostics_{name}.png"
        assert (out / figure).is_file(), name
        caption = report[report.index(f"]({figure})") :].split("\n\n")[1]
        for column in written:
            assert re.search(rf"`{re.escape(column)}`: ", caption), (name, column)
