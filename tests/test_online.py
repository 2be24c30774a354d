"""Online decision-focused recalibration at test time (``evaluation.online``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from drdfl.cli import main
from drdfl.data.synthetic import generate
from drdfl.data.training import TrainingData
from drdfl.data.windows import Windows, make_windows
from drdfl.errors import ConfigError
from drdfl.evaluation.metrics import WindowScores, score_windows
from drdfl.evaluation.online import (
    SCALES,
    OnlineSettings,
    anchor_rules,
    known_before,
    recalibrate,
)
from drdfl.methods import get_method
from drdfl.methods.settings import TrainConfig
from drdfl.models import build_forecaster
from drdfl.models.naive import NaiveForecaster
from drdfl.tasks import get_task
from tests.conftest import small_training_data

TASK = get_task("provisioning:paper-code")


@pytest.fixture(scope="module")
def fitted() -> tuple[TrainingData, nn.Module]:
    data = small_training_data(0.5, seed=5)
    model = build_forecaster("mlp", 7, 2, seed=0)
    fit = get_method("dfl", train=TrainConfig(epochs=2, batch_size=256)).fit(
        _with_horizon(data, 2, 3), TASK, model
    )
    return data, fit.forecaster


def _with_horizon(data: TrainingData, horizon: int, lead: int) -> TrainingData:
    train = make_windows(data.series, 7, horizon, lead=lead, name="train")
    return TrainingData(train, None, data.scaler, data.series, data.interval_s)


def _test_series(seed: int, level: float = 1.0) -> np.ndarray:
    return level * generate(0.25, "code", seed=seed).values


def _online(
    model: nn.Module, data: TrainingData, values: np.ndarray, lead: int, settings: OnlineSettings
) -> tuple[Windows, WindowScores, WindowScores]:
    windows = make_windows(data.scaler.transform(values), 7, 2, lead=lead, name="code")
    scores = score_windows(model, windows, data.scaler, TASK)
    return (
        windows,
        scores,
        recalibrate(scores, windows, data.scaler, TASK, anchor_rules(model), settings),
    )


def test_a_decision_never_uses_demand_that_has_not_passed(
    fitted: tuple[TrainingData, nn.Module],
) -> None:
    data, model = fitted
    lead, settings = 3, OnlineSettings(halflife=64)
    values = _test_series(11)
    windows, _, online = _online(model, data, values, lead, settings)
    for cut in (values.shape[0] // 3, values.shape[0] // 2, values.shape[0] - 500):
        future = values.copy()
        rng = np.random.default_rng(cut)
        future[cut:] = rng.permutation(values[cut:]) * rng.uniform(0.05, 20, values.shape[0] - cut)
        _, _, again = _online(model, data, future, lead, settings)
        # a window decided at slot start + 7 has seen slots up to start + 6 only
        decided_before = windows.start + 7 <= cut
        assert decided_before.sum() > 1000
        assert np.array_equal(online.decision[decided_before], again.decision[decided_before])
        later = ~decided_before
        assert not np.array_equal(online.decision[later], again.decision[later])


def test_known_windows_wait_for_the_lead_and_the_horizon() -> None:
    start = np.arange(10)
    known = known_before(start, lead=3, horizon=2)
    # window m is known at window n once m + 3 + 2 <= n
    assert known.tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]


def test_the_first_decisions_are_the_models_own(fitted: tuple[TrainingData, nn.Module]) -> None:
    data, model = fitted
    _, scores, online = _online(model, data, _test_series(12), 3, OnlineSettings(halflife=64))
    np.testing.assert_allclose(online.decision[:5], scores.decision[:5])
    np.testing.assert_allclose(online.optimal_cost, scores.optimal_cost)


def test_online_recalibration_recovers_from_a_level_shift(
    fitted: tuple[TrainingData, nn.Module],
) -> None:
    data, model = fitted
    settings = OnlineSettings(halflife=128)
    shifted = _test_series(13, level=0.35)  # demand a third of what trained the model
    _, off, on = _online(model, data, shifted, 3, settings)
    assert on.regret.mean() < 0.9 * off.regret.mean()
    _, off_id, on_id = _online(model, data, _test_series(14), 3, settings)
    assert on_id.regret.mean() <= 1.05 * off_id.regret.mean()


def test_an_anchored_model_blends_its_own_rule(fitted: tuple[TrainingData, nn.Module]) -> None:
    data, _ = fitted
    model = build_forecaster("mlp", 7, 2, seed=0, anchor="ets", anchor_alpha=0.3)
    own, mean = anchor_rules(model, ("mean", "ets"))
    x = torch.as_tensor(data.val.x[:10])
    assert torch.allclose(own(x), NaiveForecaster(7, 2, "ets", alpha=0.3)(x))
    assert mean.spec["rule"] == "mean"  # ets is the model's own rule already
    assert [r.spec["rule"] for r in anchor_rules(build_forecaster("lstm", 7, 2))] == ["last"]


def test_a_test_set_too_short_to_adapt_is_refused(fitted: tuple[TrainingData, nn.Module]) -> None:
    data, model = fitted
    with pytest.raises(ConfigError, match="evaluation.online_halflife"):
        _online(model, data, _test_series(15)[:400], 3, OnlineSettings(halflife=1000))


def test_a_run_refuses_online_on_a_short_test_set_before_claiming_out(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "seeds=0",
        "--set",
        "methods=naive-last",
        "--set",
        "evaluation.online=true",
        "--set",
        "evaluation.online_halflife=1e6",
    ]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert not out.exists()


def test_the_experts_blend_every_rule_and_start_with_the_model() -> None:
    settings = OnlineSettings(rules=("mean",))
    experts = settings.experts(2)
    assert tuple(experts[0]) == (1.0, 0.0, 0.0)
    blends = {(r, lam) for _, r, lam in experts if lam > 0}
    assert blends == {(0.0, 0.5), (0.0, 1.0), (1.0, 0.5), (1.0, 1.0)}
    assert len(experts) == len(SCALES) * (1 + 2 * 2)
