"""The reference diffusion model θ₀ that generative methods start from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import ConfigDict, Field, field_validator

from drdfl.data.windows import ArrayT, Scaler
from drdfl.device import resolve_device
from drdfl.diffusion.model import DiffusionModel, get_preset, read_config
from drdfl.diffusion.train import fit_series
from drdfl.errors import ModelError
from drdfl.schema import StrictModel


class ReferenceParams(StrictModel):
    """Where a generative method's reference model θ₀ comes from."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    diffusion: DiffusionModel | str | None = Field(
        None, description="reference model θ₀ or its directory; None: fit one with `preset`"
    )
    preset: str = Field("fast", description="diffusion preset when θ₀ is fitted here")
    diffusion_iterations: int | None = Field(None, ge=1)

    @field_validator("diffusion", mode="before")
    @classmethod
    def _directory(cls, v: object) -> object:
        """A directory must hold a diffusion model (its configuration is read, its weights
        are loaded when the method starts), so that a bad one fails before any training."""
        if isinstance(v, str | Path):
            try:
                read_config(v)
            except ModelError as exc:
                raise ValueError(str(exc)) from None
            return str(v)
        return v


def reference_model(
    diffusion: DiffusionModel | str | Path | None,
    series: np.ndarray,
    preset: str = "fast",
    iterations: int | None = None,
    seed: int = 0,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> DiffusionModel:
    """``diffusion`` itself, loaded from a directory, or fitted to ``series`` with ``preset``.

    ``series`` is the training series in real units; the fitted model carries its own
    scaler, so its samples map to real units like those of a model trained by
    ``drdfl diffusion train``. Fitting is seeded by ``seed`` alone (initial weights,
    batches, noise and the quality gate's draws) and ends on the preset's quality gate,
    with ``iterations`` (default: the preset's) as the most it may take; the verdict is
    :attr:`DiffusionModel.quality`. The model is returned on ``device`` (and fitted there).
    """
    if isinstance(diffusion, DiffusionModel):
        return diffusion.to(resolve_device(device))
    if diffusion is not None:
        return DiffusionModel.load(diffusion).to(resolve_device(device))
    p = get_preset(preset)
    update: dict[str, object] = {"seed": seed}
    if iterations is not None:
        update["iterations"] = iterations
    model, _ = fit_series(
        series, p.model, p.train.model_copy(update=update), progress=progress, device=device
    )
    return model


def to_training_units(model: DiffusionModel, scaler: Scaler, u: ArrayT) -> ArrayT:
    """Samples of ``model`` (its own normalized units) in the units of the training
    ``scaler``, through real units, with demand clipped at zero.

    A model without a scaler is taken to share the training scaler.
    """
    floor = float(scaler.transform(0.0))
    own = model.scaler
    if own is not None and own != scaler:
        u = scaler.transform(own.inverse_transform(u))
    return u.clamp(min=floor) if hasattr(u, "clamp") else np.maximum(u, floor)
