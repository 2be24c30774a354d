"""Scoring a forecaster on a suite's test sets, as one tidy table.

The suites themselves (training data and named test sets of each protocol) are built in
the data layer, :mod:`drdfl.data.suites`.
"""

from __future__ import annotations

import json

import pandas as pd
import torch
from torch import nn

from drdfl.data.suites import TestSet
from drdfl.data.windows import Windows
from drdfl.evaluation.metrics import WindowScores, score_windows, summarize
from drdfl.tasks.base import DecisionTask

__all__ = ["evaluate_tests", "score_tests", "summary_frame"]


def score_tests(
    forecaster: nn.Module,
    tests: list[TestSet],
    task: DecisionTask,
    device: str | torch.device | None = None,
) -> list[WindowScores]:
    """Per-window scores of every test set, in order.

    Test sets that share a scaler are scored in one pass, so a window several of them
    hold (the paper's combined years, the skyline's parts of the main sets) is forecast
    once; every window's numbers are those of scoring its set alone (see
    :func:`~drdfl.evaluation.metrics.score_windows`).
    """
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(tests):
        groups.setdefault(json.dumps(t.scaler.to_dict(), sort_keys=True), []).append(i)
    out: list[WindowScores | None] = [None] * len(tests)
    for members in groups.values():
        joined = Windows.concat([tests[i].windows for i in members])
        scores = score_windows(forecaster, joined, tests[members[0]].scaler, task, device=device)
        offset = 0
        for i in members:
            n = len(tests[i].windows)
            out[i] = scores.part(slice(offset, offset + n))
            offset += n
    return [s for s in out if s is not None]


def summary_frame(
    test: TestSet, scores: WindowScores, alpha: float = 0.9, n_boot: int = 500, seed: int = 0
) -> pd.DataFrame:
    """The summary metrics of one test set's scores: a tidy ``(test_set, metric, value)``
    frame."""
    metrics = summarize(scores, alpha=alpha, n_boot=n_boot, seed=seed)
    metrics["w_distance"] = test.w_distance
    return pd.DataFrame(
        [{"test_set": test.name, "metric": k, "value": v} for k, v in metrics.items()]
    )


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
    scores = score_tests(forecaster, tests, task, device)
    frames = [summary_frame(t, s, alpha, n_boot, seed) for t, s in zip(tests, scores, strict=True)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table, {t.name: s for t, s in zip(tests, scores, strict=True)}
