"""Samplers: which timesteps the reverse process visits and how one step goes.

In the diffusers style, sampling is a loop over a sampler's :meth:`Sampler.step` and the
denoiser never knows which sampler runs it. We write the step ourselves instead of using
diffusers' ``DDPMScheduler``/``DDIMScheduler``: 3D-Learning scores *stored* transitions
``(x_t, x_s)`` under a changing θ, which needs the Gaussian mean and standard deviation of
a step as a differentiable, vectorised function of a batch of (t, s) pairs
(:meth:`NoiseSchedule.reverse_mean_std`); diffusers' ``step`` takes one scalar timestep,
draws the noise itself and returns only the next sample, so scoring with it would mean
one call per (sample, step). Both samplers here share that one formula, so what is
sampled and what is scored cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.diffusion.transitions import Transitions
from drdfl.errors import ConfigError
from drdfl.seeding import randn

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Predicts the noise ``ε`` from a batch ``x_t [B, L]`` and its timesteps ``t [B]``."""

SAMPLER_NAMES = ("ddpm", "ddim")


@dataclass(frozen=True)
class Sampler:
    """A reverse-process rule of the DDIM family with stochasticity ``eta``.

    ``ddpm`` (``eta = 1``, every step by default) is ancestral sampling from the DDPM
    posterior; ``ddim`` (``eta = 0``, ``default_steps`` by default) is the fast
    deterministic sampler of Song et al. (2021).
    """

    name: str
    eta: float
    default_steps: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"sampler {self.name!r}: eta must lie in [0, 1], got {self.eta}")

    def timesteps(self, T: int, steps: int | None = None) -> torch.Tensor:
        """The visited timesteps ``[K + 1]``, from ``T`` down to 0 (evenly spaced)."""
        k = steps if steps is not None else min(self.default_steps or T, T)
        if not isinstance(k, int) or not 1 <= k <= T:
            raise ConfigError(f"sampler {self.name!r}: steps must be in 1..T={T}, got {steps!r}")
        return torch.linspace(T, 0, k + 1, dtype=torch.float64).round().long()

    def step(
        self,
        schedule: NoiseSchedule,
        x_t: torch.Tensor,
        eps: torch.Tensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One draw of ``x_s`` given ``x_t`` and the predicted noise ``eps``."""
        mean, std = schedule.reverse_mean_std(x_t, eps, t, s, self.eta)
        if self.eta == 0.0:
            return mean
        return mean + std * randn(x_t.shape, generator, x_t.device, x_t.dtype)


def get_sampler(name: str, eta: float | None = None) -> Sampler:
    """The sampler called ``name`` (``ddpm`` or ``ddim``), optionally with another ``eta``."""
    if name == "ddpm":
        return Sampler("ddpm", 1.0 if eta is None else eta)
    if name == "ddim":
        return Sampler("ddim", 0.0 if eta is None else eta, default_steps=50)
    raise ConfigError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}")


@torch.no_grad()
def run_reverse(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    sampler: Sampler,
    x_T: torch.Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    keep_last: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, Transitions | None]:
    """Run the reverse process from ``x_T [B, L]`` to ``x_0``.

    With ``keep_last = K > 0`` also returns the last ``K`` transitions of every trajectory
    (see :class:`Transitions`).
    """
    timesteps = sampler.timesteps(schedule.T, steps)
    n_steps = timesteps.shape[0] - 1
    if not 0 <= keep_last <= n_steps:
        raise ConfigError(
            f"keep_last must be in 0..{n_steps} (the sampler's steps), got {keep_last}"
        )
    batch = x_T.shape[0]
    x = x_T
    kept: list[torch.Tensor] = []
    first_kept = n_steps - keep_last
    for i in tqdm(range(n_steps), desc=f"sampling ({sampler.name})", disable=not progress):
        t, s = timesteps[i], timesteps[i + 1]
        if keep_last and i >= first_kept:
            kept.append(x)
        eps = denoiser(x, t.expand(batch))
        x = sampler.step(schedule, x, eps, t, s, generator)
    if not keep_last:
        return x, None
    kept.append(x)
    return x, Transitions(torch.stack(kept, dim=1), timesteps[first_kept:].clone(), sampler.eta)
