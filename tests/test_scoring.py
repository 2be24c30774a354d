"""Scoring each distinct window once gives exactly the numbers of scoring every window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drdfl.data.windows import Scaler, make_windows
from drdfl.evaluation.metrics import WindowScores, score_windows, unique_windows
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task

FIELDS = ("start", "prediction", "truth", "decision", "regret", "optimal_cost", "sq_err")


def _assert_same(a: WindowScores, b: WindowScores) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _tiled(period: int = 233, copies: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.tile(rng.gamma(2.0, 500.0, period), copies)


def test_unique_windows_finds_each_distinct_window_in_order() -> None:
    values = _tiled()
    windows = make_windows(values / values.max(), 7, 1)
    first, inverse = unique_windows(windows)
    # A tiled series of period 233 has exactly 233 distinct windows, first seen in order.
    np.testing.assert_array_equal(first, np.arange(233))
    np.testing.assert_array_equal(inverse, np.arange(len(windows)) % 233)
    np.testing.assert_array_equal(windows.x[first][inverse], windows.x)
    np.testing.assert_array_equal(windows.y[first][inverse], windows.y)


def test_windows_that_differ_only_in_the_target_stay_apart() -> None:
    values = np.array([0.1, 0.2, 0.3, 0.9, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.9])
    windows = make_windows(values, 3, 1)
    first, inverse = unique_windows(windows)
    assert len(first) == 8  # nine windows; only the first and the last are the same
    np.testing.assert_array_equal(inverse[[0, 8]], [0, 0])
    assert inverse[4] != inverse[0]


@pytest.mark.parametrize("name", ["lstm", "mlp", "linear"])
def test_deduplicated_scores_equal_full_scores_exactly(name: str) -> None:
    values = _tiled()
    scaler = Scaler.fit(values)
    windows = make_windows(scaler.transform(values), 7, 1)
    forecaster = build_forecaster(name, 7, 1, seed=0)
    task = get_task("provisioning:paper-code")
    full = score_windows(forecaster, windows, scaler, task, dedupe=False)
    once = score_windows(forecaster, windows, scaler, task)
    _assert_same(full, once)
    assert len(once) == len(windows)
    assert np.unique(once.regret).shape[0] <= 233 < len(windows)


def test_a_window_scores_the_same_alone_or_in_a_batch() -> None:
    values = np.random.default_rng(1).gamma(2.0, 500.0, 5000)
    scaler = Scaler.fit(values)
    windows = make_windows(scaler.transform(values), 7, 1)
    forecaster = build_forecaster("lstm", 7, 1, seed=0)
    task = get_task("provisioning:paper-code")
    whole = score_windows(forecaster, windows, scaler, task, chunk=1024)
    for index in ([0], [17, 4000], np.arange(1000, 3100)):
        subset = windows.subset(np.asarray(index))
        part = score_windows(forecaster, subset, scaler, task, chunk=1024)
        np.testing.assert_array_equal(part.prediction, whole.prediction[index])
        np.testing.assert_array_equal(part.regret, whole.regret[index])


@pytest.mark.shared_data
def test_paper_suite_tiled_sets_score_identically(data_dir: Path) -> None:
    from drdfl.config import DataConfig
    from drdfl.evaluation.suites import evaluate_tests
    from drdfl.runner.steps import build_suite

    suite = build_suite(DataConfig(suite="paper", data_dir=str(data_dir)))
    tiled = suite.test("23D")  # the 2023 code file: 233 values tiled
    assert len(unique_windows(tiled.windows)[0]) == 233 < len(tiled.windows)
    forecaster = build_forecaster("lstm", 7, 1, seed=0)
    task = get_task("provisioning:paper-code")
    _assert_same(
        score_windows(forecaster, tiled.windows, tiled.scaler, task, dedupe=False),
        score_windows(forecaster, tiled.windows, tiled.scaler, task),
    )
    table, _ = evaluate_tests(forecaster, [tiled], task, n_boot=50)
    assert table.loc[table.metric == "regret", "value"].item() > 0


def test_sets_sharing_windows_score_as_each_set_alone() -> None:
    from drdfl.data.suites import TestSet
    from drdfl.evaluation.suites import score_tests

    values = np.random.default_rng(2).gamma(2.0, 500.0, 3000)
    scaler = Scaler.fit(values)
    windows = make_windows(scaler.transform(values), 7, 1)
    other = Scaler.fit(values * 2)  # a set on another scale is scored on its own
    tests = [
        TestSet("a", windows.subset(np.arange(0, 2000)), scaler, None),
        TestSet("b", windows.subset(np.arange(1500, 2990)), scaler, None),
        TestSet("c", make_windows(other.transform(values), 7, 1), other, None),
        TestSet("a+b", windows, scaler, None),
    ]
    forecaster = build_forecaster("lstm", 7, 1, seed=0)
    task = get_task("provisioning:paper-code")
    together = score_tests(forecaster, tests, task)
    for test, scores in zip(tests, together, strict=True):
        _assert_same(scores, score_windows(forecaster, test.windows, test.scaler, task))
