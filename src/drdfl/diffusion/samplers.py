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

3D-Learning's adversary only runs the last reverse steps: :func:`states_at` draws the
states at a timestep T′ by deterministic DDIM (a cheap pool of starting points),
:func:`run_tail` runs the steps from T′ to 0 with given noise, differentiably (a
pathwise gradient; common random numbers for comparing two models).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.diffusion.transitions import Transitions
from drdfl.errors import ConfigError
from drdfl.seeding import randn

if TYPE_CHECKING:
    from drdfl.diffusion.protocols import TailModel

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


def tail_timesteps(t_start: int, steps: int) -> torch.Tensor:
    """``steps + 1`` timesteps evenly spaced from ``t_start`` down to 0 (descending)."""
    if not 1 <= steps <= t_start:
        raise ConfigError(f"a tail from t = {t_start} takes 1..{t_start} steps, got {steps}")
    return torch.linspace(t_start, 0, steps + 1, dtype=torch.float64).round().long()


@torch.no_grad()
def states_at(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    t_stop: int,
    steps: int,
) -> torch.Tensor:
    """States at timestep ``t_stop`` reached from ``x_T`` by deterministic DDIM in
    ``steps`` steps: a cheap pool of starting points for reverse tails, whose marginal
    approximates ``q(x_{t_stop})`` without running every step above it."""
    T = schedule.T
    if not 0 <= t_stop < T:
        raise ConfigError(f"t_stop must be in 0..{T - 1}, got {t_stop}")
    steps = min(steps, T - t_stop)
    timesteps = torch.linspace(T, t_stop, steps + 1, dtype=torch.float64).round().long()
    ddim = get_sampler("ddim")
    x = x_T
    for t, s in itertools.pairwise(timesteps):
        x = ddim.step(schedule, x, denoiser(x, t.expand(x.shape[0])), t, s)
    return x


StepHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
"""Called as ``hook(k, x_t, t, s, eps)`` for every step ``k`` of :func:`run_tail`."""


def run_tail(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    x_start: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    eta: float = 1.0,
    on_step: StepHook | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reverse steps ``timesteps[0] → … → 0`` from ``x_start [n, L]`` with the given
    standard-normal ``noise [n, K, L]`` for the ``K`` steps (a step of zero variance
    ignores its noise).

    Returns the final states ``[n, L]`` and every visited state ``[n, K + 1, L]``, all in
    model space and differentiable in the denoiser's parameters (the reparameterisation
    trick: a pathwise gradient through the sampled tail).
    """
    k = timesteps.shape[0] - 1
    if noise.shape[:2] != (x_start.shape[0], k):
        raise ConfigError(
            f"tail noise of shape {tuple(noise.shape)} does not match {x_start.shape[0]} "
            f"starts and {k} steps"
        )
    x = x_start
    states = [x]
    for i in range(k):
        t, s = timesteps[i], timesteps[i + 1]
        eps = denoiser(x, t.expand(x.shape[0]))
        if on_step is not None:
            on_step(i, x, t, s, eps)
        mean, std = schedule.reverse_mean_std(x, eps, t, s, eta)
        x = mean + std * noise[:, i]
        states.append(x)
    return x, torch.stack(states, dim=1)


def tail_with_noise(
    model: TailModel, transitions: Transitions, noise: torch.Tensor
) -> torch.Tensor:
    """The model's normalized samples from the stored trajectories' first states with the
    given noise for each stored step ``[n, K, L]``: differentiable in the model's
    parameters."""
    x, _ = run_tail(
        model.eps,
        model.schedule,
        transitions.states[:, 0],
        transitions.timesteps,
        noise,
        transitions.eta,
    )
    return model.from_model_space(x)


@torch.no_grad()
def resample_tail(
    model: TailModel, transitions: Transitions, generator: torch.Generator
) -> torch.Tensor:
    """Fresh samples of ``model`` that share the stored trajectories' states at their first
    stored timestep: the model runs only the stored (last) steps, ancestrally."""
    shape = (len(transitions), transitions.n_steps, transitions.states.shape[-1])
    noise = torch.randn(shape, generator=generator).to(transitions.states.device)
    return tail_with_noise(model, transitions, noise)
