"""The report measures every trained method against the untrained rules: a verdict first,
the best rule in every table, a mark on every trained cell that loses to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from drdfl.report import summary_text, write_report
from tests.test_report import _rows

TESTS = ["24V (test)", "23D"]
# normalized regret [seed][test set]
NR = {
    "naive-last": [[0.050, 0.370]] * 3,
    "naive-ets": [[0.040, 0.420]] * 3,
    "dfl": [[0.039, 0.440], [0.041, 0.430], [0.040, 0.450]],
    "dfl+online": [[0.042, 0.350], [0.043, 0.360], [0.041, 0.355]],
    "threed": [[0.038, 0.400], [0.040, 0.380], [0.039, 0.390]],
    "threed-off": [[0.038, 0.410], [0.040, 0.400], [0.039, 0.405]],
}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    rows: list[dict] = []
    for method, values in NR.items():
        for seed, per_test in enumerate(values):
            for test, nr in zip(TESTS, per_test, strict=True):
                rows += _rows(method, seed, "honest", test, nr, 0.1)
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    history = [
        {
            "method": m,
            "seed": s,
            "epoch": 0,
            "train_loss": 1.0,
            "val_regret": 0.5,
            "lr": np.nan,
            "time_s": 0.1,
            **({"alpha": 0.3 + 0.1 * s} if m == "naive-ets" else {}),
        }
        for m in ("naive-last", "naive-ets")
        for s in range(3)
    ]
    pd.DataFrame(history).to_csv(tmp_path / "histories.csv", index=False)
    meta = {
        "in_distribution": "24V (test)",
        "units": [
            {"label": m, "seed": s} for m in NR if not m.endswith("+online") for s in range(3)
        ],
    }
    (tmp_path / "results.json").write_text(json.dumps(meta), encoding="utf-8")
    return tmp_path


def _section(report: str, heading: str) -> str:
    return report[report.index(heading) :].split("\n## ")[0]


def test_the_report_opens_with_the_verdict_against_the_best_untrained_rule(run: Path) -> None:
    write_report(run)
    report = (run / "report.md").read_text(encoding="utf-8")
    assert report.index("## Verdict on the `honest` suite") < report.index("## Normalized regret")
    verdict = _section(report, "## Verdict")
    assert "rule on 1 of 1 out-of-distribution test sets (1 with intervals that separate)" in (
        verdict
    )
    rows = {line.split(" | ")[0].lstrip("| "): line for line in verdict.splitlines() if "|" in line}
    ood = rows["23D"]
    assert "0.370 ± 0.000 (naive-last)" in ood
    assert "(dfl+online)" in ood
    diff = np.array([0.350, 0.360, 0.355]) - 0.370
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    assert f"{100 * diff.mean() / 0.37:+.1f} % ± {100 * half / 0.37:.1f} % (separate)" in ood
    # 3D-Learning against the same rule: (0.39 − 0.37) / 0.37 = +5.4 %
    assert "+5.4 %" in ood and "(threed)" in ood
    # and against its own run without the adversary, paired by seed
    diff = np.array([0.400, 0.380, 0.390]) - np.array([0.410, 0.400, 0.405])
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    shown = f"{100 * diff.mean() / 0.405:+.1f} % ± {100 * half / 0.405:.1f} % (separate)"
    assert ood.rstrip(" |").endswith(shown)
    assert "24V (test) (in distribution)" in verdict
    assert "(naive-ets)" in rows["24V (test) (in distribution)"]


def test_every_table_names_the_best_rule_and_marks_what_loses_to_it(run: Path) -> None:
    write_report(run)
    report = (run / "report.md").read_text(encoding="utf-8")
    main = _section(report, "## Normalized regret on the `honest` suite")
    offline, online = main.split("With **online recalibration**")
    lines = {
        line.split(" | ")[0].lstrip("| "): line for line in offline.splitlines() if "|" in line
    }
    assert "dfl+online" not in lines
    # 23D (0.44 > 0.37), the average and the maximum; on 24V it ties with naive-ets (0.0400)
    assert lines["dfl"].count("†") == 3
    assert "0.370 (naive-last)" in lines["best untrained"]
    assert "0.0400 (naive-ets)" in lines["best untrained"]  # each column its own digits
    assert "†" not in lines["naive-last"]
    assert "dfl+online" in online and "†" in online
    text = summary_text(run)
    assert "best untrained" in text and "†" in text and "with online recalibration:" in text


def test_the_untrained_rules_show_what_they_chose_not_a_training_curve(run: Path) -> None:
    written = write_report(run)
    report = (run / "report.md").read_text(encoding="utf-8")
    training = _section(report, "## Training curves")
    assert "| naive-ets | 1 | 0.5 | 0.4 |" in training  # α averaged over seeds
    assert not any("diagnostics_naive" in name for name in written)
