"""drdfl: distributionally robust decision-focused learning (3D-Learning and baselines).

The main entry points::

    drdfl.run(drdfl.resolve_config("quick"), out="runs/quick")   # the whole pipeline
    suite = drdfl.chronological_suite("mine", drdfl.Series(values, "mine"))
    fitted = drdfl.get_method("threed").fit(suite.data, task, forecaster)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drdfl._version import __version__

# Public name -> the module that defines it. Loaded on first access (PEP 562) so that
# ``import drdfl`` and the command line do not pay for torch, cvxpy and scipy up front.
_LAZY = {
    "ExperimentConfig": "drdfl.config",
    "TrainConfig": "drdfl.methods.settings",
    "resolve_config": "drdfl.config",
    "load_series": "drdfl.data.loading",
    "Series": "drdfl.data.series",
    "ConfigError": "drdfl.errors",
    "DataError": "drdfl.errors",
    "DatasetNotFoundError": "drdfl.errors",
    "DrdflError": "drdfl.errors",
    "ModelError": "drdfl.errors",
    "Suite": "drdfl.data.suites",
    "TestSet": "drdfl.data.suites",
    "chronological_suite": "drdfl.data.suites",
    "evaluate_tests": "drdfl.evaluation.suites",
    "METHODS": "drdfl.methods",
    "get_method": "drdfl.methods",
    "build_forecaster": "drdfl.models.forecasters",
    "run": "drdfl.runner",
    "DecisionTask": "drdfl.tasks",
    "get_task": "drdfl.tasks",
}

if TYPE_CHECKING:
    from drdfl.config import ExperimentConfig, resolve_config
    from drdfl.data.loading import load_series
    from drdfl.data.series import Series
    from drdfl.data.suites import Suite, TestSet, chronological_suite
    from drdfl.errors import ConfigError, DataError, DatasetNotFoundError, DrdflError, ModelError
    from drdfl.evaluation.suites import evaluate_tests
    from drdfl.methods import METHODS, get_method
    from drdfl.methods.settings import TrainConfig
    from drdfl.models.forecasters import build_forecaster
    from drdfl.runner import run
    from drdfl.tasks import DecisionTask, get_task


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'drdfl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
