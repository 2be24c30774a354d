"""The path KL between two models' reverse tails, measured on the first model's own states.

Both models run the same Gaussian reverse steps ``x_s ~ N(μ(x_t, t), σ_{t,s}² I)`` from the
same starting distribution, so the KL between their tails is a sum over steps of the KL
between two Gaussians of equal variance, averaged over the first model's trajectories:

``KL(P_θ^tail ‖ P_θ₀^tail) = E_θ Σ_k ‖μ_θ(x_k, t_k) − μ_θ₀(x_k, t_k)‖² / 2σ_k²``.

By data processing it bounds the KL between the two models' samples. Because the means
share the factor ``c_ε(t, s)`` of the predicted noise, each term is
``c_ε² ‖ε_θ − ε_θ₀‖² / 2σ²``.

A step of zero variance (the last DDPM step into ``x_0``, any DDIM step) has no density,
so its KL would be infinite for any change of mean. It is priced as if it had the forward
process's variance between its two timesteps, ``1 − ᾱ_t / ᾱ_s`` (``β_1`` for the last
DDPM step; Ho et al.'s other choice of reverse variance), so that moving the final
denoising step costs nats like every other step instead of being free or forbidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from drdfl.diffusion.samplers import run_tail

if TYPE_CHECKING:
    from drdfl.diffusion.model import DiffusionModel
    from drdfl.diffusion.schedule import NoiseSchedule


@dataclass(frozen=True)
class Tail:
    """One batch of reverse tails of a model and their per-step KL to a reference."""

    #: final states ``[n, L]`` (model space)
    samples: torch.Tensor
    #: every visited state ``[n, K + 1, L]`` (model space)
    states: torch.Tensor
    #: ``‖μ_θ − μ_θ₀‖² / 2σ²`` of every step ``[n, K]``
    step_kl: torch.Tensor

    @property
    def kl(self) -> torch.Tensor:
        """Path KL of each trajectory ``[n]`` (nats)."""
        return self.step_kl.sum(dim=1)


def kl_step_coefficients(
    schedule: NoiseSchedule, timesteps: torch.Tensor, eta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_ε, σ²)`` of every step of ``timesteps`` ``[K]`` (float64): the mean's factor
    on the predicted noise and the variance the KL is priced with (zero-variance steps
    take ``1 − ᾱ_t / ᾱ_s``, see the module docstring)."""
    t, s = timesteps[:-1], timesteps[1:]
    _, c_eps, var = schedule.step_coefficients(t, s, eta)
    ab_t, ab_s = schedule.alpha_bars[t], schedule.alpha_bars[s]
    priced = torch.where(var > 0, var, 1 - ab_t / ab_s)
    return c_eps, priced


def tail_with_kl(
    model: DiffusionModel,
    reference: DiffusionModel,
    x_start: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    eta: float = 1.0,
) -> Tail:
    """``model``'s reverse tail from ``x_start [n, L]`` through ``timesteps`` with ``noise
    [n, K, L]``, and the KL of every step to ``reference`` on ``model``'s own states.

    Differentiable in ``model``'s parameters (samples and KL); the reference is evaluated
    without a graph. For ``model is reference`` the KL is exactly 0.
    """
    c_eps, var = kl_step_coefficients(model.schedule, timesteps, eta)
    weight = (c_eps.square() / (2 * var)).to(device=x_start.device, dtype=x_start.dtype)
    terms: list[torch.Tensor] = []

    def price(k: int, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, eps: torch.Tensor):
        with torch.no_grad():
            ref = eps if reference is model else reference.eps(x_t, t.expand(x_t.shape[0]))
        terms.append(weight[k] * (eps - ref).square().sum(dim=-1))

    samples, states = run_tail(model.eps, model.schedule, x_start, timesteps, noise, eta, price)
    return Tail(samples, states, torch.stack(terms, dim=1))


@torch.no_grad()
def path_kl(
    model: DiffusionModel,
    reference: DiffusionModel,
    x_start: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    eta: float = 1.0,
) -> torch.Tensor:
    """Path KL ``[n]`` (nats) of ``model``'s tails from ``x_start`` to ``reference``'s."""
    return tail_with_kl(model, reference, x_start, timesteps, noise, eta).kl
