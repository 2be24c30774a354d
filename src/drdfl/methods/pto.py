"""Predict-then-optimize (``mse``) and decision-focused learning (``dfl``)."""

from __future__ import annotations

from drdfl.methods.trainer import TrainedMethod


class MSEMethod(TrainedMethod):
    """Predict-then-optimize: fit the forecaster by mean squared error, decide afterwards."""

    name = "mse"
    default_objective = "mse"


class DFLMethod(TrainedMethod):
    """Decision-focused learning: minimise the mean decision loss (as regret) on real windows."""

    name = "dfl"
