"""The ``Method`` contract: every training method turns training data into a forecaster.

Methods differ only in the distribution they train against (real windows, augmented
windows, adversarial windows, diffusion samples) and in how per-sample losses are
aggregated; everything else (task, forecaster, optimiser settings) is shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from drdfl.data.training import TrainingData
from drdfl.schema import StrictModel, parse_model
from drdfl.tasks.base import DecisionTask

__all__ = ["FitResult", "Method"]


@dataclass
class FitResult:
    """A fitted forecaster plus the record of how it was fitted."""

    forecaster: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0
    #: method-specific artifacts, e.g. ``{"worst_case": np.ndarray [n, L]}``
    artifacts: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """A training method; hyperparameters go to the constructor, data to :meth:`fit`."""

    name: ClassVar[str] = "method"

    @classmethod
    def check_data(
        cls, params: Any, window: int, horizon: int, lead: int, interval_s: float
    ) -> None:
        """Raise a :class:`~drdfl.errors.ConfigError` naming the key if the method cannot run
        on windows of this shape (called before any work); every shape by default."""
        return None

    #: the pydantic model of the method's hyperparameters
    Params: ClassVar[type[StrictModel]]

    @classmethod
    def parse_params(cls, params: StrictModel | None, kwargs: dict[str, Any]) -> Any:
        """The method's validated parameters: ``params`` already validated (as the runner
        carries them), or the keyword arguments a user gives (errors name the key as
        ``method_params.<name>.<key>``); not both."""
        if params is not None:
            if kwargs:
                raise TypeError(f"{cls.name}: give the parameters as params= or as keywords")
            if not isinstance(params, cls.Params):
                raise TypeError(f"{cls.name}: params must be a {cls.Params.__name__}")
            return params
        return parse_model(cls.Params, kwargs, f"method_params.{cls.name}")

    @classmethod
    def flat_params(cls, params: Any) -> dict[str, Any]:
        """Every parameter of a validated parameter model, as a user gives it (the keys of
        ``method_params.<name>``)."""
        return dict(params.model_dump())

    @abstractmethod
    def fit(self, data: TrainingData, task: DecisionTask, forecaster: nn.Module) -> FitResult:
        """Train ``forecaster`` (in place) and return it with its training record."""
