"""drdfl: distributionally robust decision-focused learning (3D-Learning and baselines)."""

from __future__ import annotations

__version__ = "0.1.0"

from drdfl.data.series import Series
from drdfl.errors import ConfigError, DataError, DatasetNotFoundError, DrdflError, ModelError

__all__ = [
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "DrdflError",
    "ModelError",
    "Series",
    "__version__",
]
