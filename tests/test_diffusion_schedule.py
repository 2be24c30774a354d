"""Noise schedules and sampler steps against the closed forms of Ho et al. and Song et al."""

from __future__ import annotations

import math

import pytest
import torch

from drdfl.diffusion.samplers import Sampler, get_sampler
from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.errors import ConfigError


def test_linear_schedule_endpoints_and_products() -> None:
    s = NoiseSchedule.linear(500, 0.05, 0.1)
    assert s.T == 500
    assert s.betas[0] == 0 and s.alpha_bars[0] == 1
    assert s.betas[1].item() == pytest.approx(0.05)
    assert s.betas[500].item() == pytest.approx(0.1)
    expected = math.prod(1 - (0.05 + 0.05 * i / 499) for i in range(500))
    assert s.alpha_bars[500].item() == pytest.approx(expected, rel=1e-9)
    assert bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all())


def test_cosine_schedule_is_valid_and_ends_near_zero() -> None:
    s = NoiseSchedule.cosine(100)
    assert s.alpha_bars[100].item() < 1e-4
    assert bool(((s.betas[1:] > 0) & (s.betas[1:] < 1)).all())


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 0.1, 0.2), "positive integer"), ((10, 0.2, 0.1), "beta_start <= beta_end")],
)
def test_bad_linear_schedule(args: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NoiseSchedule.linear(*args)


def test_add_noise_matches_forward_marginal() -> None:
    s = NoiseSchedule.linear(50, 1e-3, 0.2)
    x0 = torch.full((4, 3), 0.5)
    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1, 10, 30, 50])
    ab = s.alpha_bars[t].float()[:, None]
    assert torch.allclose(s.add_noise(x0, noise, t), ab.sqrt() * 0.5 + (1 - ab).sqrt() * noise)


def test_ddpm_step_is_the_ddpm_posterior() -> None:
    """eta = 1 between consecutive steps: μ = (x_t − β_t/√(1−ᾱ_t) ε)/√α_t, σ² = β̃_t."""
    s = NoiseSchedule.linear(500, 0.05, 0.1)
    gen = torch.Generator().manual_seed(1)
    t = torch.tensor([1, 2, 100, 499, 500])
    x_t = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    eps = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    mean, std = s.reverse_mean_std(x_t, eps, t, t - 1, eta=1.0)
    beta, alpha, ab = s.betas[t][:, None], s.alphas[t][:, None], s.alpha_bars[t][:, None]
    ab_prev = s.alpha_bars[t - 1][:, None]
    expected_mean = (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
    expected_var = (1 - ab_prev) / (1 - ab) * beta
    assert torch.allclose(mean, expected_mean, rtol=1e-10, atol=1e-12)
    assert torch.allclose(std.square(), expected_var, rtol=1e-10, atol=1e-15)
    assert std[0].item() == 0.0  # the last step into x_0 is deterministic


def _schedule(variance: str) -> NoiseSchedule:
    return NoiseSchedule.build("linear", 100, 1e-3, 0.1, variance=variance)


def _step_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_t``, predicted noise and timesteps for four single reverse steps, the last
    step into x_0 first."""
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    return x_t, eps, torch.tensor([1, 2, 50, 100])


def test_forward_variance_keeps_the_mean_and_adds_beta() -> None:
    """variance="forward": the DDPM mean with σ² = β_t (1 − ᾱ_t/ᾱ_s for a strided step),
    the last step into x_0 included; deterministic DDIM stays deterministic."""
    post, fwd = _schedule("posterior"), _schedule("forward")
    x_t, eps, t = _step_inputs(3)
    mean_p, _ = post.reverse_mean_std(x_t, eps, t, t - 1, eta=1.0)
    mean_f, std_f = fwd.reverse_mean_std(x_t, eps, t, t - 1, eta=1.0)
    assert torch.equal(mean_p, mean_f)
    assert torch.allclose(std_f.square(), fwd.betas[t][:, None], rtol=1e-12)
    strided = torch.tensor([40, 10])
    _, std = fwd.reverse_mean_std(x_t[:2], eps[:2], strided, strided - 10, eta=1.0)
    ab = fwd.alpha_bars
    expected = 1 - ab[strided] / ab[strided - 10]
    assert torch.allclose(std.square(), expected[:, None], rtol=1e-12)
    _, std0 = fwd.reverse_mean_std(x_t, eps, t, t - 1, eta=0.0)
    assert bool((std0 == 0).all())
    assert fwd.to_dict()["variance"] == "forward"
    with pytest.raises(ConfigError, match="unknown reverse variance 'big'"):
        NoiseSchedule.build("linear", 10, 1e-3, 0.1, variance="big")


def test_geometric_variance_lies_between_posterior_and_forward() -> None:
    """variance="geometric": σ² = sqrt(β̃ β) per step, the same mean; the last step into
    x_0 stays deterministic (β̃ = 0 there)."""
    post, fwd, geo = (_schedule(v) for v in ("posterior", "forward", "geometric"))
    x_t, eps, t = _step_inputs(4)
    mean_p, std_p = post.reverse_mean_std(x_t, eps, t, t - 1, eta=1.0)
    _, std_f = fwd.reverse_mean_std(x_t, eps, t, t - 1, eta=1.0)
    mean_g, std_g = geo.reverse_mean_std(x_t, eps, t, t - 1, eta=1.0)
    assert torch.equal(mean_p, mean_g)
    assert torch.allclose(std_g.square(), std_p * std_f, rtol=1e-12)
    assert std_g[0].item() == 0.0
    assert bool((std_p[1:] < std_g[1:]).all() and (std_g[1:] < std_f[1:]).all())


def test_true_noise_gives_the_true_posterior_mean() -> None:
    """With the noise that made x_t, the step mean is E[x_s | x_t, x_0] of the forward process."""
    s = NoiseSchedule.linear(100, 1e-3, 0.2)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    noise = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    t, s_prev = torch.tensor([40, 70, 100]), torch.tensor([30, 69, 1])
    x_t = s.add_noise(x0, noise, t)
    mean, _ = s.reverse_mean_std(x_t, noise, t, s_prev, eta=1.0)
    ab_t, ab_s = s.alpha_bars[t][:, None], s.alpha_bars[s_prev][:, None]
    a_ts = ab_t / ab_s
    posterior = (ab_s.sqrt() * (1 - a_ts) * x0 + a_ts.sqrt() * (1 - ab_s) * x_t) / (1 - ab_t)
    assert torch.allclose(mean, posterior, rtol=1e-9, atol=1e-10)


def test_ddim_eta0_is_deterministic_x0_route() -> None:
    s = NoiseSchedule.linear(100, 1e-3, 0.2)
    gen = torch.Generator().manual_seed(3)
    x_t = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    eps = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    t, s_prev = torch.tensor([80, 20]), torch.tensor([60, 0])
    mean, std = s.reverse_mean_std(x_t, eps, t, s_prev, eta=0.0)
    ab_t, ab_s = s.alpha_bars[t][:, None], s.alpha_bars[s_prev][:, None]
    x0_hat = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    assert torch.allclose(mean, ab_s.sqrt() * x0_hat + (1 - ab_s).sqrt() * eps, rtol=1e-10)
    assert bool((std == 0).all())


def test_sampler_timesteps() -> None:
    ddpm, ddim = get_sampler("ddpm"), get_sampler("ddim")
    assert ddpm.timesteps(10).tolist() == list(range(10, -1, -1))
    visited = ddim.timesteps(500, 20)
    assert visited[0] == 500 and visited[-1] == 0 and visited.shape[0] == 21
    assert bool((visited[1:] < visited[:-1]).all())
    assert ddim.timesteps(30).shape[0] == 31  # default 50 steps capped at T


def test_sampler_bad_input() -> None:
    with pytest.raises(ConfigError, match="unknown sampler 'euler'"):
        get_sampler("euler")
    with pytest.raises(ConfigError, match="steps must be in 1..T=10"):
        get_sampler("ddim").timesteps(10, 11)
    with pytest.raises(ConfigError, match="eta"):
        Sampler("x", eta=1.5)
    with pytest.raises(ConfigError, match="0 <= s < t <= T"):
        NoiseSchedule.linear(10, 0.01, 0.1).posterior_variance(torch.tensor([3]), torch.tensor([3]))
