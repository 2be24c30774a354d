"""The untrained baselines (``naive-*``): the rules a capacity planner already runs.

Each method returns a :class:`~drdfl.models.naive.NaiveForecaster` in place of the
forecaster it is given; nothing is trained by gradient. What a rule has to choose is
chosen on the training windows by the same decision loss every other method minimises,
over a fixed grid (one vectorised pass per grid):

* ``naive-last`` — persistence; ``naive-mean`` — the window's mean; nothing to choose;
* ``naive-ets`` — simple exponential smoothing over the window, its smoothing constant α
  chosen by training regret (or given);
* ``naive-seasonal`` — the value one period earlier (default: one day at the data's
  interval), for windows long enough to hold it;
* ``naive-scaled`` — the best of last, mean and ETS on the validation windows, times the
  one multiple of demand that minimises training regret.

A general forecasting library (statsforecast, say) fits a model per series; here a rule
must act on every window of a batch and be chosen by decision regret over all of them,
which its fitting does not do, and the rules are one matrix product each.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from drdfl.data.training import TrainingData
from drdfl.errors import ConfigError
from drdfl.methods.base import FitResult, Method
from drdfl.methods.losses import sample_losses
from drdfl.models.naive import AnchoredForecaster, NaiveForecaster, check_window, rule_weights
from drdfl.schema import StrictModel
from drdfl.tasks.base import DecisionTask

#: smoothing constants tried for ``ets``
ALPHA_GRID = torch.linspace(0.02, 1.0, 50)
#: multiples of demand tried for ``naive-scaled`` (a second, finer pass follows)
SCALE_GRID = torch.exp(torch.linspace(math.log(0.25), math.log(4.0), 81))
#: windows a choice is made on at most (evenly spaced in time)
MAX_FIT_WINDOWS = 50_000
#: predictions priced per chunk when a grid is scored
_CHUNK = 2_000_000
_DAY_S = 86_400.0


def _evenly(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[0] <= n:
        return x, y
    keep = torch.linspace(0, x.shape[0] - 1, n).round().long()
    return x[keep], y[keep]


def grid_regret(
    predictions: torch.Tensor, y: torch.Tensor, task: DecisionTask, scaler: Any
) -> torch.Tensor:
    """Mean regret ``[G]`` of each of ``G`` candidate forecasts ``[G, N, h]`` (normalized)
    against the truth ``y [N, h]``."""
    g, n, h = predictions.shape
    per = max(1, _CHUNK // max(n * h, 1))
    out = []
    for i in range(0, g, per):
        part = predictions[i : i + per]
        truth = y.unsqueeze(0).expand_as(part).reshape(-1, h)
        losses = sample_losses(part.reshape(-1, h), truth, task, scaler, "regret")
        out.append(losses.reshape(part.shape[0], n).mean(dim=1))
    return torch.cat(out)


@torch.no_grad()
def fit_alpha(
    x: torch.Tensor, y: torch.Tensor, task: DecisionTask, scaler: Any
) -> tuple[float, float]:
    """The smoothing constant of :data:`ALPHA_GRID` with the lowest mean regret on the
    windows ``(x, y)``, and that regret."""
    weights = torch.stack(
        [rule_weights("ets", x.shape[1], y.shape[1], float(a)) for a in ALPHA_GRID]
    )
    regret = grid_regret(torch.einsum("nw,ghw->gnh", x, weights), y, task, scaler)
    best = int(regret.argmin())
    return float(ALPHA_GRID[best]), float(regret[best])


@torch.no_grad()
def fit_scale(
    rule: torch.Tensor, y: torch.Tensor, task: DecisionTask, scaler: Any, zero: float
) -> tuple[float, float]:
    """The multiple of demand with the lowest mean regret when applied to the forecasts
    ``rule [N, h]`` (around zero demand ``zero``), on a coarse then a fine log grid."""

    def best_of(grid: torch.Tensor) -> tuple[float, float]:
        candidates = zero + grid[:, None, None] * (rule - zero)
        regret = grid_regret(candidates, y, task, scaler)
        i = int(regret.argmin())
        return float(grid[i]), float(regret[i])

    coarse, _ = best_of(SCALE_GRID)
    step = float(SCALE_GRID[1] / SCALE_GRID[0])
    fine = torch.exp(torch.linspace(math.log(coarse / step), math.log(coarse * step), 21))
    return best_of(fine)


class NaiveParams(StrictModel):
    """A rule without constants to choose."""


class ETSParams(StrictModel):
    """Simple exponential smoothing."""

    alpha: float | None = Field(
        None, gt=0, le=1, description="smoothing constant (None: chosen by training regret)"
    )


class SeasonalParams(StrictModel):
    """Seasonal naive."""

    period: int | None = Field(
        None, ge=1, description="period in slots (None: one day at the data's interval)"
    )


class ScaledParams(StrictModel):
    """The decision-optimal multiple of a rule."""

    rule: Literal["auto", "last", "mean", "ets"] = Field(
        "auto", description="the rule to scale (auto: the best on the validation windows)"
    )


class NaiveMethod(Method):
    """An untrained rule, its constants chosen on the training windows by decision loss.

    Built like every method (training settings, checkpoint, progress, the method's own
    parameters); :meth:`fit` ignores the forecaster it is given and returns the rule.
    """

    name = "naive"
    #: the rule this method applies
    rule: ClassVar[str] = "last"
    Params: ClassVar[type[StrictModel]] = NaiveParams

    def __init__(
        self,
        train: Any = None,
        checkpoint: str | Path | None = None,
        progress: bool = False,
        params: StrictModel | None = None,
        **kwargs: Any,
    ) -> None:
        self.train = train
        self.params: Any = self.parse_params(params, kwargs)

    @classmethod
    def check_data(
        cls, params: Any, window: int, horizon: int, lead: int, interval_s: float
    ) -> None:
        for rule in cls.rules(params):
            period = seasonal_period(params.period, interval_s) if rule == "seasonal" else None
            check_window(rule, window, f"methods: {cls.name}", lead, horizon, period)

    @classmethod
    def rules(cls, params: Any) -> list[str]:
        """The rules the method may apply with ``params``."""
        return [cls.rule]

    def constants(
        self, data: TrainingData, task: DecisionTask, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, Any]:
        """The rule and constants of the :class:`NaiveForecaster` (``rule``, ``alpha``, …)."""
        return {"rule": self.rule}

    def fit(self, data: TrainingData, task: DecisionTask, forecaster: nn.Module) -> FitResult:
        start = time.perf_counter()
        window, horizon = data.train.window, data.train.horizon
        lead = data.train.lead
        x, y = _evenly(*data.train.tensors(), MAX_FIT_WINDOWS)
        self.check_data(self.params, window, horizon, lead, data.interval_s)
        constants = self.constants(data, task, x, y)
        model = NaiveForecaster(window, horizon, lead=lead, **constants)
        model.eval()
        row: dict[str, float] = {
            "epoch": 0,
            "train_loss": self._regret(model, x, y, task, data),
            "val_regret": math.nan,
            "lr": math.nan,
        }
        if data.val is not None and len(data.val):
            row["val_regret"] = self._regret(
                model, *_evenly(*data.val.tensors(), MAX_FIT_WINDOWS), task, data
            )
        for key in ("alpha", "scale"):
            if isinstance(constants.get(key), float):
                row[key] = constants[key]
        seconds = time.perf_counter() - start
        row["time_s"] = seconds
        arts = {"rule": constants["rule"], "best_epoch": 0, "selection": "untrained rule"}
        arts.update({k: v for k, v in constants.items() if k != "rule" and v is not None})
        return FitResult(model, [row], seconds, arts)

    @staticmethod
    @torch.no_grad()
    def _regret(
        model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: DecisionTask, data: TrainingData
    ) -> float:
        return float(sample_losses(model(x), y, task, data.scaler, "regret").mean())


class NaiveLast(NaiveMethod):
    """Persistence: the window's last value for every horizon slot."""

    name = "naive-last"
    rule = "last"


class NaiveMean(NaiveMethod):
    """The window's mean for every horizon slot."""

    name = "naive-mean"
    rule = "mean"


class NaiveETS(NaiveMethod):
    """Simple exponential smoothing over the window; α chosen by training regret."""

    name = "naive-ets"
    rule = "ets"
    Params = ETSParams

    def constants(
        self, data: TrainingData, task: DecisionTask, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, Any]:
        alpha = self.params.alpha
        if alpha is None:
            alpha, _ = fit_alpha(x, y, task, data.scaler)
        return {"rule": "ets", "alpha": float(alpha)}


class NaiveSeasonal(NaiveMethod):
    """The value one period earlier (default period: one day at the data's interval)."""

    name = "naive-seasonal"
    rule = "seasonal"
    Params = SeasonalParams

    def constants(
        self, data: TrainingData, task: DecisionTask, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, Any]:
        return {"rule": "seasonal", "period": seasonal_period(self.params.period, data.interval_s)}


class NaiveScaled(NaiveMethod):
    """The best rule on the validation windows, times its decision-optimal multiple."""

    name = "naive-scaled"
    Params = ScaledParams

    @classmethod
    def rules(cls, params: Any) -> list[str]:
        return ["last"] if params.rule == "auto" else [params.rule]

    def constants(
        self, data: TrainingData, task: DecisionTask, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, Any]:
        window, horizon = x.shape[1], y.shape[1]
        rules = ["last", "mean", "ets"] if self.params.rule == "auto" else [self.params.rule]
        rules = [r for r in rules if window >= 2 or r == "last"]
        alpha = fit_alpha(x, y, task, data.scaler)[0] if "ets" in rules else None
        if len(rules) > 1:
            xv, yv = x, y
            if data.val is not None and len(data.val):
                xv, yv = _evenly(*data.val.tensors(), MAX_FIT_WINDOWS)
            weights = torch.stack(
                [rule_weights(r, window, horizon, alpha if r == "ets" else None) for r in rules]
            )
            regret = grid_regret(torch.einsum("nw,ghw->gnh", xv, weights), yv, task, data.scaler)
            rules = [rules[int(regret.argmin())]]
        rule = rules[0]
        zero = float(data.scaler.transform(0.0))
        forecast = x @ rule_weights(rule, window, horizon, alpha if rule == "ets" else None).T
        scale, _ = fit_scale(forecast, y, task, data.scaler, zero)
        return {
            "rule": rule,
            "alpha": alpha if rule == "ets" else None,
            "scale": scale,
            "zero": zero,
        }


@torch.no_grad()
def calibrate_anchor(
    forecaster: nn.Module, x: torch.Tensor, y: torch.Tensor, task: DecisionTask, scaler: Any
) -> float | None:
    """Choose the smoothing constant of an ``ets`` anchor that has none yet, by training
    regret on ``(x, y)`` (as ``naive-ets`` does); returns it (``None``: nothing to choose)."""
    from drdfl.models.forecasters import RevINForecaster

    inner = forecaster.inner if isinstance(forecaster, RevINForecaster) else forecaster
    if not isinstance(inner, AnchoredForecaster) or inner.anchor != "ets" or inner.alpha:
        return None
    xs, ys = _evenly(x, y, MAX_FIT_WINDOWS)
    alpha, _ = fit_alpha(xs.to(inner.weights.device), ys.to(inner.weights.device), task, scaler)
    inner.set_alpha(alpha)
    return alpha


def seasonal_period(period: int | None, interval_s: float) -> int:
    """``period``, or the slots of one day at ``interval_s`` seconds per slot."""
    if period is not None:
        return period
    slots = _DAY_S / interval_s
    if abs(slots - round(slots)) > 1e-6:
        raise ConfigError(
            f"method_params.naive-seasonal.period: one day is not a whole number of "
            f"{interval_s:g}-s slots; give the period in slots"
        )
    return round(slots)


__all__ = [
    "ALPHA_GRID",
    "SCALE_GRID",
    "NaiveETS",
    "NaiveLast",
    "NaiveMean",
    "NaiveMethod",
    "NaiveScaled",
    "NaiveSeasonal",
    "calibrate_anchor",
    "fit_alpha",
    "fit_scale",
    "grid_regret",
    "seasonal_period",
]
