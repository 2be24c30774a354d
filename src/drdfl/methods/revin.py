"""``revin-dfl``: decision-focused learning with the forecaster behind RevIN."""

from __future__ import annotations

import copy

from torch import nn

from drdfl.data.training import TrainingData
from drdfl.errors import ModelError
from drdfl.methods.base import FitResult
from drdfl.methods.pto import DFLMethod
from drdfl.models.forecasters import Forecaster, with_revin
from drdfl.tasks.base import DecisionTask


class RevINDFLMethod(DFLMethod):
    """DFL on the real windows with the given forecaster wrapped in reversible instance
    normalization (:class:`~drdfl.models.forecasters.RevINForecaster`) at fit time.

    The forecast follows a window's level and spread, so a level shift at test time is a
    change of units to it rather than an unseen input. The forecaster passed in is copied,
    not changed; the fitted (wrapped) one is in the result, and its spec records the
    wrapper (``"revin": true``) so a saved model rebuilds as trained. A forecaster already
    wrapped (``revin-mlp``) is trained as it is.
    """

    name = "revin-dfl"

    def fit(self, data: TrainingData, task: DecisionTask, forecaster: nn.Module) -> FitResult:
        if not isinstance(forecaster, Forecaster):
            raise ModelError(
                f"{self.name}: needs a drdfl forecaster to wrap, got {type(forecaster).__name__}"
            )
        return super().fit(data, task, with_revin(copy.deepcopy(forecaster)))


__all__ = ["RevINDFLMethod"]
