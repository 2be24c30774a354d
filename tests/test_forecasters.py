"""Forecasters: shapes, non-negative outputs, seeded construction, learning, save/rebuild."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from drdfl.errors import ConfigError, ModelError
from drdfl.models import (
    FORECASTERS,
    LSTMForecaster,
    build_forecaster,
    forecaster_from_spec,
    forecaster_spec,
)

NAMES = list(FORECASTERS)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small LSTMs run an order of magnitude slower with two threads on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("window", "horizon"), [(7, 1), (12, 3)])
def test_shapes(name: str, window: int, horizon: int) -> None:
    model = build_forecaster(name, window, horizon, seed=0)
    assert (model.window, model.horizon) == (window, horizon)
    assert model(torch.rand(5, window)).shape == (5, horizon)
    with pytest.raises(ConfigError, match=f"\\[B, {window}\\]"):
        model(torch.rand(5, window + 1))


def test_lstm_defaults_are_the_papers_architecture() -> None:
    model = build_forecaster("lstm")
    assert isinstance(model, LSTMForecaster)
    assert (model.window, model.horizon) == (7, 1)
    assert [(m.input_size, m.hidden_size) for m in model.lstms] == [(1, 128), (128, 64)]
    assert [m.normalized_shape for m in model.norms] == [(128,), (64,)]
    assert model.dropout.p == 0.3
    first, act, last = model.head
    assert (first.in_features, first.out_features) == (64, 32)
    assert isinstance(act, nn.GELU)
    assert (last.in_features, last.out_features) == (32, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("output", ["softplus", "relu"])
def test_outputs_are_non_negative(name: str, output: str) -> None:
    model = build_forecaster(name, 7, 2, seed=1, output=output).eval()
    gen = torch.Generator().manual_seed(2)
    x = 10.0 * torch.randn(256, 7, generator=gen)
    with torch.no_grad():
        y = model(x)
        # a pre-activation far below zero still maps to a non-negative forecast
        y_neg = model.output(-50.0 * torch.ones(4, 2))
    assert (y >= 0).all()
    assert (y_neg >= 0).all()


def test_softplus_head_keeps_a_gradient_below_zero() -> None:
    model = build_forecaster("linear", 7, 1, seed=0)
    with torch.no_grad():
        model.linear.bias.fill_(-0.5)
        model.linear.weight.zero_()
    x = torch.rand(8, 7)
    model(x).sum().backward()
    assert (model.linear.bias.grad > 0).all()
    relu = build_forecaster("linear", 7, 1, seed=0, output="relu")
    with torch.no_grad():
        relu.linear.bias.fill_(-0.5)
        relu.linear.weight.zero_()
    relu(x).sum().backward()
    assert (relu.linear.bias.grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights_and_global_rng_untouched(name: str) -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_forecaster(name, seed=7).state_dict()
    after = torch.rand(3)
    b = build_forecaster(name, seed=7).state_dict()
    c = build_forecaster(name, seed=8).state_dict()
    assert torch.equal(before, after)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def sine_windows(n: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(n + window, dtype=torch.float32)
    series = 0.5 + 0.4 * torch.sin(2 * math.pi * t / 20.0)
    x = series.unfold(0, window + 1, 1)
    return x[:, :window], x[:, window:]


@pytest.mark.parametrize(("name", "lr"), [("lstm", 3e-3), ("mlp", 1e-2), ("linear", 3e-2)])
def test_a_few_adam_steps_learn_a_sine(name: str, lr: float) -> None:
    torch.manual_seed(0)  # dropout masks
    model = build_forecaster(name, 7, 1, seed=0)
    x, y = sine_windows(128, 7)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        start = nn.functional.mse_loss(model.eval()(x), y).item()
    model.train()
    for _ in range(60):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        end = nn.functional.mse_loss(model.eval()(x), y).item()
    assert end < 0.25 * start
    # well below the error of forecasting the mean: it has learned the wave
    assert end < 0.25 * y.var().item()


@pytest.mark.parametrize("name", NAMES)
def test_spec_round_trip_rebuilds_the_same_function(name: str) -> None:
    options = {"mlp": {"hidden": [16, 8], "dropout": 0.1}, "lstm": {"hidden": [8, 4], "head": 6}}
    model = build_forecaster(name, 5, 2, seed=3, output="relu", **options.get(name, {})).eval()
    spec = json.loads(json.dumps(forecaster_spec(model)))
    assert spec["name"] == name and spec["window"] == 5 and spec["horizon"] == 2
    rebuilt = forecaster_from_spec(spec).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(4, 5)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert forecaster_spec(rebuilt) == spec


def test_bad_names_options_and_specs() -> None:
    with pytest.raises(ConfigError, match="lstm, mlp, linear"):
        build_forecaster("transformer")
    with pytest.raises(ConfigError, match="hidden"):
        build_forecaster("linear", hidden=[4])
    with pytest.raises(ConfigError, match="window"):
        build_forecaster("mlp", window=0)
    with pytest.raises(ConfigError, match="dropout"):
        build_forecaster("lstm", dropout=1.0)
    with pytest.raises(ConfigError, match="softplus, relu"):
        build_forecaster("mlp", output="sigmoid")
    with pytest.raises(ModelError, match="name"):
        forecaster_from_spec({"window": 7})
    with pytest.raises(ModelError, match="transformer"):
        forecaster_from_spec({"name": "transformer"})
    with pytest.raises(ModelError, match="Linear"):
        forecaster_spec(nn.Linear(7, 1))
