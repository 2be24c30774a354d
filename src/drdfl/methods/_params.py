"""Validation of method hyperparameters passed to constructors."""

from __future__ import annotations

from typing import Any, TypeVar

from drdfl.config import StrictModel, parse_model

ParamsT = TypeVar("ParamsT", bound=StrictModel)


def parse_params(method: str, model: type[ParamsT], **values: Any) -> ParamsT:
    """``values`` validated by ``model``; errors name the key as ``method_params.<method>.<key>``
    (where it sits in an experiment configuration) and raise :class:`ConfigError`."""
    parsed = parse_model(model, values, f"method_params.{method}")
    assert isinstance(parsed, model)
    return parsed
