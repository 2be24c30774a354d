"""The denoising score-matching loss of a DDPM (ε-prediction, Ho et al. 2020).

``J(θ, S) = E ‖ε_θ(sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε, t) − ε‖²`` over ``x_0 ∈ S``,
``t ~ U{t_lo..t_hi}`` and ``ε ~ N(0, I)``, averaged over slots. 3D-Learning constrains it
on the first T′ (low-noise) timesteps only, hence the optional ``t_range``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.errors import ConfigError
from drdfl.seeding import randn

if TYPE_CHECKING:
    from drdfl.diffusion.model import DiffusionModel


def check_t_range(t_range: tuple[int, int] | None, T: int) -> tuple[int, int]:
    """``t_range`` (inclusive, 1-based) validated against ``T``; ``None`` means ``(1, T)``."""
    if t_range is None:
        return 1, T
    lo, hi = (int(v) for v in t_range)
    if not 1 <= lo <= hi <= T:
        raise ConfigError(f"t_range must satisfy 1 <= lo <= hi <= T={T}, got {tuple(t_range)}")
    return lo, hi


def denoising_loss(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t_range: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean squared error of the predicted noise on clean segments ``x0 [B, L]`` (model space).

    One timestep per segment, uniform on ``t_range`` (inclusive; default all of 1..T).
    Returns a differentiable scalar.
    """
    lo, hi = check_t_range(t_range, schedule.T)
    batch = x0.shape[0]
    where = generator.device if generator is not None else None
    t = torch.randint(lo, hi + 1, (batch,), generator=generator, device=where)
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    x_t = schedule.add_noise(x0, noise, t)
    return (denoiser(x_t, t) - noise).square().mean()


def score_matching_loss(
    model: DiffusionModel,
    segments: torch.Tensor,
    t_range: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``J(θ, S)`` of ``model`` on normalized segments ``[B, L]``, differentiable in θ.

    ``t_range=(1, T′)`` restricts it to the first T′ low-noise timesteps.
    """
    segments = torch.as_tensor(segments, dtype=torch.float32)
    if segments.ndim != 2 or segments.shape[1] != model.segment_length:
        raise ConfigError(
            f"score_matching_loss: expected segments [B, {model.segment_length}], "
            f"got {tuple(segments.shape)}"
        )
    return denoising_loss(
        model.eps, model.schedule, model.to_model_space(segments), t_range, generator
    )
