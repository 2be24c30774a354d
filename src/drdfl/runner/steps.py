"""Single models: build a suite from data settings, train one method on it, save the model
with those settings, and evaluate a saved model on the suite it was trained on (or another,
or user test sets).

``drdfl train`` and ``drdfl evaluate`` are thin layers over these functions.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from drdfl.artifacts import TrainedModel, data_config, load_array, load_model, save_model
from drdfl.config import DataConfig, ExperimentConfig
from drdfl.data.suites import (
    Suite,
    TestSet,
    corruption_tests,
    honest_suite,
    make_test_set,
    paper_suite,
    synthetic_suite,
)
from drdfl.data.windows import Scaler
from drdfl.errors import ConfigError
from drdfl.evaluation.suites import evaluate_tests
from drdfl.methods.base import FitResult
from drdfl.methods.registry import get_spec
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.schema import StrictModel
from drdfl.tasks import get_task


class DegenerateDataWarning(UserWarning):
    """Training data a forecaster cannot learn from (constant, all zero)."""


class TaskFitWarning(DegenerateDataWarning):
    """The task was adapted to the training data (e.g. its capacity range scaled)."""


def fitted_task(
    spec: str, params: dict[str, Any] | None, train_values: np.ndarray, interval_s: float
) -> tuple[Any, str | None]:
    """The task ``spec`` (with ``params``) made for the training series (real units), and
    the note saying what was changed for it."""
    return get_task(spec, **(params or {})).fit_to_data(train_values, interval_s)


def build_suite(data: DataConfig, seed: int = 0) -> Suite:
    """The suite named by ``data.suite`` with ``data``'s windowing; it records ``data`` and
    ``seed`` (``suite.config``) so that a model trained on it can rebuild it."""
    if data.suite == "synthetic":
        from drdfl.data.binning import parse_interval

        suite = synthetic_suite(
            data.synthetic_days,
            data.window,
            data.horizon,
            parse_interval(data.interval),
            seed,
            data.lead,
        )
    elif data.suite == "honest":
        suite = honest_suite(
            data.data_dir, data.window, data.horizon, data.test_max_rows, data.lead
        )
    elif data.suite == "paper":
        suite = paper_suite(data.data_dir, data.window, data.horizon, data.test_max_rows, data.lead)
    else:
        raise ConfigError(f"data.suite: unknown suite {data.suite!r}")
    suite.config = {"data": data.model_dump(mode="json"), "suite_seed": seed}
    return suite


def train_model(
    method: str,
    suite: Suite,
    *,
    task: str = "provisioning:paper-code",
    task_params: dict[str, Any] | None = None,
    forecaster: str = "lstm",
    anchor: str = "none",
    anchor_alpha: float | None = None,
    train: TrainConfig | None = None,
    seed: int = 0,
    method_params: dict[str, Any] | StrictModel | None = None,
    warm_start: str | Path | TrainedModel | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> tuple[TrainedModel, FitResult]:
    """Train ``method`` on ``suite``'s training data with a fresh (or warm-started)
    forecaster; ``anchor`` makes the fresh one a learned correction of that rule."""
    train = (train or TrainConfig()).model_copy(update={"seed": seed})
    if (warning := suite.degeneracy_warning()) is not None:
        warnings.warn(warning, DegenerateDataWarning, stacklevel=2)
    data = suite.data
    decision_task, task_note = fitted_task(
        task, task_params, suite.train_series.values, data.interval_s
    )
    if task_note is not None:
        warnings.warn(task_note, TaskFitWarning, stacklevel=2)
    lead = data.train.lead
    model = build_forecaster(
        forecaster,
        data.train.window,
        data.train.horizon,
        seed=seed,
        anchor=anchor,
        anchor_alpha=anchor_alpha,
    )
    if warm_start is not None:
        start = warm_start if isinstance(warm_start, TrainedModel) else load_model(warm_start)
        if (start.window, start.horizon, start.lead) != (
            data.train.window,
            data.train.horizon,
            lead,
        ):
            raise ConfigError(
                f"warm start has window/horizon/lead {start.window}/{start.horizon}/"
                f"{start.lead}, the data {data.train.window}/{data.train.horizon}/{lead}"
            )
        model = start.forecaster
    spec = get_spec(method)
    params = (
        method_params if isinstance(method_params, spec.params_model) else spec.parse(method_params)  # type: ignore[arg-type]
    )
    runner = spec.cls(train=train, checkpoint=checkpoint, progress=progress, params=params)
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
        config={
            "train": train.model_dump(),
            "method_params": recorded_params(spec, params),
            "task": task,
            "task_params": dict(task_params or {}),
            **suite.config,
        },
        history=result.history,
        meta={
            "suite": suite.name,
            "wall_time_s": result.wall_time_s,
            "best_epoch": result.artifacts.get("best_epoch"),
            "torch": torch.__version__,
            **({"task_note": task_note} if task_note is not None else {}),
        },
        lead=lead,
    )
    trained.meta["train_series"] = suite.train_series.name
    return trained, result


def recorded_params(spec: Any, params: Any) -> dict[str, Any]:
    """The parameters a model is saved with: every one, as a user gives them, except
    objects a file cannot hold (an in-memory θ₀)."""
    flat = spec.cls.flat_params(params)
    plain = (str, int, float, bool, list, type(None))
    return {key: value for key, value in flat.items() if isinstance(value, plain)}


def save_trained(model: TrainedModel, suite: Suite, directory: str | Path) -> Path:
    """Save ``model`` plus its raw training series (for W-distances of later test sets)."""
    from drdfl._io import atomic_open

    out = save_model(model, directory)
    with atomic_open(out / "train_series.npy", "wb") as handle:
        np.save(handle, suite.train_series.values)
    return out


def _train_values(directory: Path) -> np.ndarray | None:
    path = directory / "train_series.npy"
    return load_array(path) if path.is_file() else None


def user_test_sets(
    specs: list[str],
    scaler: Scaler,
    window: int,
    horizon: int,
    interval_s: float,
    train_values: np.ndarray,
    data_dir: str | Path | None = None,
    tokens: str = "context",
    lead: int = 0,
) -> list[TestSet]:
    """Test sets from datasets or files a user brings, binned at ``interval_s`` and
    normalized with the training ``scaler`` (targets ``lead`` slots after the inputs)."""
    from drdfl.data.loading import load_series

    tests: list[TestSet] = []
    for spec in specs:
        series = load_series(spec, data_dir, interval=interval_s, tokens=tokens)
        tests.append(
            make_test_set(
                series.name,
                series,
                scaler,
                train_values,
                window,
                horizon,
                f"user test set {spec}",
                lead,
            )
        )
    check_unique_names(tests)
    return tests


def check_unique_names(tests: list[TestSet]) -> None:
    """Test sets are told apart by name: two of one name would be averaged together."""
    seen: dict[str, TestSet] = {}
    for test in tests:
        if test.name in seen:
            raise ConfigError(
                f"two test sets are named {test.name!r} ({seen[test.name].note or 'suite'}; "
                f"{test.note or 'suite'}); rename one of the files"
            )
        seen[test.name] = test


def evaluate_model(
    directory: str | Path,
    suite: str | None = None,
    tests: list[str] | None = None,
    data_dir: str | Path | None = None,
    per_window: bool = False,
    seed: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """Evaluate a saved model on a suite and/or user test sets.

    The suite is rebuilt with the data settings the model was trained on; ``seed`` (the
    bootstrap's and the corruptions'; default: the model's) and the evaluation settings a
    run saved with the model make the numbers those the run reported. Returns the tidy
    table ``(method, seed, suite, test_set, metric, value)``, the per-window table when
    asked, and notes for the reader (e.g. overlaps between train and test data).
    """
    path = Path(directory)
    model = load_model(path)
    trained = data_config(model, path / "config.toml")
    seed = model.seed if seed is None else seed
    # A run saves its evaluation settings with each model; the defaults are a run's too.
    evaluation = model.config.get("evaluation", {})
    scoring = {
        "alpha": float(evaluation.get("cvar_alpha", 0.9)),
        "n_boot": int(evaluation.get("bootstrap", 500)),
        "seed": seed,
    }
    trained_on = trained.suite if trained is not None else model.meta.get("suite", "synthetic")
    name = suite or (None if tests else trained_on)
    test_sets: list[TestSet] = []
    notes: list[str] = []
    train_values = _train_values(path)
    if name is not None:
        base = name if name != "corruptions" else trained_on
        if trained is not None:  # the settings it was trained with, on the suite asked for
            data = trained.model_copy(update={"suite": base})
            suite_seed = int(model.config.get("suite_seed", 0))
        else:
            data = DataConfig(
                suite=base, window=model.window, horizon=model.horizon, lead=model.lead
            )
            suite_seed = 0
            notes.append(
                f"{path} stores no data settings (saved without the suite it was trained on): "
                f"evaluated on the default {base} suite, which may differ from that one"
            )
        if data_dir is not None:
            data = data.model_copy(update={"data_dir": str(data_dir)})
        built = build_suite(data, suite_seed)
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
            data_dir if data_dir is not None or trained is None else trained.data_dir,
            tokens=trained.tokens if trained is not None else "context",
            lead=model.lead,
        )
    check_unique_names(test_sets)
    table, scores = evaluate_tests(model.forecaster, test_sets, model.task, **scoring)
    table.insert(0, "method", model.method)
    if evaluation.get("online") and name != "corruptions":  # as the run scored it
        table = pd.concat(
            [table, _online_table(model, test_sets, scores, evaluation, scoring)],
            ignore_index=True,
        )
    table.insert(1, "suite", name or "user")
    table.insert(1, "seed", model.seed)
    windows = None
    if per_window:
        windows = pd.concat([s.frame(n) for n, s in scores.items()], ignore_index=True)
    return table, windows, notes


def _online_table(
    model: TrainedModel,
    tests: list[TestSet],
    scores: dict[str, Any],
    evaluation: dict[str, Any],
    scoring: dict[str, Any],
) -> pd.DataFrame:
    """The rows of ``<method>+online``: every test set recalibrated online."""
    from drdfl.evaluation.online import OnlineSettings, anchor_rules, recalibrate
    from drdfl.evaluation.suites import summary_frame
    from drdfl.methods.labels import online_label

    settings = OnlineSettings(
        halflife=float(evaluation.get("online_halflife", 256.0)),
        rules=tuple(evaluation.get("online_rules", ())),
    )
    rule = anchor_rules(model.forecaster, settings.rules)
    frames = []
    for test in tests:
        online = recalibrate(
            scores[test.name], test.windows, test.scaler, model.task, rule, settings
        )
        frame = summary_frame(test, online, **scoring)
        frame.insert(0, "method", online_label(model.method))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


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
        model.lead,
    )


__all__ = [
    "DegenerateDataWarning",
    "ExperimentConfig",
    "TaskFitWarning",
    "build_suite",
    "evaluate_model",
    "fitted_task",
    "save_trained",
    "train_model",
    "user_test_sets",
]
