"""The untrained baselines (``naive-*``) and forecasters anchored on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drdfl.config import resolve_config
from drdfl.data.training import TrainingData
from drdfl.errors import ConfigError
from drdfl.evaluation.metrics import score_windows
from drdfl.methods import get_method
from drdfl.methods.naive import ALPHA_GRID
from drdfl.methods.settings import TrainConfig
from drdfl.models import build_forecaster, forecaster_from_spec, forecaster_spec
from drdfl.models.naive import AnchoredForecaster, NaiveForecaster, rule_weights
from drdfl.tasks import get_task
from tests.conftest import small_training_data

TASK = get_task("provisioning:paper-code")


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return small_training_data(0.5, seed=3)


def _regret(model: torch.nn.Module, data: TrainingData) -> float:
    return float(score_windows(model, data.val, data.scaler, TASK).regret.mean())


def test_rules_are_what_a_planner_computes_by_hand(data: TrainingData) -> None:
    x = torch.as_tensor(data.val.x[:50])
    values = data.val.x[:50].astype(np.float64)
    last = NaiveForecaster(7, 2, "last")(x)
    assert torch.equal(last, x[:, -1:].expand(-1, 2))
    mean = NaiveForecaster(7, 1, "mean")(x)
    np.testing.assert_allclose(mean[:, 0].numpy(), values.mean(axis=1), rtol=1e-5)
    # exponential smoothing started at the first value: l = a x_t + (1 - a) l
    level = values[:, 0].copy()
    for t in range(1, 7):
        level = 0.3 * values[:, t] + 0.7 * level
    ets = NaiveForecaster(7, 1, "ets", alpha=0.3)(x)
    np.testing.assert_allclose(ets[:, 0].numpy(), level, rtol=1e-5, atol=1e-6)
    # seasonal, period 5, lead 1, horizon 2: slots 7+1+j read 5 earlier, i.e. 3 and 4
    seasonal = NaiveForecaster(7, 2, "seasonal", period=5, lead=1)(x)
    assert torch.equal(seasonal, x[:, 3:5])
    assert torch.allclose(rule_weights("ets", 7, 1, 1.0), rule_weights("last", 7, 1))


def test_ets_chooses_the_smoothing_constant_with_the_lowest_training_regret(
    data: TrainingData,
) -> None:
    fit = get_method("naive-ets").fit(data, TASK, build_forecaster("mlp"))
    alpha = fit.artifacts["alpha"]
    assert alpha in [pytest.approx(float(a)) for a in ALPHA_GRID]
    train = type(data)(data.train, data.train, data.scaler, data.series)

    def regret(a: float) -> float:
        return _regret(NaiveForecaster(7, 1, "ets", alpha=a), train)

    best = regret(alpha)
    for other in (0.02, 0.1, 0.5, 1.0):  # persistence is α = 1
        assert best <= regret(other) + 1e-9
    assert fit.history[0]["alpha"] == alpha
    assert fit.history[0]["train_loss"] == pytest.approx(best, rel=1e-4)


def test_naive_scaled_multiplies_demand_by_its_decision_optimal_factor(data: TrainingData) -> None:
    fit = get_method("naive-scaled").fit(data, TASK, build_forecaster("mlp"))
    model = fit.forecaster
    rule, scale = fit.artifacts["rule"], fit.artifacts["scale"]
    plain = NaiveForecaster(7, 1, rule, alpha=fit.artifacts.get("alpha"))
    x = torch.as_tensor(data.val.x[:100])
    real = data.scaler.inverse_transform(model(x)).detach().numpy()
    base = data.scaler.inverse_transform(plain(x)).detach().numpy()
    np.testing.assert_allclose(real, scale * base, rtol=1e-4)  # a multiple of demand itself
    train = type(data)(data.train, data.train, data.scaler, data.series)
    scaled, unscaled = _regret(model, train), _regret(plain, train)
    assert scaled <= unscaled + 1e-9
    for k in (0.5 * scale, 2 * scale):
        other = NaiveForecaster(
            7, 1, rule, alpha=plain.spec["alpha"], scale=k, zero=float(data.scaler.transform(0.0))
        )
        assert scaled <= _regret(other, train) + 1e-9


def test_a_naive_model_saves_and_rebuilds(data: TrainingData) -> None:
    fit = get_method("naive-scaled").fit(data, TASK, build_forecaster("mlp"))
    again = forecaster_from_spec(forecaster_spec(fit.forecaster))
    again.load_state_dict(fit.forecaster.state_dict())
    x = torch.as_tensor(data.val.x[:20])
    assert torch.equal(again(x), fit.forecaster(x))


@pytest.mark.parametrize("name", ["lstm", "mlp", "linear"])
@pytest.mark.parametrize("anchor", ["last", "mean", "ets"])
def test_an_untrained_anchored_forecaster_is_its_rule(
    name: str, anchor: str, data: TrainingData
) -> None:
    model = build_forecaster(name, 7, 2, seed=0, anchor=anchor, anchor_alpha=0.4)
    rule = NaiveForecaster(7, 2, anchor, alpha=0.4 if anchor == "ets" else None)
    x = torch.as_tensor(data.val.x[:64])
    model.eval()
    assert torch.allclose(model(x), rule(x), atol=1e-7)


def test_a_trained_anchored_forecaster_follows_level_and_scale(data: TrainingData) -> None:
    model = build_forecaster("mlp", 7, 1, seed=0, anchor="ets")
    fit = get_method("dfl", train=TrainConfig(epochs=2, batch_size=256)).fit(data, TASK, model)
    trained = fit.forecaster
    assert isinstance(trained, AnchoredForecaster)
    assert trained.alpha in [pytest.approx(float(a)) for a in ALPHA_GRID]  # chosen, by regret
    x = torch.as_tensor(data.val.x[:64])
    with torch.no_grad():
        moved = trained(3.0 * x + 0.25)
        assert not torch.allclose(trained(x), NaiveForecaster(7, 1, "ets", alpha=trained.alpha)(x))
        assert torch.allclose(moved, 3.0 * trained(x) + 0.25, atol=1e-4)
    again = forecaster_from_spec(forecaster_spec(trained))
    again.load_state_dict(trained.state_dict())
    again.eval()
    assert torch.allclose(again(x), trained(x))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["anchor=ets", "data.window=1"], "anchor"),
        (["anchor_alpha=0"], "anchor_alpha"),
        (["anchor_alpha=1.5"], "anchor_alpha"),
        (["methods=naive-mean", "data.window=1"], "naive-mean"),
        (["methods=naive-ets", "method_params.naive-ets.alpha=1.2"], "method_params.naive-ets"),
        (["methods=naive-seasonal"], "naive-seasonal"),  # one day of 5-s slots > 7
        (["methods=naive-seasonal", "method_params.naive-seasonal.period=9"], "naive-seasonal"),
    ],
)
def test_a_rule_that_cannot_run_is_one_error_naming_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        resolve_config("quick", None, overrides)


def test_a_seasonal_rule_runs_where_the_window_holds_a_day() -> None:
    cfg = resolve_config(
        "quick",
        None,
        ["methods=naive-seasonal", "data.interval=5min", "data.window=288"],
    )
    assert cfg.data.window == 288
