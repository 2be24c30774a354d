"""Training methods behind one :class:`~drdfl.methods.base.Method` interface."""

from __future__ import annotations

from typing import Any

from drdfl.errors import ConfigError
from drdfl.methods.augment import (
    CutoutAugmentMethod,
    DiffusionAugmentMethod,
    GaussianAugmentMethod,
    PerlinAugmentMethod,
)
from drdfl.methods.base import FitResult, Method, TrainingData
from drdfl.methods.dro import Chi2DROMethod, CVaRMethod, KLDROMethod
from drdfl.methods.pto import DFLMethod, MSEMethod
from drdfl.methods.threed import ThreeDLearning
from drdfl.methods.trainer import TrainedMethod
from drdfl.methods.wdro import WDROMethod

METHODS: dict[str, type[TrainedMethod]] = {
    MSEMethod.name: MSEMethod,
    DFLMethod.name: DFLMethod,
    ThreeDLearning.name: ThreeDLearning,
    KLDROMethod.name: KLDROMethod,
    CVaRMethod.name: CVaRMethod,
    Chi2DROMethod.name: Chi2DROMethod,
    WDROMethod.name: WDROMethod,
    GaussianAugmentMethod.name: GaussianAugmentMethod,
    PerlinAugmentMethod.name: PerlinAugmentMethod,
    CutoutAugmentMethod.name: CutoutAugmentMethod,
    DiffusionAugmentMethod.name: DiffusionAugmentMethod,
}


def get_method(name: str, **kwargs: Any) -> TrainedMethod:
    """Instantiate the method registered as ``name`` with constructor ``kwargs``."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ConfigError(
            f"unknown method {name!r}; valid methods: {', '.join(sorted(METHODS))}"
        ) from None
    return cls(**kwargs)


__all__ = [
    "METHODS",
    "CVaRMethod",
    "Chi2DROMethod",
    "CutoutAugmentMethod",
    "DFLMethod",
    "DiffusionAugmentMethod",
    "FitResult",
    "GaussianAugmentMethod",
    "KLDROMethod",
    "MSEMethod",
    "Method",
    "PerlinAugmentMethod",
    "ThreeDLearning",
    "TrainedMethod",
    "TrainingData",
    "WDROMethod",
    "get_method",
]
