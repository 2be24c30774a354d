"""``revin-dfl``: DFL with the forecaster wrapped in RevIN at fit time; the saved model
rebuilds from its spec, and the fitted forecaster follows a window's level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_training_data
from torch import nn

from drdfl.artifacts import TrainedModel, load_model, save_model
from drdfl.data.training import TrainingData
from drdfl.errors import ModelError
from drdfl.methods import get_method
from drdfl.methods.settings import TrainConfig
from drdfl.models import RevINForecaster, build_forecaster, forecaster_spec
from drdfl.tasks import get_task

TASK = get_task("provisioning")
TRAIN = TrainConfig(epochs=2, batch_size=128, patience=None, seed=0)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return small_training_data(0.04, seed=8)


def test_revin_dfl_wraps_a_copy_and_saves_a_model_that_rebuilds(
    data: TrainingData, tmp_path
) -> None:
    given = build_forecaster("mlp", 7, 1, seed=0, hidden=[16, 16], output="relu")
    before = {k: v.clone() for k, v in given.state_dict().items()}
    result = get_method("revin-dfl", train=TRAIN).fit(data, TASK, given)
    fitted = result.forecaster
    assert isinstance(fitted, RevINForecaster)
    assert forecaster_spec(fitted) == {**forecaster_spec(given), "revin": True}
    # the forecaster passed in is neither trained nor stripped of its head
    assert fitted.inner is not given
    assert all(torch.equal(v, before[k]) for k, v in given.state_dict().items())
    assert isinstance(given.output, nn.ReLU) and isinstance(fitted.output, nn.ReLU)

    trained = TrainedModel(fitted, data.scaler, TASK, 7, 1, method="revin-dfl")
    back = load_model(save_model(trained, tmp_path / "m"))
    x = torch.as_tensor(data.val.x[:64])
    with torch.no_grad():
        assert torch.equal(back.forecaster(x), fitted(x))

    # a demand level four times higher in real units is an affine map of normalized units,
    # and the fitted forecaster follows it
    real = data.scaler.inverse_transform(data.val.x[:64].astype(np.float64))
    x4 = torch.as_tensor(data.scaler.transform(4.0 * real), dtype=x.dtype)
    with torch.no_grad():
        y4 = data.scaler.inverse_transform(fitted(x4).double())
        y1 = data.scaler.inverse_transform(fitted(x).double())
    torch.testing.assert_close(y4, 4.0 * y1, rtol=1e-4, atol=1.0)


def test_revin_dfl_trains_an_already_wrapped_forecaster_as_it_is(data: TrainingData) -> None:
    wrapped = build_forecaster("revin-linear", 7, 1, seed=0)
    result = get_method("revin-dfl", train=TRAIN).fit(data, TASK, wrapped)
    assert isinstance(result.forecaster, RevINForecaster)
    assert not isinstance(result.forecaster.inner, RevINForecaster)
    # the same as DFL on the same wrapped forecaster
    dfl = get_method("dfl", train=TRAIN).fit(data, TASK, build_forecaster("revin-linear", seed=0))
    assert [h["train_loss"] for h in result.history] == [h["train_loss"] for h in dfl.history]


def test_revin_dfl_needs_a_drdfl_forecaster(data: TrainingData) -> None:
    with pytest.raises(ModelError, match="revin-dfl: needs a drdfl forecaster"):
        get_method("revin-dfl", train=TRAIN).fit(data, TASK, nn.Linear(7, 1))
