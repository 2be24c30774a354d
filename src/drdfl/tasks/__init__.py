"""Decision tasks: what a forecast is for, and how a decision made from it is priced.

``get_task("provisioning:paper-text")`` builds a registered task from a ``name[:preset]``
spec (``replicas:strict``: whole GPU replicas per slot); ``task_from_dict`` rebuilds one
saved with a trained model. The convex tasks (:mod:`drdfl.tasks.convex`) load cvxpy and
cvxpylayers on first use only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drdfl.errors import ConfigError
from drdfl.tasks.base import DecisionTask
from drdfl.tasks.provisioning import PRESETS, ProvisioningParams, ProvisioningTask
from drdfl.tasks.replicas import ReplicasParams, ReplicasTask

if TYPE_CHECKING:
    from drdfl.tasks.convex import ConvexTask, MultiSlotProvisioningTask

#: registry name → ``module:Class`` of the task class, imported on first use; each class
#: takes a preset name as its first argument
TASKS: dict[str, str] = {
    "provisioning": "drdfl.tasks.provisioning:ProvisioningTask",
    "multislot": "drdfl.tasks.convex:MultiSlotProvisioningTask",
    "replicas": "drdfl.tasks.replicas:ReplicasTask",
}
#: names of this package that load their module on first access
_LAZY = {"ConvexTask": "drdfl.tasks.convex", "MultiSlotProvisioningTask": "drdfl.tasks.convex"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _task_class(name: str) -> type[DecisionTask]:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_task(spec: str, **options: Any) -> DecisionTask:
    """The task named by ``spec`` (``name`` or ``name:preset``), e.g. ``provisioning:paper-text``.

    ``options`` go to the task's constructor (e.g. ``horizon=4`` for ``multislot``,
    ``max_replicas=128`` for ``replicas``). Unknown tasks, presets and options raise
    :class:`ConfigError` listing the valid ones.
    """
    name, _, preset = spec.strip().partition(":")
    cls = _task_class(name)
    try:
        return cls(preset, **options) if preset else cls(**options)
    except TypeError as exc:  # an option the task's constructor does not take
        raise ConfigError(f"task {name!r}: {exc}") from None


def task_from_dict(d: dict[str, Any]) -> DecisionTask:
    """Rebuild a task from its ``to_dict()`` output."""
    if "name" not in d:
        raise ConfigError("task dict lacks 'name'")
    return _task_class(str(d["name"])).from_dict(d)  # type: ignore[attr-defined]


__all__ = [
    "PRESETS",
    "TASKS",
    "ConvexTask",
    "DecisionTask",
    "MultiSlotProvisioningTask",
    "ProvisioningParams",
    "ProvisioningTask",
    "ReplicasParams",
    "ReplicasTask",
    "get_task",
    "task_from_dict",
]
