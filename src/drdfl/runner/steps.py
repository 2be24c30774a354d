"""Runs from a configuration: build a suite, train methods, evaluate, and (``run``) report.

The CLI is a thin layer over these functions; everything it does can be done from Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from drdfl.artifacts import TrainedModel, load_model, save_model
from drdfl.config import DataConfig, ExperimentConfig, TrainConfig
from drdfl.data.windows import Scaler
from drdfl.errors import ConfigError
from drdfl.evaluation.suites import (
    Suite,
    TestSet,
    corruption_tests,
    evaluate_tests,
    honest_suite,
    make_test_set,
    synthetic_suite,
)
from drdfl.methods import get_method
from drdfl.methods.base import FitResult
from drdfl.models.forecasters import build_forecaster
from drdfl.seeding import seed_everything
from drdfl.tasks import get_task


def build_suite(data: DataConfig, seed: int = 0) -> Suite:
    """The suite named by ``data.suite`` with ``data``'s windowing."""
    if data.suite == "synthetic":
        from drdfl.data.binning import parse_interval

        return synthetic_suite(
            data.synthetic_days, data.window, data.horizon, parse_interval(data.interval), seed
        )
    if data.suite == "honest":
        return honest_suite(data.data_dir, data.window, data.horizon, data.test_max_rows)
    if data.suite == "paper":
        from drdfl.evaluation.suites import paper_suite

        return paper_suite(data.data_dir, data.window, data.horizon, data.test_max_rows)
    raise ConfigError(f"data.suite: unknown suite {data.suite!r}")


def train_model(
    method: str,
    suite: Suite,
    *,
    task: str = "provisioning:paper-code",
    forecaster: str = "lstm",
    train: TrainConfig | None = None,
    seed: int = 0,
    method_params: dict[str, Any] | None = None,
    warm_start: str | Path | TrainedModel | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> tuple[TrainedModel, FitResult]:
    """Train ``method`` on ``suite``'s training data with a fresh (or warm-started) forecaster."""
    train = (train or TrainConfig()).model_copy(update={"seed": seed})
    seed_everything(seed)
    decision_task = get_task(task)
    data = suite.data
    model = build_forecaster(forecaster, data.train.window, data.train.horizon, seed=seed)
    if warm_start is not None:
        start = warm_start if isinstance(warm_start, TrainedModel) else load_model(warm_start)
        if (start.window, start.horizon) != (data.train.window, data.train.horizon):
            raise ConfigError(
                f"warm start has window/horizon {start.window}/{start.horizon}, the data "
                f"{data.train.window}/{data.train.horizon}"
            )
        model = start.forecaster
    params = dict(method_params or {})
    runner = get_method(method, train=train, checkpoint=checkpoint, progress=progress, **params)
    result = runner.fit(data, decision_task, model)
    trained = TrainedModel(
        forecaster=result.forecaster,
        scaler=data.scaler,
        task=decision_task,
        window=data.train.window,
        horizon=data.train.horizon,
        interval_s=data.interval_s,
        method=method,
        seed=seed,
        config={"train": train.model_dump(), "method_params": params, "task": task},
        history=result.history,
        meta={
            "suite": suite.name,
            "wall_time_s": result.wall_time_s,
            "best_epoch": result.artifacts.get("best_epoch"),
            "torch": torch.__version__,
        },
    )
    trained.meta["train_series"] = suite.train_series.name
    return trained, result


def save_trained(model: TrainedModel, suite: Suite, directory: str | Path) -> Path:
    """Save ``model`` plus its raw training series (for W-distances of later test sets)."""
    from drdfl._io import atomic_open

    out = save_model(model, directory)
    with atomic_open(out / "train_series.npy", "wb") as handle:
        np.save(handle, suite.train_series.values)
    return out


def _train_values(directory: Path) -> np.ndarray | None:
    path = directory / "train_series.npy"
    return np.load(path) if path.is_file() else None


def user_test_sets(
    specs: list[str],
    scaler: Scaler,
    window: int,
    horizon: int,
    interval_s: float,
    train_values: np.ndarray,
    data_dir: str | Path | None = None,
    tokens: str = "context",
) -> list[TestSet]:
    """Test sets from datasets or files a user brings, binned at ``interval_s`` and
    normalized with the training ``scaler``."""
    from drdfl.data.loading import load_series

    tests = []
    for spec in specs:
        series = load_series(spec, data_dir, interval=interval_s, tokens=tokens)
        tests.append(
            make_test_set(
                series.name, series, scaler, train_values, window, horizon, f"user test set {spec}"
            )
        )
    return tests


def evaluate_model(
    directory: str | Path,
    suite: str | None = None,
    tests: list[str] | None = None,
    data_dir: str | Path | None = None,
    per_window: bool = False,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """Evaluate a saved model on a suite and/or user test sets.

    Returns the tidy table ``(method, seed, suite, test_set, metric, value)``, the per-window
    table when asked, and notes for the reader (e.g. overlaps between train and test data).
    """
    path = Path(directory)
    model = load_model(path)
    trained_on = model.meta.get("suite", "synthetic")
    name = suite or (None if tests else trained_on)
    test_sets: list[TestSet] = []
    notes: list[str] = []
    train_values = _train_values(path)
    if name is not None:
        base = name if name != "corruptions" else trained_on
        data = DataConfig(suite=base, window=model.window, horizon=model.horizon)
        if data_dir is not None:
            data.data_dir = str(data_dir)
        built = build_suite(data)
        notes += built.notes
        if train_values is None:
            train_values = built.train_series.values
        chosen = corruption_tests(built, seed=seed) if name == "corruptions" else built.tests
        test_sets += [_rescaled(t, model, train_values) for t in chosen]
    if tests:
        if train_values is None:
            raise ConfigError(f"{path}: no training series saved; cannot place user test sets")
        test_sets += user_test_sets(
            tests,
            model.scaler,
            model.window,
            model.horizon,
            model.interval_s,
            train_values,
            data_dir,
        )
    table, scores = evaluate_tests(model.forecaster, test_sets, model.task, seed=seed)
    table.insert(0, "suite", name or "user")
    table.insert(0, "seed", model.seed)
    table.insert(0, "method", model.method)
    windows = None
    if per_window:
        windows = pd.concat([s.frame(n) for n, s in scores.items()], ignore_index=True)
    return table, windows, notes


def _rescaled(test: TestSet, model: TrainedModel, train_values: np.ndarray) -> TestSet:
    """``test`` normalized with the model's own scaler (a model may meet another suite)."""
    if test.scaler == model.scaler or test.own_extremes:
        return test
    return make_test_set(
        test.name,
        test.series,
        model.scaler,
        train_values,
        model.window,
        model.horizon,
        test.note,
    )


__all__ = [
    "ExperimentConfig",
    "build_suite",
    "evaluate_model",
    "save_trained",
    "train_model",
    "user_test_sets",
]
