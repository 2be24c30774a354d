"""Per-sample training losses in the task's real units."""

from __future__ import annotations

import torch

from drdfl.data.windows import Scaler
from drdfl.tasks.base import DecisionTask

OBJECTIVES = ("regret", "decision", "mse")


def sample_losses(
    pred: torch.Tensor,
    y: torch.Tensor,
    task: DecisionTask,
    scaler: Scaler,
    objective: str = "regret",
) -> torch.Tensor:
    """Per-sample loss ``[B]`` of normalized forecasts ``pred`` against normalized truth ``y``.

    ``regret`` and ``decision`` have the same gradient in the forecaster; they differ in
    level, which matters to methods that reweight samples (DRO) by their loss.
    """
    if objective == "mse":
        return (pred - y).pow(2).mean(dim=-1)
    y_hat = scaler.inverse_transform(pred)
    y_true = scaler.inverse_transform(y)
    if objective == "regret":
        return task.regret(y_hat, y_true)
    if objective == "decision":
        return task.cost(task.decide(y_hat), y_true)
    raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
