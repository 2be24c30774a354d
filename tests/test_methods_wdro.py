"""W-DRO: the Frank–Wolfe attack stays in its ball, raises the decision loss, and leaves
the forecaster untouched; training on attacked windows runs and records the attack."""

from __future__ import annotations

import pytest
import torch
from conftest import small_training_data

from drdfl.data.training import TrainingData
from drdfl.errors import ConfigError
from drdfl.methods.losses import sample_losses
from drdfl.methods.settings import TrainConfig
from drdfl.methods.wdro import WDROMethod, frank_wolfe_attack
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task

TASK = get_task("provisioning")


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return small_training_data(0.05, seed=3)


def _regret(data: TrainingData):
    def loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sample_losses(pred, y, TASK, data.scaler, "regret")

    return loss


def _persistence() -> torch.nn.Module:
    """Linear forecaster that repeats the window's last value: a sensible, input-driven model."""
    forecaster = build_forecaster("linear", 7, 1, seed=0)
    with torch.no_grad():
        forecaster.linear.weight.zero_()
        forecaster.linear.weight[0, -1] = 1.0
        forecaster.linear.bias.zero_()
    return forecaster


@pytest.mark.parametrize(
    ("build", "radius", "gain"),
    [
        (_persistence, 2.0, 5.0),
        (_persistence, 0.1, 1.5),
        (lambda: build_forecaster("mlp", 7, 1, seed=0), 2.0, 1.0),
        (lambda: build_forecaster("lstm", 7, 1, seed=0), 0.5, 1.0),
    ],
    ids=["persistence-2", "persistence-0.1", "mlp-2", "lstm-0.5"],
)
def test_attack_stays_in_ball_and_bounds_and_raises_regret(
    data: TrainingData, build, radius: float, gain: float
) -> None:
    forecaster = build()
    forecaster.train()
    x, y = data.train.tensors()
    x, y = x[:64], y[:64]
    loss = _regret(data)
    adv = frank_wolfe_attack(forecaster, loss, x, y, radius, steps=15, bounds=(0.0, 1.0))

    assert float((adv - x).norm(dim=1).max()) <= radius + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert forecaster.training  # mode restored
    forecaster.eval()
    with torch.no_grad():
        clean, attacked = loss(forecaster(x), y), loss(forecaster(adv), y)
    assert float(attacked.mean()) > gain * float(clean.mean())
    assert float((attacked >= clean - 1e-7).float().mean()) > 0.9


def test_attack_leaves_parameters_and_their_gradients_alone(data: TrainingData) -> None:
    forecaster = build_forecaster("lstm", 7, 1, seed=1)
    for p in forecaster.parameters():
        p.grad = torch.full_like(p, 0.25)
    before = {k: v.clone() for k, v in forecaster.state_dict().items()}
    x, y = data.train.tensors()
    frank_wolfe_attack(forecaster, _regret(data), x[:64], y[:64], 1.0, steps=5)
    assert all(torch.equal(before[k], v) for k, v in forecaster.state_dict().items())
    assert all(torch.all(p.grad == 0.25) for p in forecaster.parameters())


def test_unbounded_attack_may_leave_the_training_range(data: TrainingData) -> None:
    forecaster = build_forecaster("mlp", 7, 1, seed=2)
    x, y = data.train.tensors()
    loss = _regret(data)
    free = frank_wolfe_attack(forecaster, loss, x[:256], y[:256], 2.0, steps=15, bounds=None)
    assert float((free - x[:256]).norm(dim=1).max()) <= 2.0 + 1e-6
    assert float(free.min()) < 0.0 or float(free.max()) > 1.0


def test_mse_attack_raises_mse(data: TrainingData) -> None:
    forecaster = build_forecaster("mlp", 7, 1, seed=4)
    x, y = data.train.tensors()
    x, y = x[:128], y[:128]

    def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sample_losses(pred, target, TASK, data.scaler, "mse")

    adv = frank_wolfe_attack(forecaster, mse, x, y, 0.3, steps=10)
    with torch.no_grad():
        assert float(mse(forecaster(adv), y).mean()) > float(mse(forecaster(x), y).mean())


def test_wdro_fit_records_the_attack_gain(data: TrainingData) -> None:
    method = WDROMethod(
        radius=0.3, steps=3, train=TrainConfig(epochs=2, batch_size=64, lr=1e-3, seed=0)
    )
    forecaster = build_forecaster("mlp", 7, 1, seed=0)
    result = method.fit(data, TASK, forecaster)
    assert len(result.history) == 2
    for row in result.history:
        assert row["attack_loss_adv"] > row["attack_loss_clean"] > 0.0


@pytest.mark.parametrize(
    "kwargs", [{"radius": 0.0}, {"steps": 0}, {"bounds": (1.0, 0.0)}, {"attack_objective": "x"}]
)
def test_bad_hyperparameters_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=f"wdro.{next(iter(kwargs))}"):
        WDROMethod(**kwargs)
