"""Operating a trained model: plans from recent demand, for a person or an autoscaler.

:func:`load_planner` turns a saved model directory into a
:class:`~drdfl.evaluation.planning.Planner` (loaded once), :func:`read_demand` reads a
history or trace file at the model's slot length, and :func:`plan_file` is ``drdfl plan``.
:func:`trace_frame` lays demand segments (generated or worst-case ones) end to end as a
replayable trace, ``slot, tokens, segment``, that the backtest, simulators and load
generators replay.
The HTTP service that answers the same plans (``drdfl serve``) is
:mod:`drdfl.serve.http`; it needs the optional ``serve`` extra (FastAPI and uvicorn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drdfl.data.binning import format_interval
from drdfl.data.series import Series
from drdfl.errors import ConfigError, DataError
from drdfl.evaluation.planning import Plan, Planner
from drdfl.tasks.replicas import ReplicasTask

#: the demand column of a replayable trace file (``slot, tokens``)
TRACE_COLUMN = "tokens"


def replicas_task(
    model: Any,
    spec: str | None = None,
    params: dict[str, Any] | None = None,
    directory: str | Path | None = None,
) -> ReplicasTask | None:
    """The replicas task that prices a model's plans: ``spec`` (``replicas[:preset]``,
    with ``params``) made for the model's slots and checked against its training series,
    or ``None`` for the model's own task."""
    if spec is None:
        if params:
            raise ConfigError("task parameters need a task: give --task replicas[:preset]")
        return None
    from drdfl.tasks import get_task

    task = get_task(spec, **(params or {}))
    if not isinstance(task, ReplicasTask):
        raise ConfigError(f"--task {spec!r}: plans are in replicas; choose replicas[:preset]")
    train = Path(directory) / "train_series.npy" if directory is not None else None
    values = np.load(train) if train is not None and train.is_file() else np.zeros(0)
    fitted, _ = task.fit_to_data(values, model.interval_s)
    return fitted


def load_planner(
    directory: str | Path, task: str | None = None, task_params: dict[str, Any] | None = None
) -> Planner:
    """The planner of the model saved in ``directory`` (``drdfl train``, or a run's
    ``units/<unit>/model``); ``task`` prices its plans when the model was not trained on
    the replicas task (or to price them otherwise)."""
    from drdfl.artifacts import load_model

    model = load_model(directory)
    return Planner.from_model(model, replicas_task(model, task, task_params, directory))


def read_demand(path: str | Path, interval_s: float, tokens: str = "context") -> Series:
    """The demand in ``path`` per slot of ``interval_s`` seconds: a binned series (its own
    ``TIMESTAMP`` step must be ``interval_s``; one without timestamps is taken to be at
    it), a replayable trace (``slot, tokens``) or a per-request trace (binned here)."""
    from drdfl.data.readers import binned, detect_format, read_series

    path = Path(path)
    fmt = detect_format(path)
    if fmt != "binned":
        return read_series(path, fmt, interval_s, tokens)
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV: {exc}") from None
    column = binned.TOKEN_COLUMN[tokens]
    if column not in header and TRACE_COLUMN in header:
        column = TRACE_COLUMN
    series = read_series(path, "binned", None, tokens, column)
    if series.meta.get("timestamps") == "used":
        if not np.isclose(series.interval_s, interval_s):
            raise DataError(
                f"{path} is binned at {format_interval(series.interval_s)} (its TIMESTAMP "
                f"column), but the model plans slots of {format_interval(interval_s)}; give "
                f"demand per {format_interval(interval_s)} (drdfl data bin TRACE --interval "
                f"{format_interval(interval_s)} bins a raw trace)"
            )
        return series
    return Series(series.values, series.name, interval_s, series.unit, None, series.meta)


def trace_frame(segments: np.ndarray) -> pd.DataFrame:
    """Segments ``[n, L]`` of demand (tokens per slot) laid end to end as a replayable trace:
    ``slot`` (0, 1, …), ``tokens`` and the ``segment`` each slot comes from."""
    values = np.asarray(segments, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise DataError(f"a trace needs segments [n, L], got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise DataError("a trace's demand must be finite and >= 0")
    n, length = values.shape
    return pd.DataFrame(
        {
            "slot": np.arange(n * length),
            TRACE_COLUMN: values.reshape(-1),
            "segment": np.repeat(np.arange(n), length),
        }
    )


def plan_file(planner: Planner, history: str | Path, tokens: str = "context") -> Plan:
    """The plan after the demand in the file ``history`` (``drdfl plan``)."""
    series = read_demand(history, planner.interval_s, tokens)
    return planner.plan(series.values, series.start, source=str(history))


__all__ = [
    "TRACE_COLUMN",
    "Plan",
    "Planner",
    "load_planner",
    "plan_file",
    "read_demand",
    "trace_frame",
]
