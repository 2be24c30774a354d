"""Typed configuration: validated pydantic models with helpful errors.

Every setting lives in a model here; unknown keys, wrong types and out-of-range values
are rejected with the key's dotted path and what is allowed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drdfl.errors import ConfigError


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainConfig(StrictModel):
    """How a forecaster is optimised; shared by every method so comparisons are fair."""

    epochs: int = Field(30, ge=1, description="passes over the training distribution")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = Field(10, ge=1, description="epochs per decay with scheduler='step'")
    gamma: float = Field(0.5, gt=0, le=1, description="decay factor with scheduler='step'")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm (None: off)")
    patience: int | None = Field(
        8, ge=1, description="early stopping: epochs without validation improvement"
    )
    objective: Literal["regret", "decision", "mse"] = Field(
        "regret", description="per-sample loss: decision regret, raw decision loss, or MSE"
    )
    max_val_windows: int = Field(20000, ge=1, description="validation windows scored per epoch")
    seed: int = 0
    device: str = "cpu"


def validation_message(exc: ValidationError, root: str = "") -> str:
    """One readable line per problem: ``path.to.key: what is wrong (got …)``."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (root, *err["loc"]) if p != "")
        got = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path or '<root>'}: {msg} (got {got!r})")
    return "; ".join(lines)


def parse_model(model: type[StrictModel], data: dict, root: str = "") -> StrictModel:
    """Validate ``data`` into ``model``; raise :class:`ConfigError` naming the key paths."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, root)) from None
