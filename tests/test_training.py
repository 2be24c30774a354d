"""The shared training loop: determinism, learning, early stopping, NaN guard, saving."""

import json

import numpy as np
import pytest
import torch

from drdfl.artifacts import TrainedModel, load_model, save_model
from drdfl.data.windows import Scaler, make_windows
from drdfl.errors import ModelError, TrainingError
from drdfl.methods import DFLMethod, TrainingData, get_method
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task


def _data(n: int = 3000, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    demand = 200_000 + 120_000 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 15_000, n)
    demand = np.clip(demand, 0, None)
    cut = int(0.8 * n)
    scaler = Scaler.fit(demand[:cut])
    norm = scaler.transform(demand)
    return TrainingData(
        make_windows(norm[:cut], 7, 1), make_windows(norm[cut:], 7, 1), scaler, norm[:cut]
    )


def _fit(method: str = "dfl", seed: int = 0, **train):
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 128, "lr": 3e-3, "seed": seed, **train})
    model = build_forecaster("mlp", 7, 1, seed=seed)
    return get_method(method, train=cfg).fit(_data(), get_task("provisioning"), model)


def test_same_seed_identical_numbers():
    a, b = _fit(seed=3), _fit(seed=3)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    x = torch.as_tensor(_data().val.x[:50])
    assert torch.equal(a.forecaster(x), b.forecaster(x))
    c = _fit(seed=4)
    assert [h["train_loss"] for h in c.history] != [h["train_loss"] for h in a.history]


def test_fit_leaves_the_global_rng_alone_and_seeds_dropout_itself():
    def fit(seed: int):
        model = build_forecaster("mlp", 7, 1, seed=0, hidden=[16, 16], dropout=0.3)
        cfg = TrainConfig(epochs=2, batch_size=256, seed=seed)
        return get_method("dfl", train=cfg).fit(_data(n=1500), get_task("provisioning"), model)

    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    a = fit(seed=1)
    assert torch.equal(torch.rand(4), expected)  # the caller's random stream is untouched
    torch.manual_seed(99)  # another caller state: the same dropout masks, the same model
    b = fit(seed=1)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    c = fit(seed=2)
    assert [h["train_loss"] for h in c.history] != [h["train_loss"] for h in a.history]


def test_dfl_lowers_validation_regret_below_untrained():
    data, task = _data(), get_task("provisioning")
    untrained = build_forecaster("mlp", 7, 1, seed=0)
    probe = DFLMethod(train=TrainConfig(epochs=1))
    probe._task, probe._scaler = task, data.scaler
    probe._xv, probe._yv = data.val.tensors()
    before = probe.validation_regret(untrained)
    result = _fit(epochs=6)
    assert min(h["val_regret"] for h in result.history) < 0.5 * before
    assert result.artifacts["best_epoch"] >= 0


def test_mse_method_minimises_squared_error():
    result = _fit("mse", epochs=4)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert losses[-1] < 0.05  # normalized units: a sine in [0, 1] is learnable


def test_early_stopping_stops_when_validation_does_not_improve():
    result = _fit(epochs=20, lr=1e-12, patience=2, scheduler="none")
    assert len(result.history) == 3  # best at epoch 0, then two stale epochs


class _PoisonedAtEpoch1(DFLMethod):
    def epoch_windows(self, epoch, forecaster, generator):
        x, y = super().epoch_windows(epoch, forecaster, generator)
        if epoch == 1:
            x = x.clone()
            x[:] = float("nan")
        return x, y


def test_nan_stops_with_epoch_and_batch_and_keeps_last_good(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    method = _PoisonedAtEpoch1(train=TrainConfig(epochs=3, batch_size=128), checkpoint=ckpt)
    model = build_forecaster("mlp", 7, 1, seed=0)
    with pytest.raises(TrainingError, match=r"epoch 1, batch 0.*epoch 0"):
        method.fit(_data(), get_task("provisioning"), model)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_model_directory_roundtrip_and_bad_directories(tmp_path):
    result = _fit(epochs=1)
    data = _data()
    trained = TrainedModel(
        result.forecaster,
        data.scaler,
        get_task("provisioning:paper-text"),
        7,
        1,
        method="dfl",
        seed=0,
        config={"train": {"epochs": 1, "patience": None}},
        history=result.history,
    )
    out = save_model(trained, tmp_path / "m")
    back = load_model(out)
    x = torch.as_tensor(data.val.x[:20])
    assert torch.equal(back.forecaster(x), result.forecaster(x))
    assert back.scaler == data.scaler
    assert back.task.to_dict() == trained.task.to_dict()
    assert len(back.history) == 1 and back.config["train"]["epochs"] == 1

    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing")
    meta = json.loads((out / "model.json").read_text())
    meta["format_version"] = 99
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="incompatible"):
        load_model(out)


def test_a_validation_score_that_is_not_a_number_stops_training_naming_the_epoch():
    data = _data()
    x = data.val.x.copy()
    x[5, 3] = np.nan  # one unreadable validation window
    bad = TrainingData(data.train, type(data.val)(x, data.val.y, data.val.start), data.scaler,
                       data.series)  # fmt: skip
    method = get_method("dfl", train=TrainConfig(epochs=3, batch_size=128, patience=1))
    with pytest.raises(TrainingError, match="validation regret is not a number at epoch 0"):
        method.fit(bad, get_task("provisioning"), build_forecaster("mlp", 7, 1, seed=0))


def test_without_validation_windows_every_epoch_runs_and_the_last_is_kept():
    data = _data()
    alone = TrainingData(data.train, None, data.scaler, data.series)
    method = get_method("dfl", train=TrainConfig(epochs=3, batch_size=128, patience=1))
    fit = method.fit(alone, get_task("provisioning"), build_forecaster("mlp", 7, 1, seed=0))
    assert [row["epoch"] for row in fit.history] == [0, 1, 2]
    assert fit.artifacts["best_epoch"] == -1  # no selection: the last epoch's model
