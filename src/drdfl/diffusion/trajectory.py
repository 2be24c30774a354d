"""Stored reverse-process transitions and their log-probabilities under a model.

3D-Learning reweights samples drawn from a reference model θ₀ by the likelihood ratio
``r_θ = p_θ(trajectory) / p_θ₀(trajectory)`` restricted to the last T′ reverse steps. The
sampler stores those steps (:class:`Transitions`); here they are scored, vectorised over
samples and steps with one denoiser call, and differentiably in the model's parameters.
"""

from __future__ import annotations

import math

import torch

from drdfl.diffusion.protocols import ReverseModel
from drdfl.diffusion.transitions import Transitions

__all__ = ["ReverseModel", "Transitions", "log_ratio", "step_log_probs", "trajectory_log_prob"]

_LOG_2PI = math.log(2 * math.pi)


def step_log_probs(model: ReverseModel, transitions: Transitions) -> torch.Tensor:
    """``log N(x_s; μ_θ(x_t, t), σ_t² I)`` of every stored step, ``[n, K]``.

    One denoiser call scores all ``n · K`` steps. A step whose σ is 0 (the last DDPM step
    into ``x_0``, or any DDIM step with ``eta = 0``) is deterministic, has no density, and
    gets log-probability 0: its outcome is a fixed function of its source, so it adds
    nothing to the likelihood of the stochastic choices that made the trajectory.
    """
    n, k1, length = transitions.states.shape
    k = k1 - 1
    x_t = transitions.x_t.reshape(n * k, length)
    x_s = transitions.x_prev.reshape(n * k, length)
    t = transitions.t.repeat(n)
    s = transitions.s.repeat(n)
    eps = model.eps(x_t, t)
    mean, std = model.schedule.reverse_mean_std(x_t, eps, t, s, transitions.eta)
    stochastic = std > 0
    safe_std = torch.where(stochastic, std, torch.ones_like(std))
    z = (x_s - mean) / safe_std
    per_step = -0.5 * z.square().sum(-1) - length * (safe_std.log().squeeze(-1) + 0.5 * _LOG_2PI)
    return torch.where(stochastic.squeeze(-1), per_step, torch.zeros_like(per_step)).reshape(n, k)


def trajectory_log_prob(model: ReverseModel, transitions: Transitions) -> torch.Tensor:
    """``Σ_t log N(x_{t-1}; μ_θ(x_t, t), σ_t² I)`` over the stored steps, one value per trajectory.

    Differentiable in the model's parameters; shape ``[n]``.
    """
    return step_log_probs(model, transitions).sum(dim=1)


def log_ratio(
    model: ReverseModel, ref_model: ReverseModel, transitions: Transitions
) -> torch.Tensor:
    """``log p_θ(τ) − log p_θ₀(τ)`` of each stored trajectory τ, ``[n]``.

    Gradients flow into ``model`` only; the reference is scored without a graph. For the
    same parameters the two terms are computed identically, so the ratio is exactly 1.
    """
    with torch.no_grad():
        ref = trajectory_log_prob(ref_model, transitions)
    return trajectory_log_prob(model, transitions) - ref
