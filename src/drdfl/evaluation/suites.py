"""Scoring a forecaster on a suite's test sets, as one tidy table.

The suites themselves (training data and named test sets of each protocol) are built in
the data layer, :mod:`drdfl.data.suites`; their names are importable from here too.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from drdfl.data.suites import (
    PAPER_CORRUPTIONS,
    PAPER_TESTS,
    SUITES,
    Suite,
    TestSet,
    chronological_suite,
    corruption_tests,
    honest_suite,
    make_test_set,
    paper_suite,
    synthetic_suite,
)
from drdfl.evaluation.metrics import WindowScores, score_windows, summarize
from drdfl.tasks.base import DecisionTask

__all__ = [
    "PAPER_CORRUPTIONS",
    "PAPER_TESTS",
    "SUITES",
    "Suite",
    "TestSet",
    "chronological_suite",
    "corruption_tests",
    "evaluate_tests",
    "honest_suite",
    "make_test_set",
    "paper_suite",
    "synthetic_suite",
]


def evaluate_tests(
    forecaster: nn.Module,
    tests: list[TestSet],
    task: DecisionTask,
    alpha: float = 0.9,
    n_boot: int = 500,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> tuple[pd.DataFrame, dict[str, WindowScores]]:
    """Score ``forecaster`` on every test set: a tidy ``(test_set, metric, value)`` frame.

    Scoring runs on ``device`` (default: where the forecaster is).
    """
    rows = []
    scores: dict[str, WindowScores] = {}
    for t in tests:
        s = score_windows(forecaster, t.windows, t.scaler, task, device=device)
        scores[t.name] = s
        metrics = summarize(s, alpha=alpha, n_boot=n_boot, seed=seed)
        metrics["w_distance"] = t.w_distance
        rows += [{"test_set": t.name, "metric": k, "value": v} for k, v in metrics.items()]
    return pd.DataFrame(rows), scores
