"""The decision-task contract: what a forecast is *for*.

A task turns forecasts of demand (real units, e.g. tokens per interval) into decisions and
prices a decision against the demand that really came. Every method and metric of drdfl
talks to tasks only through this contract, so a user's own decision problem plugs in by
subclassing :class:`DecisionTask`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch


class DecisionTask(ABC):
    """A batched, differentiable decision problem over a forecast horizon.

    Shapes: forecasts and demands are ``[B, h]`` tensors in the task's ``units``; decisions
    are ``[B, d]``; costs are per-sample ``[B]``. Lower cost is better.
    """

    #: registry name, e.g. ``"provisioning"``
    name: str = "task"
    #: what the forecasts and demands measure, e.g. ``"context tokens per interval"``
    units: str = "tokens per interval"

    @abstractmethod
    def decide(self, y_hat: torch.Tensor) -> torch.Tensor:
        """The cost-minimising decision if demand were ``y_hat`` (differentiable in ``y_hat``)."""

    @abstractmethod
    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample decision loss of decision ``x`` when the demand is ``y``."""

    def optimal_cost(self, y: torch.Tensor) -> torch.Tensor:
        """Per-sample cost of the decision made with perfect foresight."""
        return self.cost(self.decide(y), y)

    def regret(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample ``cost(decide(y_hat), y) - cost(decide(y), y)`` (≥ 0 up to float error)."""
        return self.cost(self.decide(y_hat), y) - self.optimal_cost(y)

    def fit_to_data(self, demand: np.ndarray, interval_s: float) -> tuple[DecisionTask, str | None]:
        """This task made for the training ``demand`` (real units per slot of
        ``interval_s`` seconds), and a note saying what was changed for it (or ``None``).

        The default changes nothing. A task whose bounds or slot length depend on the data
        adapts here, or raises :class:`~drdfl.errors.ConfigError` naming its bounds and
        the data's when it cannot serve them.
        """
        return self, None

    def to_dict(self) -> dict[str, Any]:
        """What is needed to rebuild the task (saved with trained models)."""
        return {"name": self.name}
