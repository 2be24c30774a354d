"""Convex-program tasks: a user's program plugs in; multi-slot provisioning is exact enough."""

from __future__ import annotations

import importlib
import math

import cvxpy as cp
import pytest
import torch

from drdfl.errors import ConfigError
from drdfl.tasks import TASKS, get_task, task_from_dict
from drdfl.tasks.convex import ConvexTask, MultiSlotProvisioningTask
from drdfl.tasks.provisioning import PRESETS, ProvisioningTask

# cvxpylayers 1.2 passes tensors to numpy in a way numpy 2 deprecates, once per solve
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def demands(n: int, h: int, seed: int, lo: float = 1e3, hi: float = 4e5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, h, generator=gen, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def perturbed(y: torch.Tensor, seed: int, spread: float = 0.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return y * torch.exp(spread * torch.randn(y.shape, generator=gen, dtype=torch.float64))


def box_projection_task(h: int, lo: float, hi: float) -> ConvexTask:
    """A user's own program: the capacity closest to the forecast within [lo, hi]."""
    forecast = cp.Parameter(h)
    capacity = cp.Variable(h)
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(capacity - forecast)), [capacity >= lo, capacity <= hi]
    )
    return ConvexTask(
        problem,
        forecast,
        capacity,
        lambda x, y: ((x - y) ** 2).mean(dim=-1),
        units="units",
        # SCS at a tight tolerance: the default Clarabel settles this QP to only ~5e-5
        solver_args={"solve_method": "SCS", "eps": 1e-10},
    )


def test_a_user_program_plugs_in_and_is_differentiated() -> None:
    task = box_projection_task(3, lo=0.2, hi=0.8)
    y_hat = torch.tensor(
        [[0.1, 0.5, 0.9], [0.3, -1.0, 0.79], [2.0, 0.21, 0.6]], dtype=torch.float64
    ).requires_grad_(True)
    x = task.decide(y_hat)
    torch.testing.assert_close(x, y_hat.detach().clamp(0.2, 0.8), atol=1e-6, rtol=0)
    x.sum().backward()
    inside = ((y_hat > 0.2) & (y_hat < 0.8)).to(torch.float64)
    torch.testing.assert_close(y_hat.grad, inside, atol=1e-4, rtol=0)
    assert task.units == "units" and task.horizon == 3
    with pytest.raises(ConfigError, match=r"\[B, 3\]"):
        task.decide(torch.zeros(2, 4, dtype=torch.float64))


def test_a_program_that_cannot_be_differentiated_is_refused() -> None:
    forecast = cp.Parameter(2, pos=True)
    capacity = cp.Variable(2)
    not_dpp = cp.Problem(cp.Minimize(cp.sum_squares(capacity - cp.multiply(forecast, forecast))))
    with pytest.raises(ConfigError, match="DPP"):
        ConvexTask(not_dpp, forecast, capacity, lambda x, y: (x - y).abs().sum(dim=-1))
    other = cp.Parameter(2)
    fine = cp.Problem(cp.Minimize(cp.sum_squares(capacity - forecast)))
    with pytest.raises(ConfigError, match="not in the problem"):
        ConvexTask(fine, other, capacity, lambda x, y: (x - y).abs().sum(dim=-1))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_multislot_decide_is_batched_and_regret_is_not_negative(preset: str) -> None:
    task = MultiSlotProvisioningTask(preset, horizon=3)
    y = demands(30, 3, seed=1)
    y_hat = perturbed(y, seed=2)
    x = task.decide(y_hat)
    assert x.shape == (30, 3)
    p = task.slot_task.params
    assert (x >= p.a_min).all() and (x <= p.a_max).all()
    # one batched solve equals solving each sample on its own
    one_by_one = torch.cat([task.decide(row.unsqueeze(0)) for row in y_hat[:4]])
    torch.testing.assert_close(x[:4], one_by_one)
    regret = task.regret(y_hat, y)
    assert (regret >= -1e-6).all()
    assert regret.mean() > 1e-4  # forecasts off by ~50% do cost something


def test_multislot_regret_stays_non_negative_with_a_large_ramp() -> None:
    # Priced by the exact non-convex loss, ramp 1 gave regrets down to -5.7e-4; the task
    # prices with its program's objective, for which its decision is optimal.
    task = MultiSlotProvisioningTask("paper-code", horizon=4, ramp=1.0)
    y = demands(60, 4, seed=8)
    y_hat = perturbed(y, seed=9)
    assert (task.regret(y_hat, y) >= -1e-6).all()
    x = task.decide(y)
    # the solver's optimum and the torch cost agree: no capacity does better
    nudged = x * (
        1 + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    )
    assert (task.cost(nudged, y) >= task.cost(x, y) - 1e-6).all()


def test_multislot_regret_gradient_matches_finite_differences() -> None:
    task = MultiSlotProvisioningTask("paper-code", horizon=3, ramp=0.1)
    y = demands(5, 3, seed=3)
    y_hat = perturbed(y, seed=4).requires_grad_(True)
    weights = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    (task.regret(y_hat, y) * weights).sum().backward()
    analytic = y_hat.grad
    numeric = torch.zeros_like(analytic)
    base = y_hat.detach()
    with torch.no_grad():
        for slot in range(3):
            step = torch.zeros_like(base)
            step[:, slot] = 1e-4 * base[:, slot]
            up = task.regret(base + step, y)
            down = task.regret(base - step, y)
            numeric[:, slot] = weights * (up - down) / (2 * step[:, slot])
    assert torch.isfinite(analytic).all()
    assert analytic.abs().max() > 0
    torch.testing.assert_close(analytic, numeric, rtol=1e-3, atol=1e-3 * analytic.abs().max())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_one_slot_program_matches_the_closed_form(preset: str) -> None:
    program = MultiSlotProvisioningTask(preset, horizon=1)
    exact = ProvisioningTask(preset)
    y = demands(100, 1, seed=5, lo=100.0, hi=1e6)
    gap = exact.cost(program.decide(y), y) - exact.cost(exact.decide(y), y)
    assert (gap >= -1e-12).all()
    # the tangent surrogate's error grows with demand; the solver's tolerance adds a floor
    assert (gap <= 3e-5 * exact.normalize(y).squeeze(1) + 1e-6).all()


def test_ramp_penalty_smooths_capacity_over_slots() -> None:
    y = torch.tensor([[2e5, 2e4, 2e5, 2e4]], dtype=torch.float64)
    variation = []
    for ramp in (0.0, 0.05, 1.0):
        x = MultiSlotProvisioningTask(horizon=4, ramp=ramp).decide(y)
        variation.append(x.diff(dim=1).abs().sum().item())
    assert variation[0] > variation[1] > variation[2]
    assert variation[2] < 1e-3 * variation[0]
    # without a ramp penalty the slots decouple into the single-slot optimum
    free = MultiSlotProvisioningTask(horizon=4, ramp=0.0).decide(y)
    torch.testing.assert_close(free, ProvisioningTask().decide(y), rtol=0.03, atol=0)


def test_loss_terms_add_up_to_the_cost() -> None:
    task = MultiSlotProvisioningTask(horizon=3, ramp=0.2)
    y = demands(8, 3, seed=6)
    x = task.decide(perturbed(y, seed=7))
    terms = task.loss_terms(x, y)
    torch.testing.assert_close(terms["loss"], task.cost(x, y))
    assert (terms["ramp"] >= 0).all() and (terms["ramp"] > 0).any()


def test_registry_and_round_trip() -> None:
    assert "multislot" in TASKS
    for name, target in TASKS.items():  # every entry names a class registered as itself
        module, _, cls = target.partition(":")
        assert getattr(importlib.import_module(module), cls).name == name
    default = get_task("multislot")
    assert isinstance(default, MultiSlotProvisioningTask) and default.horizon == 4
    task = get_task("multislot:paper-text", horizon=2, ramp=0.3)
    assert task.slot_task.params == PRESETS["paper-text"] and task.horizon == 2
    rebuilt = task_from_dict(task.to_dict())
    assert isinstance(rebuilt, MultiSlotProvisioningTask)
    assert rebuilt.to_dict() == task.to_dict()
    with pytest.raises(ConfigError, match="valid presets"):
        get_task("multislot:paper-typo")
    with pytest.raises(ConfigError, match="horizon"):
        MultiSlotProvisioningTask(horizon=0)
    with pytest.raises(ConfigError, match="ramp"):
        MultiSlotProvisioningTask(ramp=-1.0)
    with pytest.raises(ConfigError, match="lacks"):
        task_from_dict({"name": "multislot", **PRESETS["paper-code"].__dict__})
