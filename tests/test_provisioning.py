"""The paper's provisioning task: exact decisions, non-negative regret, usable gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drdfl.errors import ConfigError
from drdfl.tasks.provisioning import PRESETS, ProvisioningParams, ProvisioningTask

PRESET_NAMES = list(PRESETS)


def log_uniform(n: int, seed: int, lo: float = 1.0, hi: float = 1e6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_decide_is_no_worse_than_a_fine_grid(preset: str) -> None:
    task = ProvisioningTask(preset)
    p = task.params
    y = log_uniform(2000, seed=1)
    closed_form = task.cost(task.decide(y), y)
    # one slot per grid point: capacities [1, G, 1] against demands [n, 1, 1] cost [n, G]
    grid = torch.linspace(p.a_min, p.a_max, 20_001, dtype=torch.float64).reshape(1, -1, 1)
    # small chunks keep the [n, G] temporaries in cache: 6x faster than chunks of 500
    grid_best = torch.cat(
        [task.cost(grid, chunk.unsqueeze(-1)).min(dim=1).values for chunk in y.split(20)]
    )
    assert (closed_form <= grid_best + 1e-12).all()
    # the grid is fine enough that it gets close: the comparison is not vacuous
    assert (grid_best - closed_form).max() < 1e-4


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_decisions_stay_in_the_capacity_box_and_batch_over_slots(preset: str) -> None:
    task = ProvisioningTask(preset)
    y = log_uniform(600, seed=2).reshape(100, 6)
    x = task.decide(y)
    assert x.shape == (100, 6)
    assert (x >= task.params.a_min).all() and (x <= task.params.a_max).all()
    # slots are independent: deciding the flattened batch gives the same capacities
    torch.testing.assert_close(task.decide(y.reshape(-1, 1)).reshape(100, 6), x)
    # the per-sample cost is the mean over slots
    per_slot = task.cost(x.reshape(-1, 1), y.reshape(-1, 1)).reshape(100, 6)
    torch.testing.assert_close(task.cost(x, y), per_slot.mean(dim=1))


def test_paper_code_serves_a_fixed_share_and_paper_text_serves_all() -> None:
    y = torch.tensor([[1_000.0, 50_000.0, 300_000.0]], dtype=torch.float64)
    code = ProvisioningTask("paper-code")
    assert code.stationary_ratio == pytest.approx(0.315, abs=5e-4)
    torch.testing.assert_close(code.decide(y), 200.0 + code.stationary_ratio * (y - 200.0))
    text = ProvisioningTask("paper-text")
    assert text.stationary_ratio > 1e5
    torch.testing.assert_close(text.decide(y), y)
    # demand beyond the box is capped at a_max
    big = torch.tensor([[2e6]], dtype=torch.float64)
    assert text.decide(big).item() == text.params.a_max


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_zero_normalized_demand_is_handled_without_nan(preset: str) -> None:
    task = ProvisioningTask(preset)
    y = torch.tensor([[0.0], [150.0], [200.0], [1e4]], dtype=torch.float64)
    y_hat = torch.tensor([[0.0], [200.0], [150.0], [0.0]], dtype=torch.float64)
    y_hat.requires_grad_(True)
    x = task.decide(y_hat)
    assert (x == task.params.a_min).all()
    regret = task.regret(y_hat, y)
    regret.sum().backward()
    assert torch.isfinite(regret).all() and torch.isfinite(y_hat.grad).all()
    # no demand above a_min: nothing to serve, nothing lost
    assert (regret[:3] == 0).all()
    assert regret[3] > 0


@settings(max_examples=200, deadline=None)
@given(
    preset=st.sampled_from(PRESET_NAMES),
    pairs=st.lists(
        st.tuples(
            st.floats(0.0, 2e6, allow_nan=False, allow_infinity=False),
            st.floats(0.0, 2e6, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=16,
    ),
)
def test_regret_is_never_negative(preset: str, pairs: list[tuple[float, float]]) -> None:
    task = ProvisioningTask(preset)
    y_hat, y = torch.tensor(pairs, dtype=torch.float64).T.unsqueeze(-1)
    assert (task.regret(y_hat, y) >= -1e-6).all()


def test_regret_gradient_is_finite_and_informative_for_paper_code() -> None:
    task = ProvisioningTask("paper-code")
    y = log_uniform(500, seed=3, lo=1e3, hi=3e5)
    gen = torch.Generator().manual_seed(4)
    factor = torch.exp(0.5 * torch.randn(y.shape, generator=gen, dtype=torch.float64))
    y_hat = (y * factor).clamp(300.0, 3.9e5).requires_grad_(True)
    task.regret(y_hat, y).sum().backward()
    grad = y_hat.grad
    assert torch.isfinite(grad).all()
    assert (grad != 0).all()
    # over-forecasting raises regret, under-forecasting lowers it when moving towards y
    assert (grad[y_hat.detach() > 1.05 * y] > 0).all()
    assert (grad[y_hat.detach() < 0.95 * y] < 0).all()


def test_loss_terms_add_up_to_the_cost() -> None:
    task = ProvisioningTask("paper-code")
    y = log_uniform(64, seed=5).reshape(16, 4)
    x = task.decide(y * 1.3)
    terms = task.loss_terms(x, y)
    eta = task.params.eta
    torch.testing.assert_close(terms["loss"], task.cost(x, y))
    torch.testing.assert_close(terms["loss"], (1 - eta) * terms["energy"] - eta * terms["utility"])
    assert ((terms["served"] >= 0) & (terms["served"] <= 1)).all()


def test_round_trip_and_bad_configuration() -> None:
    for preset in PRESET_NAMES:
        task = ProvisioningTask(preset)
        again = ProvisioningTask.from_dict(task.to_dict())
        assert again.params == task.params and again.preset == preset
    custom = ProvisioningTask(params=ProvisioningParams(0.5, 10.0, 1.0, 0.0, 1e3, 1.0, 0.2))
    assert custom.to_dict()["preset"] is None
    assert ProvisioningTask.from_dict(custom.to_dict()).params == custom.params
    with pytest.raises(ConfigError, match="paper-code, paper-text"):
        ProvisioningTask("paper")
    with pytest.raises(ConfigError, match="eta"):
        ProvisioningTask(params=ProvisioningParams(1.0, 10.0, 1.0, 0.0, 1e3, 1.0, 0.2))
    with pytest.raises(ConfigError, match="a_max"):
        ProvisioningTask(params=ProvisioningParams(0.5, 10.0, 1.0, 5.0, 5.0, 1.0, 0.2))
    with pytest.raises(ConfigError, match="lacks"):
        ProvisioningTask.from_dict({"name": "provisioning", "eta": 0.5})


def test_registry_builds_and_rebuilds_provisioning_tasks() -> None:
    from drdfl.tasks import TASKS, get_task, task_from_dict

    assert "provisioning" in TASKS
    assert get_task("provisioning").params == PRESETS["paper-code"]
    for preset in PRESET_NAMES:
        task = get_task(f"provisioning:{preset}")
        assert isinstance(task, ProvisioningTask) and task.params == PRESETS[preset]
        rebuilt = task_from_dict(task.to_dict())
        assert isinstance(rebuilt, ProvisioningTask) and rebuilt.params == task.params
    with pytest.raises(ConfigError, match="valid tasks: provisioning"):
        get_task("scheduling")
    with pytest.raises(ConfigError, match="valid presets: paper-code, paper-text"):
        get_task("provisioning:paper-typo")
    with pytest.raises(ConfigError, match="valid tasks"):
        task_from_dict({"name": "scheduling"})


def test_capacity_range_follows_training_data_that_the_preset_would_cap() -> None:
    from drdfl.data.synthetic import generate
    from drdfl.tasks import task_from_dict

    minute = generate(1.0, "chat", seed=0, interval_s=60.0).values  # ~12x the 5 s level
    demand = torch.as_tensor(minute, dtype=torch.float64).view(-1, 1)
    preset = ProvisioningTask("paper-code")
    # the fixed range: every decision at the cap, so every forecast has regret 0
    assert torch.equal(preset.decide(demand), torch.full_like(demand, 400_000.0))
    assert preset.regret(0.5 * demand, demand).abs().max() == 0

    task, note = preset.fit_to_data(minute, 60.0)
    assert task.demand_scale > 1 and task.preset == "paper-code"
    assert note is not None and f"×{task.demand_scale:g}" in note and "7,441,266" in note
    low, high = task.capacity_range
    decided = task.decide(demand)
    assert (decided < high).all() and (decided > low).all()
    assert 2 * minute.max() < task.capped_from()
    assert (task.regret(0.5 * demand, demand) > 0).all()
    # the scaled task is the preset's on demand divided by the scale
    torch.testing.assert_close(
        task.cost(decided, demand),
        preset.cost(decided / task.demand_scale, demand / task.demand_scale),
    )
    again = task_from_dict(task.to_dict())
    assert isinstance(again, ProvisioningTask) and again.demand_scale == task.demand_scale


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_capacity_range_is_kept_where_it_holds_the_training_data(preset: str) -> None:
    task = ProvisioningTask(preset)
    assert task.capped_from() == pytest.approx(
        400_000.0 if preset == "paper-text" else 200 + (400_000 - 200) / task.stationary_ratio,
        rel=1e-7,
    )
    paper_like = np.linspace(374.0, 106_957.0, 500)  # the paper's training file's extremes
    same, note = task.fit_to_data(paper_like, 5.0)
    assert same is task and note is None
