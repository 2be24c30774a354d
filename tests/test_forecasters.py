"""Forecasters: shapes, heads (bounded and unconstrained), RevIN, seeded construction,
learning, save/rebuild."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from drdfl.data.windows import Scaler
from drdfl.errors import ConfigError, ModelError
from drdfl.models import (
    FORECASTERS,
    LSTMForecaster,
    RevINForecaster,
    build_forecaster,
    forecaster_from_spec,
    forecaster_spec,
    with_revin,
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
    model = build_forecaster("linear", 7, 1, seed=0, output="softplus")
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
    with pytest.raises(ConfigError, match="linear, softplus, relu"):
        build_forecaster("mlp", output="sigmoid")
    with pytest.raises(ConfigError, match="revin-<name>"):
        build_forecaster("revin-transformer")
    with pytest.raises(ConfigError, match="revin must be true or false"):
        build_forecaster("mlp", revin="yes")
    with pytest.raises(ModelError, match="already wrapped"):
        RevINForecaster(build_forecaster("revin-mlp"))
    with pytest.raises(ModelError, match="cannot wrap"):
        with_revin(nn.Linear(7, 1))
    with pytest.raises(ModelError, match="name"):
        forecaster_from_spec({"window": 7})
    with pytest.raises(ModelError, match="transformer"):
        forecaster_from_spec({"name": "transformer"})
    with pytest.raises(ModelError, match="Linear"):
        forecaster_spec(nn.Linear(7, 1))


# --------------------------------------------------------------------- heads that reach zero
#: a training minimum far above zero: zero demand is at -lo/span ≈ -0.32 in normalized units
SCALER = Scaler(98_000.0, 400_000.0)
SMALL = {"lstm": {"hidden": [16, 16], "head": 8, "dropout": 0.0}, "mlp": {"hidden": [32, 32]}}


@pytest.mark.parametrize("name", NAMES)
def test_default_head_is_unconstrained_and_recorded(name: str) -> None:
    model = build_forecaster(name, 7, 1, seed=0)
    assert forecaster_spec(model)["output"] == "linear"
    zero = float(SCALER.transform(0.0))
    pre = torch.tensor([[zero], [-2.0], [1.5]])
    assert torch.equal(model.output(pre), pre)


def _zero_and_sine_windows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sine windows in [0.1, 0.9] plus as many windows of zero demand (target zero too)."""
    x, y = sine_windows(n, 7)
    zero = float(SCALER.transform(0.0))
    gen = torch.Generator().manual_seed(0)
    x0 = zero + 0.002 * torch.randn(n, 7, generator=gen)
    return torch.cat([x, x0]), torch.cat([y, torch.full((n, 1), zero)])


def _fit_mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("name", NAMES)
def test_a_model_trained_near_zero_forecasts_near_zero(name: str) -> None:
    x, y = _zero_and_sine_windows(96)
    idle = torch.full((1, 7), float(SCALER.transform(0.0)))
    forecasts = {}
    for output in ("linear", "softplus"):
        model = build_forecaster(name, 7, 1, seed=0, output=output, **SMALL.get(name, {}))
        _fit_mse(model, x, y, 300, 1e-2)
        with torch.no_grad():
            forecasts[output] = float(SCALER.inverse_transform(model(idle)))
    # the unconstrained head learns zero demand; softplus cannot go below the training minimum
    assert abs(forecasts["linear"]) < 0.1 * SCALER.lo
    assert forecasts["softplus"] > 0.99 * SCALER.lo


def test_specs_saved_with_the_softplus_head_rebuild_it() -> None:
    # a spec as the forecaster wrote it before the head became a choice of default
    old = {"name": "mlp", "window": 7, "horizon": 1, "output": "softplus", "hidden": [8, 8]}
    old["dropout"] = 0.0
    model = forecaster_from_spec(json.loads(json.dumps(old))).eval()
    assert isinstance(model.output, nn.Softplus)
    assert forecaster_spec(model) == old
    state = build_forecaster("mlp", 7, 1, seed=4, output="softplus", hidden=[8, 8]).state_dict()
    model.load_state_dict(state)
    with torch.no_grad():
        assert (model(-5.0 * torch.ones(3, 7)) >= 0).all()


# ------------------------------------------------------------------------------------ RevIN
@pytest.mark.parametrize("name", NAMES)
def test_revin_forecast_follows_the_window_level_and_spread(name: str) -> None:
    model = build_forecaster(f"revin-{name}", 7, 2, seed=1, **SMALL.get(name, {})).eval()
    gen = torch.Generator().manual_seed(3)
    x = 0.2 + 0.6 * torch.rand(16, 7, generator=gen)
    # exact but for the ε added to each window's variance (about 1 % of it at scale 1/2)
    close = {"rtol": 2e-3, "atol": 1e-4}
    with torch.no_grad():
        base = model(x)
        for scale, shift in ((0.5, 0.0), (4.0, 0.0), (2.0, -0.3)):
            torch.testing.assert_close(model(scale * x + shift), scale * base + shift, **close)
        # the same holds once the affine terms have moved away from their initial values
        model.affine_weight.fill_(1.7)
        model.affine_bias.fill_(-0.4)
        moved = model(x)
        torch.testing.assert_close(model(3.0 * x), 3.0 * moved, **close)
    assert not torch.allclose(moved, base)


@pytest.mark.parametrize("name", NAMES)
def test_revin_constant_window_forecasts_its_level(name: str) -> None:
    model = build_forecaster(name, 7, 1, seed=2, revin=True, **SMALL.get(name, {})).eval()
    zero = float(SCALER.transform(0.0))
    with torch.no_grad():
        out = model(torch.tensor([[zero] * 7, [0.6] * 7]))
    torch.testing.assert_close(out, torch.tensor([[zero], [0.6]]), rtol=0, atol=0.02)


@pytest.mark.parametrize("name", NAMES)
def test_revin_spec_rebuilds_the_same_function(name: str) -> None:
    model = build_forecaster(f"revin-{name}", 5, 2, seed=3, **SMALL.get(name, {}))
    same = build_forecaster(name, 5, 2, seed=3, revin=True, **SMALL.get(name, {}))
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        model.affine_weight.fill_(0.8)
        model.affine_bias.fill_(0.1)
    spec = json.loads(json.dumps(forecaster_spec(model)))
    assert spec["name"] == name and spec["revin"] is True
    rebuilt = forecaster_from_spec(spec).eval()
    assert isinstance(rebuilt, RevINForecaster)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(4, 5)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))
    assert forecaster_spec(rebuilt) == spec


def test_with_revin_wraps_once_and_takes_over_the_head() -> None:
    inner = build_forecaster("linear", 7, 1, seed=0, output="relu")
    wrapped = with_revin(inner)
    assert with_revin(wrapped) is wrapped
    assert isinstance(wrapped.output, nn.ReLU) and isinstance(inner.output, nn.Identity)
    assert forecaster_spec(wrapped) == {**forecaster_spec(inner), "revin": True}
    assert "revin" not in forecaster_spec(build_forecaster("linear"))
