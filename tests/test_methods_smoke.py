"""Every registered method trains end to end on the built-in synthetic data in seconds, and
the same seed gives the same numbers (the CI smoke test)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import small_training_data, tiny_diffusion, tiny_method_kwargs

from drdfl.config import resolve_config
from drdfl.data.training import TrainingData
from drdfl.diffusion.model import DiffusionModel
from drdfl.errors import ConfigError
from drdfl.methods import METHODS, get_method
from drdfl.methods.labels import label_order, label_style
from drdfl.methods.registry import REGISTRY, SHARED_HISTORY
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task

TASK = get_task("provisioning")
TINY = TrainConfig(epochs=2, batch_size=64, lr=1e-3, patience=None, seed=11)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return small_training_data(0.04, seed=5)


@pytest.fixture(scope="module")
def diffusion(data: TrainingData) -> DiffusionModel:
    """A barely trained tiny diffusion model (the smoke test needs samples, not good ones)."""
    return tiny_diffusion(data, 10)


def _fit(
    name: str, data: TrainingData, diffusion: DiffusionModel
) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    method = get_method(name, train=TINY, **tiny_method_kwargs(name, diffusion))
    forecaster = build_forecaster("mlp", 7, 1, seed=3, hidden=(16, 16), dropout=0.1)
    result = method.fit(data, TASK, forecaster)
    history = [{k: v for k, v in row.items() if k != "time_s"} for row in result.history]
    return history, result.forecaster.state_dict()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_and_is_reproducible(
    name: str, data: TrainingData, diffusion: DiffusionModel
) -> None:
    initial = build_forecaster("mlp", 7, 1, seed=3, hidden=(16, 16), dropout=0.1).state_dict()
    history, state = _fit(name, data, diffusion)

    untrained = METHODS[name].untrained
    assert [row["epoch"] for row in history] == ([0] if untrained else [0, 1])
    assert all(math.isfinite(row["train_loss"]) for row in history)
    assert all(0.0 <= row["val_regret"] < math.inf for row in history)
    if untrained:  # a rule in place of the forecaster it was given: nothing trained
        assert set(state) == {"weights", "scale", "zero"}
    else:  # it did train (revin-dfl wraps the forecaster: its weights sit under ``inner.``)
        trained = {k.removeprefix("inner."): v for k, v in state.items()}
        assert any(k in initial and not torch.equal(initial[k], v) for k, v in trained.items())
    declared = set(SHARED_HISTORY) | set(METHODS[name].history)
    assert {k for row in history for k in row} <= declared | {"time_s"}  # registry is complete

    history2, state2 = _fit(name, data, diffusion)
    assert history2 == history
    assert all(torch.equal(state[k], state2[k]) for k in state)


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid methods: .*dfl.*wdro.*kldro"):
        get_method("robust")


def test_registry_entries_are_consistent() -> None:
    for spec in REGISTRY:
        assert spec.cls.name == spec.name
        assert spec.params_model is spec.cls.Params
        assert not set(spec.history) & set(SHARED_HISTORY)
    styles = {(label_style(s.name)["color"], label_style(s.name)["hatch"]) for s in REGISTRY}
    assert len(styles) == len(REGISTRY)  # every method is told apart in a figure
    labels = [
        "skyline",
        "threed@0.1",
        "dfl",
        "threed-mse",
        "threed@0.02",
        "threed",
        "mse",
        "threed-off",
        "dfl+online",
        "naive-last",
        "threed+online",
    ]
    assert sorted(labels, key=label_order) == [
        "naive-last",
        "mse",
        "dfl",
        "dfl+online",
        "threed",
        "threed+online",
        "threed-mse",
        "threed-off",
        "threed@0.02",
        "threed@0.1",
        "skyline",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method_params.thredd.budget=0.5", "method_params.thredd: unknown method"),
        ("method_params.threed.budgett=0.5", "method_params.threed.budgett"),
        ("method_params.kldro.radius=-1", "method_params.kldro.radius"),
        ("method_params.dfl.lr=0.1", "method_params.dfl.lr"),
    ],
)
def test_method_params_are_validated_with_the_config(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config("quick", overrides=[override])
