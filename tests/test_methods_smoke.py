"""Every registered method trains end to end on the built-in synthetic data in seconds, and
the same seed gives the same numbers (the CI smoke test)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from drdfl.config import TrainConfig
from drdfl.data.synthetic import generate
from drdfl.data.windows import Scaler, make_windows, split_series
from drdfl.errors import ConfigError
from drdfl.methods import METHODS, get_method
from drdfl.methods.base import TrainingData
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task

TASK = get_task("provisioning")
TINY = TrainConfig(epochs=2, batch_size=64, lr=1e-3, patience=None, seed=11)

#: constructor arguments that make each method tiny; a method missing here runs with defaults
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "wdro": {"radius": 0.5, "steps": 3},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models train several times faster on one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    train, val = split_series(generate(0.04, "chat", seed=5), (0.8, 0.2))
    scaler = Scaler.fit(train.values)
    series = scaler.transform(train.values)
    return TrainingData(
        make_windows(series, 7, 1, name="train"),
        make_windows(scaler.transform(val.values), 7, 1, name="val"),
        scaler,
        series,
    )


def _fit(name: str, data: TrainingData) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    method = get_method(name, train=TINY, **TINY_KWARGS.get(name, {}))
    forecaster = build_forecaster("mlp", 7, 1, seed=3, hidden=(16, 16), dropout=0.1)
    result = method.fit(data, TASK, forecaster)
    history = [{k: v for k, v in row.items() if k != "time_s"} for row in result.history]
    return history, result.forecaster.state_dict()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_and_is_reproducible(name: str, data: TrainingData) -> None:
    initial = build_forecaster("mlp", 7, 1, seed=3, hidden=(16, 16), dropout=0.1).state_dict()
    history, state = _fit(name, data)

    assert [row["epoch"] for row in history] == [0, 1]
    assert all(math.isfinite(row["train_loss"]) for row in history)
    assert all(0.0 <= row["val_regret"] < math.inf for row in history)
    assert any(not torch.equal(initial[k], v) for k, v in state.items())  # it did train

    history2, state2 = _fit(name, data)
    assert history2 == history
    assert all(torch.equal(state[k], state2[k]) for k in state)


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid methods: .*dfl.*kldro.*wdro"):
        get_method("robust")
