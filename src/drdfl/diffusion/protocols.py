"""What the diffusion functions need of a model, as protocols: samplers, trajectory
scoring and divergences take any model that has these, and never import the model class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from drdfl.diffusion.schedule import NoiseSchedule


class ReverseModel(Protocol):
    """What scoring a transition needs of a model: its noise prediction and its schedule."""

    schedule: NoiseSchedule

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


class TailModel(ReverseModel, Protocol):
    """What running reverse steps to a sample needs: also the map out of model space."""

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor: ...


__all__ = ["ReverseModel", "TailModel"]
