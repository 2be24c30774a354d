"""drdfl: distributionally robust decision-focused learning (3D-Learning and baselines).

The main entry points::

    drdfl.run(drdfl.resolve_config("quick"), out="runs/quick")   # the whole pipeline
    suite = drdfl.chronological_suite("mine", drdfl.Series(values, "mine"))
    fitted = drdfl.get_method("threed").fit(suite.data, task, forecaster)
"""

from __future__ import annotations

__version__ = "0.1.0"

from drdfl.config import ExperimentConfig, TrainConfig, resolve_config
from drdfl.data.loading import load_series
from drdfl.data.series import Series
from drdfl.errors import ConfigError, DataError, DatasetNotFoundError, DrdflError, ModelError
from drdfl.evaluation.suites import Suite, TestSet, chronological_suite, evaluate_tests
from drdfl.methods import METHODS, get_method
from drdfl.models.forecasters import build_forecaster
from drdfl.runner import run
from drdfl.tasks import DecisionTask, get_task

__all__ = [
    "METHODS",
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "DecisionTask",
    "DrdflError",
    "ExperimentConfig",
    "ModelError",
    "Series",
    "Suite",
    "TestSet",
    "TrainConfig",
    "__version__",
    "build_forecaster",
    "chronological_suite",
    "evaluate_tests",
    "get_method",
    "get_task",
    "load_series",
    "resolve_config",
    "run",
]
