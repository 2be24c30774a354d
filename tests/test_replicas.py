"""The replicas task: whole replicas at the brute-force optimum, a surrogate that trains,
and bounds checked against the training data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from drdfl.errors import ConfigError
from drdfl.tasks import ReplicasTask, get_task, task_from_dict

CASES = [
    ("balanced", {}, 5.0),
    ("strict", {}, 60.0),
    ("balanced", {"min_replicas": 0, "max_replicas": 12}, 5.0),
    ("balanced", {"tokens_per_s_per_replica": 2_500.0, "cost_per_replica_hour": 3.0}, 15.0),
]


def _demand(shape: tuple[int, ...], seed: int, task: ReplicasTask) -> torch.Tensor:
    """Demands from none to more than the most replicas serve, with exact multiples of a
    replica's slot among them (where floor and ceiling meet)."""
    gen = torch.Generator().manual_seed(seed)
    top = 1.2 * task.params.max_replicas * task.tokens_per_replica_slot
    y = torch.rand(shape, generator=gen, dtype=torch.float64) ** 2 * top
    y.view(-1)[::7] = (
        torch.randint(0, 20, (y.numel() // 7 + 1,), generator=gen)[
            : y.view(-1)[::7].numel()
        ].double()
        * task.tokens_per_replica_slot
    )
    return y


def _brute_force(task: ReplicasTask, demand: torch.Tensor) -> torch.Tensor:
    """The least mean operating cost over every whole replica count in the bounds."""
    p = task.params
    counts = torch.arange(p.min_replicas, p.max_replicas + 1, dtype=torch.float64)
    costs = task.operating_cost(counts.view(1, -1, 1), demand.unsqueeze(1)).mean(
        dim=-1
    )  # [B, counts]
    return costs.min(dim=1).values


@pytest.mark.parametrize(("preset", "overrides", "interval_s"), CASES)
@pytest.mark.parametrize("scenarios", [1, 2, 5, 17])
def test_optimal_replicas_match_brute_force(
    preset: str, overrides: dict[str, float], interval_s: float, scenarios: int
) -> None:
    task = ReplicasTask(preset, interval_s=interval_s, **overrides)
    demand = _demand((400, scenarios), seed=scenarios, task=task)
    chosen = task.optimal_replicas(demand)
    assert torch.equal(chosen, chosen.round())
    assert (chosen >= task.params.min_replicas).all()
    assert (chosen <= task.params.max_replicas).all()
    cost = task.operating_cost(chosen.unsqueeze(-1), demand).mean(dim=-1)
    torch.testing.assert_close(cost, _brute_force(task, demand), rtol=1e-12, atol=1e-12)


def test_optimum_is_the_critical_ratio_quantile() -> None:
    task = ReplicasTask("balanced", interval_s=5.0, min_replicas=0, max_replicas=1000)
    q = task.critical_ratio
    assert q == pytest.approx(1 - 4.0 / (3600 * 2e-6 * 10_000))
    # 100 scenarios at 0.5, 1.5, …, 99.5 replicas' worth: the quantile sits at k = ceil(q·100)
    demand = (torch.arange(100, dtype=torch.float64) + 0.5) * task.tokens_per_replica_slot
    k = int(np.ceil(q * 100)) - 1
    assert task.optimal_replicas(demand.flip(0)).item() in (np.floor(k + 0.5), np.ceil(k + 0.5))


@pytest.mark.parametrize(("preset", "overrides", "interval_s"), CASES)
def test_decide_is_the_one_scenario_optimum_per_slot(
    preset: str, overrides: dict[str, float], interval_s: float
) -> None:
    task = ReplicasTask(preset, interval_s=interval_s, **overrides)
    y = _demand((50, 6), seed=3, task=task)
    x = task.decide(y)
    assert x.shape == (50, 6)
    assert torch.equal(x, task.optimal_replicas(y.unsqueeze(-1)))
    regret = task.regret(y * 1.3, y)
    assert (regret >= -1e-12).all() and (regret > 0).any()
    # the training cost is the operating cost less the penalty of serving nothing
    offset = task.params.penalty_per_unserved_token * y
    torch.testing.assert_close(task.cost(x, y), (task.operating_cost(x, y) - offset).mean(dim=-1))


def test_serving_that_never_pays_keeps_the_fewest_replicas() -> None:
    task = ReplicasTask("balanced", penalty_per_unserved_token=1e-12, min_replicas=2)
    assert task.critical_ratio < 0
    y = torch.full((3, 2), 1e9, dtype=torch.float64)
    assert torch.equal(task.decide(y), torch.full_like(y, 2.0))
    assert torch.equal(task.optimal_replicas(y), torch.full((3,), 2.0, dtype=torch.float64))


def test_a_forecast_trained_on_the_cost_learns_the_critical_ratio_quantile() -> None:
    """The straight-through surrogate trains: one learnable forecast for i.i.d. demand
    ends at the replicas that minimise the expected cost, not at the mean demand."""
    task = ReplicasTask("balanced", interval_s=5.0, min_replicas=0)
    gen = torch.Generator().manual_seed(0)
    per = task.tokens_per_replica_slot
    demand = (10 + 4 * torch.randn(4000, 1, generator=gen, dtype=torch.float64)).clamp_min(0) * per
    level = torch.nn.Parameter(torch.tensor(10.0 * per, dtype=torch.float64))
    opt = torch.optim.Adam([level], lr=0.05 * per)
    for _ in range(400):
        opt.zero_grad()
        task.cost(task.decide(level.expand_as(demand)), demand).mean().backward()
        opt.step()
    learned = task.decide(level.detach().view(1, 1)).item()
    best = task.optimal_replicas(demand.view(-1)).item()
    assert best > 15  # the 94 % quantile of N(10, 4) replicas, well above the mean
    assert abs(learned - best) <= 1


def test_round_trip_and_spec_options() -> None:
    task = get_task("replicas:strict", max_replicas=128, interval_s=60.0)
    assert isinstance(task, ReplicasTask)
    again = task_from_dict(task.to_dict())
    assert isinstance(again, ReplicasTask)
    assert again.params == task.params and again.interval_s == 60.0
    assert again.base_preset == "strict" and again.preset is None
    assert task_from_dict(get_task("replicas").to_dict()).preset == "balanced"
    with pytest.raises(ConfigError, match="unknown parameter 'max_replica'"):
        get_task("replicas", max_replica=3)
    with pytest.raises(ConfigError, match="max_replicas must be >= min_replicas"):
        get_task("replicas", min_replicas=5, max_replicas=4)
    with pytest.raises(ConfigError, match="valid presets: balanced, strict"):
        get_task("replicas:cheap")


def test_fit_to_data_takes_the_interval_and_checks_the_bounds() -> None:
    task = ReplicasTask("balanced", max_replicas=10)
    per_slot = 10 * 10_000.0 * 60.0  # what 10 replicas serve in a minute
    fitted, note = task.fit_to_data(np.full(100, 0.5 * per_slot), 60.0)
    assert fitted.interval_s == 60.0 and note is None
    peaks = np.r_[np.full(98, 0.5 * per_slot), 2 * per_slot, 3 * per_slot]
    _, note = task.fit_to_data(peaks, 60.0)
    assert note is not None and "2.0% of the training slots" in note
    with pytest.raises(ConfigError, match=r"median slot holds 12,000,000 tokens.*max_replicas=10"):
        task.fit_to_data(np.full(100, 2 * per_slot), 60.0)
    with pytest.raises(ConfigError, match="every decision would sit at min_replicas"):
        ReplicasTask("balanced", min_replicas=8).fit_to_data(np.full(10, 1_000.0), 5.0)


def test_whole_numbers_for_every_combination_of_bounds() -> None:
    for low, high in itertools.product([0, 1, 3], [3, 7]):
        task = ReplicasTask("balanced", min_replicas=low, max_replicas=high)
        y = _demand((64, 3), seed=low + high, task=task)
        x = task.decide(y)
        assert torch.equal(x, x.round()) and x.min() >= low and x.max() <= high
