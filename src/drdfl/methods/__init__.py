"""Training methods behind one :class:`~drdfl.methods.base.Method` interface.

The method classes load on first use; :mod:`drdfl.methods.registry` holds every fact
about them (names, order, styles, parameter models, history columns).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drdfl.methods.registry import METHODS, get_spec

if TYPE_CHECKING:
    from drdfl.data.training import TrainingData
    from drdfl.methods.augment import (
        BurstAugmentMethod,
        CutoutAugmentMethod,
        DiffusionAugmentMethod,
        GaussianAugmentMethod,
        LevelAugmentMethod,
        PerlinAugmentMethod,
    )
    from drdfl.methods.base import FitResult, Method
    from drdfl.methods.dro import Chi2DROMethod, CVaRMethod, KLDROMethod
    from drdfl.methods.naive import (
        NaiveETS,
        NaiveLast,
        NaiveMean,
        NaiveMethod,
        NaiveScaled,
        NaiveSeasonal,
    )
    from drdfl.methods.pto import DFLMethod, MSEMethod
    from drdfl.methods.revin import RevINDFLMethod
    from drdfl.methods.threed import ThreeDLearning
    from drdfl.methods.trainer import TrainedMethod
    from drdfl.methods.wdro import WDROMethod

_LAZY = {
    "FitResult": "drdfl.methods.base",
    "Method": "drdfl.methods.base",
    "TrainingData": "drdfl.data.training",
    "TrainedMethod": "drdfl.methods.trainer",
    "MSEMethod": "drdfl.methods.pto",
    "DFLMethod": "drdfl.methods.pto",
    "ThreeDLearning": "drdfl.methods.threed",
    "KLDROMethod": "drdfl.methods.dro",
    "CVaRMethod": "drdfl.methods.dro",
    "Chi2DROMethod": "drdfl.methods.dro",
    "WDROMethod": "drdfl.methods.wdro",
    "GaussianAugmentMethod": "drdfl.methods.augment",
    "PerlinAugmentMethod": "drdfl.methods.augment",
    "CutoutAugmentMethod": "drdfl.methods.augment",
    "DiffusionAugmentMethod": "drdfl.methods.augment",
    "LevelAugmentMethod": "drdfl.methods.augment",
    "BurstAugmentMethod": "drdfl.methods.augment",
    "RevINDFLMethod": "drdfl.methods.revin",
    "NaiveMethod": "drdfl.methods.naive",
    "NaiveLast": "drdfl.methods.naive",
    "NaiveMean": "drdfl.methods.naive",
    "NaiveETS": "drdfl.methods.naive",
    "NaiveScaled": "drdfl.methods.naive",
    "NaiveSeasonal": "drdfl.methods.naive",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_method(name: str, **kwargs: Any) -> Method:
    """The method registered as ``name``, built with constructor ``kwargs`` (``train``,
    ``checkpoint``, ``progress`` and the method's own hyperparameters)."""
    return get_spec(name).cls(**kwargs)


__all__ = [
    "METHODS",
    "BurstAugmentMethod",
    "CVaRMethod",
    "Chi2DROMethod",
    "CutoutAugmentMethod",
    "DFLMethod",
    "DiffusionAugmentMethod",
    "FitResult",
    "GaussianAugmentMethod",
    "KLDROMethod",
    "LevelAugmentMethod",
    "MSEMethod",
    "Method",
    "NaiveETS",
    "NaiveLast",
    "NaiveMean",
    "NaiveMethod",
    "NaiveScaled",
    "NaiveSeasonal",
    "PerlinAugmentMethod",
    "RevINDFLMethod",
    "ThreeDLearning",
    "TrainedMethod",
    "TrainingData",
    "WDROMethod",
    "get_method",
]
