"""Stored transitions and their log-probabilities: the quantities 3D-Learning reweights by."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from drdfl.diffusion.divergence import path_kl, tail_with_kl
from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig
from drdfl.diffusion.samplers import get_sampler, states_at, tail_timesteps
from drdfl.diffusion.trajectory import (
    Transitions,
    log_ratio,
    step_log_probs,
    trajectory_log_prob,
)
from drdfl.errors import ConfigError

CFG = DiffusionModelConfig(
    segment_length=16, T=12, beta_start=0.01, beta_end=0.3, base_channels=4, channel_mults=(1, 2)
)


@pytest.fixture
def model() -> DiffusionModel:
    torch.manual_seed(0)
    m = DiffusionModel(CFG)
    # The output layer starts at zero; perturb every weight so ε_θ is non-trivial.
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def _direct_log_prob(model: DiffusionModel, tr: Transitions, i: int) -> torch.Tensor:
    """Per-sample, per-step reference: torch.distributions.Normal on each stochastic step."""
    total = torch.zeros((), dtype=torch.float64)
    for k in range(tr.n_steps):
        t, s = int(tr.t[k]), int(tr.s[k])
        x_t = tr.x_t[i, k][None]
        eps = model.eps(x_t, torch.tensor([t]))
        sched = model.schedule
        ab_t, ab_s = sched.alpha_bars[t].item(), sched.alpha_bars[s].item()
        var = tr.eta**2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        if var == 0:
            continue
        x0_hat = (x_t - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
        mean = ab_s**0.5 * x0_hat + (1 - ab_s - var) ** 0.5 * eps
        total = total + Normal(mean, var**0.5).log_prob(tr.x_prev[i, k][None]).sum()
    return total


@pytest.mark.parametrize(("sampler", "eta", "steps"), [("ddpm", None, None), ("ddim", 0.6, 6)])
def test_log_prob_matches_direct_gaussian(
    model: DiffusionModel, sampler: str, eta: float | None, steps: int | None
) -> None:
    rule = get_sampler(sampler, eta)
    result = model.sample(5, rule, steps, seed=3, keep_last=4)
    tr = result.transitions
    assert tr is not None and tr.n_steps == 4 and len(tr) == 5
    logp = trajectory_log_prob(model, tr)
    assert logp.shape == (5,)
    for i in range(3):
        assert logp[i].item() == pytest.approx(_direct_log_prob(model, tr, i).item(), rel=1e-4)


def test_transitions_are_the_sampled_chain(model: DiffusionModel) -> None:
    full = model.sample(4, "ddpm", seed=7, keep_last=CFG.T)
    last = model.sample(4, "ddpm", seed=7, keep_last=3)
    assert full.transitions is not None and last.transitions is not None
    assert full.transitions.timesteps.tolist() == list(range(CFG.T, -1, -1))
    assert last.transitions.timesteps.tolist() == [3, 2, 1, 0]
    # Same seed: the last 3 stored steps are the tail of the full trajectory.
    assert torch.equal(last.transitions.states, full.transitions.states[:, -4:])
    # The final state is the sample (in model space).
    assert torch.allclose(model.from_model_space(last.transitions.samples), last.segments)
    assert model.sample(4, "ddpm", seed=7).transitions is None


def test_deterministic_last_step_has_no_density(model: DiffusionModel) -> None:
    tr = model.sample(3, "ddpm", seed=1, keep_last=3).transitions
    assert tr is not None
    per_step = step_log_probs(model, tr)
    assert per_step.shape == (3, 3)
    assert bool((per_step[:, -1] == 0).all())  # t=1 → 0 has σ = 0
    assert bool((per_step[:, :-1] != 0).all())


def test_ratio_is_exactly_one_at_the_reference(model: DiffusionModel) -> None:
    tr = model.sample(6, "ddpm", seed=2, keep_last=5).transitions
    assert tr is not None
    ref = model.clone()
    lr = log_ratio(model, ref, tr)
    assert bool((lr == 0).all())
    assert bool((lr.exp() == 1).all())


def test_gradients_flow_to_theta_only(model: DiffusionModel) -> None:
    tr = model.sample(4, "ddpm", seed=4, keep_last=4).transitions
    assert tr is not None
    ref = model.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    lr = log_ratio(model, ref, tr)
    assert bool((lr != 0).all())
    lr.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    assert all(p.grad is None for p in ref.parameters())


def test_generating_model_scores_its_own_trajectories_higher(model: DiffusionModel) -> None:
    """The sampled steps are likelier under the model that drew them than under a perturbed one."""
    tr = model.sample(64, "ddpm", seed=5, keep_last=6).transitions
    assert tr is not None
    other = model.clone()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert log_ratio(other, model, tr).mean() < 0


def test_subset_and_keep_last_bounds(model: DiffusionModel) -> None:
    tr = model.sample(5, "ddpm", seed=0, keep_last=2).transitions
    assert tr is not None
    part = tr.subset(torch.tensor([0, 3]))
    assert torch.equal(trajectory_log_prob(model, part), trajectory_log_prob(model, tr)[[0, 3]])
    with pytest.raises(ConfigError, match="keep_last must be in 0..12"):
        model.sample(2, "ddpm", keep_last=13)


class _Shifted(torch.nn.Module):
    """``model`` with a constant ``delta`` added to its predicted noise."""

    def __init__(self, model: DiffusionModel, delta: torch.Tensor) -> None:
        super().__init__()
        self.model, self.delta, self.schedule = model, delta, model.schedule

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model.eps(x_t, t) + self.delta


def test_path_kl_is_zero_at_the_reference(model: DiffusionModel) -> None:
    gen = torch.Generator().manual_seed(0)
    starts = torch.randn(8, CFG.segment_length, generator=gen)
    timesteps = tail_timesteps(6, 3)
    noise = torch.randn(8, 3, CFG.segment_length, generator=gen)
    assert bool((path_kl(model.clone(), model, starts, timesteps, noise) == 0).all())


def test_path_kl_closed_form_for_a_constant_noise_shift(model: DiffusionModel) -> None:
    """With ``ε_θ = ε_θ₀ + δ`` every step's mean moves by ``c_ε δ``: the KL is
    ``Σ_k c_ε,k² ‖δ‖² / 2σ_k²`` whatever the states."""
    delta = torch.full((CFG.segment_length,), 0.05)
    shifted = _Shifted(model, delta)
    timesteps = tail_timesteps(8, 4)
    gen = torch.Generator().manual_seed(1)
    starts = torch.randn(5, CFG.segment_length, generator=gen)
    noise = torch.randn(5, 4, CFG.segment_length, generator=gen)
    kl = path_kl(shifted, model, starts, timesteps, noise)
    sched = model.schedule
    expected = 0.0
    for t, s in zip(timesteps[:-1].tolist(), timesteps[1:].tolist(), strict=True):
        ab_t, ab_s = float(sched.alpha_bars[t]), float(sched.alpha_bars[s])
        var = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        priced = var if var > 0 else 1 - ab_t / ab_s  # the last step's stated variance
        c_eps = (1 - ab_s - var) ** 0.5 - (ab_s / ab_t) ** 0.5 * (1 - ab_t) ** 0.5
        expected += c_eps**2 * float(delta.square().sum()) / (2 * priced)
    assert torch.allclose(kl, torch.full_like(kl, expected), rtol=1e-4)


def _kl_two_ways(model: DiffusionModel, steps: slice) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(Monte Carlo log-ratio, analytic KL, n)`` over ``steps`` of the tails of a
    perturbed copy of ``model``, both per trajectory, on the copy's own trajectories."""
    other = model.clone()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    n, timesteps = 4000, tail_timesteps(6, 6)
    gen = torch.Generator().manual_seed(2)
    starts = torch.randn(n, CFG.segment_length, generator=gen)
    noise = torch.randn(n, 6, CFG.segment_length, generator=gen)
    with torch.no_grad():
        tail = tail_with_kl(other, model, starts, timesteps, noise)
        tr = Transitions(tail.states, timesteps, 1.0)
        mc = (step_log_probs(other, tr) - step_log_probs(model, tr))[:, steps].sum(1)
    return mc, tail.step_kl[:, steps].sum(1), n


def test_path_kl_matches_monte_carlo_log_ratio(model: DiffusionModel) -> None:
    """On θ's own trajectories, the mean log-ratio of the stochastic steps (a Monte Carlo
    KL estimate) agrees with the analytic per-step KL of those steps."""
    mc, analytic, n = _kl_two_ways(model, slice(None, -1))  # the last step has no density
    stderr = float(mc.std()) / n**0.5
    assert abs(float(mc.mean()) - float(analytic.mean())) < 4 * stderr
    assert float(analytic.mean()) > 10 * stderr  # a real difference, not two zeros


def test_path_kl_with_forward_variance_matches_monte_carlo_on_every_step() -> None:
    """With the forward variance every step is stochastic, the last one too: the analytic
    KL of all steps agrees with the Monte Carlo log-ratio of all steps."""
    torch.manual_seed(0)
    model = DiffusionModel(CFG.model_copy(update={"variance": "forward"}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mc, analytic, n = _kl_two_ways(model, slice(None))
    stderr = float(mc.std()) / n**0.5
    assert abs(float(mc.mean()) - float(analytic.mean())) < 4 * stderr
    assert float(analytic.mean()) > 10 * stderr


def test_tail_timesteps_and_pool_states(model: DiffusionModel) -> None:
    assert tail_timesteps(8, 4).tolist() == [8, 6, 4, 2, 0]
    with pytest.raises(ConfigError, match="takes 1..3 steps"):
        tail_timesteps(3, 5)
    x_T = torch.randn(3, CFG.segment_length, generator=torch.Generator().manual_seed(0))
    full = states_at(model.eps, model.schedule, x_T, 4, steps=CFG.T)
    # Every DDIM step from T to 4 equals the deterministic sampler's first T − 4 steps.
    x = x_T
    ddim = get_sampler("ddim")
    for t in range(CFG.T, 4, -1):
        x = ddim.step(model.schedule, x, model.eps(x, torch.full((3,), t)), t, t - 1)
    assert torch.allclose(full, x, atol=1e-5)
