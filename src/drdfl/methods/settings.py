"""The training loop's settings, shared by every method so that comparisons are fair (a
pydantic model: importing it loads no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drdfl.schema import Seed, StrictModel


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
    seed: Seed = 0
    device: str = "cpu"


__all__ = ["TrainConfig"]
