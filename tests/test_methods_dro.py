"""The DRO duals (KL, CVaR, χ²) on fixed losses against closed forms and direct maximisation,
and the dual variable during training."""

from __future__ import annotations

import itertools
import math

import cvxpy as cp
import numpy as np
import pytest
import torch

from drdfl.data.synthetic import generate
from drdfl.data.training import TrainingData
from drdfl.data.windows import Scaler, make_windows
from drdfl.errors import ConfigError
from drdfl.methods.dro import (
    LAMBDA_FLOOR,
    Chi2DROMethod,
    CVaRMethod,
    KLDROMethod,
    chi2_dual,
    chi2_robust_loss,
    chi2_solve,
    cvar,
    cvar_dual,
    cvar_solve,
    kl_dual,
    kl_robust_loss,
    kl_solve,
)
from drdfl.methods.losses import sample_losses
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task


def _losses(n: int, seed: int) -> torch.Tensor:
    """Skewed non-negative losses, like decision regrets (many small, a few large)."""
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.lognormal(mean=-3.0, sigma=1.0, size=n), dtype=torch.float64)


def _worst_case(losses: torch.Tensor, constraint) -> float:
    """``max_q q·ℓ`` over the probability simplex with an extra divergence ``constraint``."""
    ell = losses.numpy()
    q = cp.Variable(ell.shape[0], nonneg=True)
    problem = cp.Problem(cp.Maximize(ell @ q), [cp.sum(q) == 1, constraint(q, ell.shape[0])])
    problem.solve(solver=cp.CLARABEL)
    assert problem.status == cp.OPTIMAL
    return float(problem.value)


# ------------------------------------------------------------------------------ CVaR
def _tail_mean(losses: torch.Tensor, alpha: float) -> float:
    """Mean of the worst ``1−α`` fraction, the boundary sample counted fractionally."""
    z = np.sort(losses.numpy())[::-1]
    mass = (1.0 - alpha) * z.shape[0]
    k = math.floor(mass + 1e-9)
    partial = z[k] * (mass - k) if k < z.shape[0] else 0.0
    return float((z[:k].sum() + partial) / mass)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 0.95, 0.973])
def test_cvar_dual_equals_tail_mean(alpha: float) -> None:
    losses = _losses(200, seed=1)
    assert float(cvar(losses, alpha)) == pytest.approx(_tail_mean(losses, alpha), rel=1e-10)


def test_cvar_dual_is_an_upper_bound_minimised_by_the_solve() -> None:
    losses = _losses(300, seed=2)
    best = float(cvar(losses, 0.8))
    grid = torch.linspace(float(losses.min()) - 0.1, float(losses.max()) + 0.1, 2001)
    values = torch.stack([cvar_dual(losses, eta, 0.8) for eta in grid])
    assert float(values.min()) >= best - 1e-12
    assert float(values.min()) == pytest.approx(best, rel=1e-3)


# ------------------------------------------------------------------------------ χ²
@pytest.mark.parametrize("radius", [0.01, 0.3, 2.0, 20.0])
def test_chi2_dual_matches_direct_maximisation(radius: float) -> None:
    losses = _losses(80, seed=3)

    def ball(q: cp.Variable, n: int) -> cp.Constraint:
        # D(Q‖P̂) = ½ Σ_i (1/n)(n q_i − 1)² ≤ ρ, written as a second-order cone
        return cp.norm(n * q - 1, 2) <= math.sqrt(2.0 * radius * n)

    direct = _worst_case(losses, ball)
    assert float(chi2_robust_loss(losses, radius)) == pytest.approx(direct, rel=1e-5)


def test_chi2_small_radius_adds_scaled_std() -> None:
    losses = _losses(500, seed=4)
    radius = 1e-4
    expected = losses.mean() + math.sqrt(2 * radius) * losses.std(correction=0)
    assert float(chi2_robust_loss(losses, radius)) == pytest.approx(float(expected), rel=1e-10)


def test_chi2_solve_minimises_the_dual() -> None:
    losses = _losses(100, seed=5)
    eta = chi2_solve(losses, 5.0)
    best = float(chi2_dual(losses, eta, 5.0))
    for shift in (-1e-3, -1e-5, 1e-5, 1e-3):
        assert float(chi2_dual(losses, eta + shift, 5.0)) >= best - 1e-12


# ------------------------------------------------------------------------------ KL
@pytest.mark.parametrize("radius", [0.05, 0.5, 2.0])
def test_kl_dual_matches_direct_maximisation(radius: float) -> None:
    losses = _losses(60, seed=6)

    def ball(q: cp.Variable, n: int) -> cp.Constraint:
        return cp.sum(cp.rel_entr(q, np.full(n, 1.0 / n))) <= radius

    direct = _worst_case(losses, ball)
    assert float(kl_robust_loss(losses, radius)) == pytest.approx(direct, rel=1e-5)


def test_kl_limits_mean_and_max() -> None:
    losses = _losses(64, seed=7)
    mean, top = float(losses.mean()), float(losses.max())
    values = [float(kl_robust_loss(losses, r)) for r in (1e-8, 1e-4, 0.1, 1.0, 3.0)]
    assert values[0] == pytest.approx(mean, rel=1e-3)
    assert all(a < b for a, b in itertools.pairwise(values))
    # the point mass on the largest loss has KL log(n) from the empirical distribution
    assert float(kl_robust_loss(losses, math.log(64) + 1.0)) == pytest.approx(top, rel=1e-4)
    assert mean < values[2] < top


def test_kl_optimal_lambda_makes_the_constraint_active() -> None:
    losses = _losses(128, seed=8)
    radius = 0.7
    lam = torch.tensor(kl_solve(losses, radius), dtype=torch.float64)
    # the dual's gradient in the losses is the worst-case distribution q ∝ exp(ℓ/λ)
    ell = losses.clone().requires_grad_(True)
    kl_dual(ell, lam, radius).backward()
    q = ell.grad
    assert float(q.sum()) == pytest.approx(1.0, abs=1e-12)
    kl = float((q * torch.log(q * losses.shape[0])).sum())
    assert kl == pytest.approx(radius, rel=1e-6)
    assert float((q * losses).sum()) == pytest.approx(float(kl_dual(losses, lam, radius)), 1e-6)


def test_kl_parametrisation_round_trips() -> None:
    method = KLDROMethod(radius=1.0)
    for lam in (2 * LAMBDA_FLOOR, 1e-3, 0.5, 40.0, 1e4):
        raw = torch.tensor(method.to_raw(lam), dtype=torch.float64)
        assert float(method.from_raw(raw)) == pytest.approx(lam, rel=1e-9)


# ------------------------------------------------------------------------------ methods
def test_method_robust_loss_uses_its_hyperparameters() -> None:
    losses = _losses(100, seed=9)
    assert float(CVaRMethod(alpha=0.9).robust_loss(losses)) == pytest.approx(
        _tail_mean(losses, 0.9), rel=1e-10
    )
    assert float(KLDROMethod(radius=0.5).robust_loss(losses)) == pytest.approx(
        float(kl_robust_loss(losses, 0.5))
    )
    assert float(Chi2DROMethod(radius=2.0).robust_loss(losses)) > float(
        Chi2DROMethod(radius=0.5).robust_loss(losses)
    )


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (KLDROMethod, {"radius": 0.0}, "kldro.radius"),
        (KLDROMethod, {"radius": -2.0}, "kldro.radius"),
        (CVaRMethod, {"alpha": 1.0}, "cvar.alpha"),
        (CVaRMethod, {"alpha": -0.1}, "cvar.alpha"),
        (Chi2DROMethod, {"radius": 0.0}, "chi2.radius"),
    ],
)
def test_bad_hyperparameters_are_config_errors(cls, kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        cls(**kwargs)


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize(
    ("method", "solve"),
    [
        (CVaRMethod(alpha=0.8), lambda z: cvar_solve(z, 0.8)),
        (KLDROMethod(radius=0.5), lambda z: kl_solve(z, 0.5)),
        (Chi2DROMethod(radius=1.0), lambda z: chi2_solve(z, 1.0)),
    ],
    ids=["cvar", "kldro", "chi2"],
)
def test_fit_starts_each_epoch_from_the_exact_dual(method, solve) -> None:
    task = get_task("provisioning")
    series = generate(0.03, "code", seed=2)
    scaler = Scaler.fit(series.values)
    values = scaler.transform(series.values)
    data = TrainingData(make_windows(values, 7, 1), None, scaler, values)
    forecaster = build_forecaster("linear", 7, 1, seed=0)
    x, y = data.train.tensors()
    with torch.no_grad():
        initial = sample_losses(forecaster(x), y, task, scaler, "regret")
    # a learning rate so small that neither weights nor dual move within the epoch
    method.train = TrainConfig(epochs=1, lr=1e-10, seed=0)
    history = method.fit(data, task, forecaster).history
    assert history[0][method.dual_name] == pytest.approx(solve(initial), rel=1e-4)
