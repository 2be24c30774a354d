"""Planning: from a trained forecaster and the demand seen so far, the replicas to run.

A :class:`Planner` holds what a saved model needs to decide — the forecaster, its scaler,
window, horizon, lead time and slot length — and the :class:`~drdfl.tasks.ReplicasTask`
that turns forecasts into whole replicas and prices them. :meth:`Planner.plan` is the one
planning function: the command line's ``drdfl plan``, the backtest (through the batched
:meth:`Planner.decide_windows`) and the HTTP service all call it.

The plan made after a history of ``n`` slots (slots ``0 … n-1`` observed) is for slots
``n + lead … n + lead + horizon - 1``: a replica started now is ready ``lead`` slots later.
A model trained on the replicas task decides as it was trained; a model trained on
another task lends its forecast to the replicas task's rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from drdfl.data.windows import Scaler
from drdfl.errors import ConfigError, DataError
from drdfl.tasks.base import DecisionTask
from drdfl.tasks.replicas import ReplicasTask

if TYPE_CHECKING:
    from drdfl.artifacts import TrainedModel

#: the largest demand a slot may hold (the forecaster computes in float32)
MAX_TOKENS = float(np.finfo(np.float32).max) / 16


@dataclass(frozen=True)
class Plan:
    """The decision for the slots after a history: one row per planned slot."""

    #: index of each planned slot, counted from the history's first slot
    slot: np.ndarray
    #: start time of each planned slot (``None`` where the history had no timestamps)
    start: list[pd.Timestamp] | None
    forecast_tokens: np.ndarray
    replicas: np.ndarray
    #: money each slot costs if demand comes as forecast (the replicas task's price)
    expected_cost: np.ndarray
    lead: int
    interval_s: float

    def frame(self) -> pd.DataFrame:
        """``slot_start`` (ISO time, else the slot index), ``forecast_tokens``,
        ``replicas``, ``expected_cost``."""
        start: Any = [t.isoformat() for t in self.start] if self.start is not None else self.slot
        return pd.DataFrame(
            {
                "slot_start": start,
                "forecast_tokens": self.forecast_tokens,
                "replicas": self.replicas.astype(np.int64),
                "expected_cost": self.expected_cost,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (slot offsets are counted from the end of the history)."""
        end = int(self.slot[0]) - self.lead
        return {
            "replicas": [int(r) for r in self.replicas],
            "forecast_tokens": [float(v) for v in self.forecast_tokens],
            "expected_cost": [float(v) for v in self.expected_cost],
            "slot_offset": [int(s) - end for s in self.slot],
            "slot_start": None if self.start is None else [t.isoformat() for t in self.start],
            "lead": self.lead,
            "interval_s": self.interval_s,
        }


class Planner:
    """Decides replicas from demand histories with one trained forecaster.

    ``task`` is the task the forecaster was trained on; ``replicas`` prices and rounds the
    decisions (the model's own task when that is a replicas task).
    """

    def __init__(
        self,
        forecaster: nn.Module,
        scaler: Scaler,
        window: int,
        horizon: int,
        lead: int,
        interval_s: float,
        task: DecisionTask,
        replicas: ReplicasTask | None = None,
        method: str = "",
    ) -> None:
        if replicas is None:
            if not isinstance(task, ReplicasTask):
                raise ConfigError(
                    f"the model decides {task.name}, not replicas: give the replicas task "
                    "that prices its plan (e.g. replicas:balanced)"
                )
            replicas = task
        if not np.isclose(replicas.interval_s, interval_s):
            raise ConfigError(
                f"the replicas task prices slots of {replicas.interval_s:g} s, the model's "
                f"are {interval_s:g} s"
            )
        self.forecaster = forecaster.eval()
        self.scaler = scaler
        self.window, self.horizon, self.lead = int(window), int(horizon), int(lead)
        self.interval_s = float(interval_s)
        self.task = task
        self.replicas = replicas
        #: the method the forecaster was trained with (for listings)
        self.method = method

    @classmethod
    def from_model(cls, model: TrainedModel, replicas: ReplicasTask | None = None) -> Planner:
        """The planner of a loaded model (``drdfl.artifacts.load_model``); ``replicas``
        defaults to the model's own task when it is a replicas task."""
        if replicas is None and not isinstance(model.task, ReplicasTask):
            raise ConfigError(
                f"the model was trained on the {model.task.name} task: choose the replicas "
                "task that turns its forecast into replicas (--task replicas[:preset])"
            )
        return cls(
            model.forecaster,
            model.scaler,
            model.window,
            model.horizon,
            model.lead,
            model.interval_s,
            model.task,
            replicas,
            model.method,
        )

    def describe(self) -> dict[str, Any]:
        """What the planner decides with, for listings and health checks."""
        return {
            "method": self.method,
            "window": self.window,
            "horizon": self.horizon,
            "lead": self.lead,
            "interval_s": self.interval_s,
            "trained_task": self.task.to_dict(),
            "replicas_task": self.replicas.to_dict(),
        }

    # ------------------------------------------------------------------ checks
    def check_history(self, demand: Any, source: str = "history") -> np.ndarray:
        """``demand`` as a float64 array of at least one window; a :class:`DataError`
        naming ``source`` and the first bad slot otherwise."""
        try:
            values = np.asarray(demand, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{source}: expected a list of numbers (tokens per slot)") from None
        if values.ndim != 1:
            raise DataError(
                f"{source}: expected a flat list of tokens per slot, got shape {values.shape}"
            )
        bad = ~np.isfinite(values) | (values < 0) | (values > MAX_TOKENS)
        if bad.any():
            first = int(np.argmax(bad))
            raise DataError(
                f"{source}: slot {first} holds {values[first]!r}; expected a finite number "
                f"of tokens between 0 and {MAX_TOKENS:.3g}"
            )
        if values.shape[0] < self.window:
            raise DataError(
                f"{source}: {values.shape[0]} slot(s) of {self.interval_s:g} s; the model "
                f"needs at least {self.window} (its window), oldest first"
            )
        return values

    # ------------------------------------------------------------------ decisions
    @torch.inference_mode()
    def forecast_windows(self, windows: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Forecasts ``[N, horizon]`` in tokens (≥ 0) from windows ``[N, window]`` of the
        demand seen, in one batched pass per ``chunk`` windows."""
        x = torch.as_tensor(self.scaler.transform(np.asarray(windows, np.float64)))
        out = []
        for i in range(0, x.shape[0], chunk):
            out.append(self.forecaster(x[i : i + chunk].float()).double())
        pred = torch.cat(out) if out else torch.zeros(0, self.horizon, dtype=torch.float64)
        return np.maximum(self.scaler.inverse_transform(pred).numpy(), 0.0)

    def decide_forecasts(self, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(replicas, expected_cost)`` ``[N, horizon]`` for forecasts in tokens."""
        y = torch.as_tensor(np.asarray(forecast, dtype=np.float64))
        x = self.replicas.decide(y)
        return x.numpy(), self.replicas.operating_cost(x, y).numpy()

    def decide_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(forecast_tokens, replicas)`` ``[N, horizon]`` for windows ``[N, window]``."""
        forecast = self.forecast_windows(windows)
        replicas, _ = self.decide_forecasts(forecast)
        return forecast, replicas

    def plan(self, demand: Any, start: pd.Timestamp | None = None, source: str = "history") -> Plan:
        """The plan after the history ``demand`` (tokens per slot, oldest first; ``start``:
        the time of its first slot, if known) for slots ``n + lead … n + lead + h - 1``."""
        values = self.check_history(demand, source)
        n = values.shape[0]
        forecast = self.forecast_windows(values[None, -self.window :])
        replicas, cost = self.decide_forecasts(forecast)
        slots = n + self.lead + np.arange(self.horizon)
        times = None
        if start is not None:
            step = pd.Timedelta(seconds=self.interval_s)
            times = [pd.Timestamp(start) + int(s) * step for s in slots]
        return Plan(slots, times, forecast[0], replicas[0], cost[0], self.lead, self.interval_s)


__all__ = ["MAX_TOKENS", "Plan", "Planner"]
