"""Augmentation baselines: what each epoch trains on (corrupted copies of the training
series; windows with their level or burstiness scaled; real windows mixed with windows
sampled from the reference diffusion model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import small_training_data, tiny_diffusion

from drdfl.data.training import TrainingData
from drdfl.data.windows import Scaler
from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig
from drdfl.errors import ConfigError, DataError
from drdfl.methods.augment import (
    BurstAugmentMethod,
    CutoutAugmentMethod,
    DiffusionAugmentMethod,
    GaussianAugmentMethod,
    LevelAugmentMethod,
    PerlinAugmentMethod,
    moving_mean,
)
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task

TASK = get_task("provisioning")
TRAIN = TrainConfig(epochs=2, batch_size=128, patience=None, seed=0)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return small_training_data(0.04, seed=8)


@pytest.fixture(scope="module")
def diffusion(data: TrainingData) -> DiffusionModel:
    return tiny_diffusion(data, 20)


def _epochs(cls, data: TrainingData, train: TrainConfig = TRAIN, **kwargs) -> tuple[list, object]:
    """Fit a method and return the ``(x, y)`` it trained on in each epoch."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Spy(cls):
        def epoch_windows(self, epoch, forecaster, generator):
            out = super().epoch_windows(epoch, forecaster, generator)
            seen.append((out[0].clone(), out[1].clone()))
            return out

    method = Spy(train=train, **kwargs)
    result = method.fit(data, TASK, build_forecaster("linear", 7, 1, seed=0))
    return seen, result


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.numpy()}


# ------------------------------------------------------------------------------ corruptions
def _copy_series(data: TrainingData, x: torch.Tensor) -> np.ndarray:
    """Real-unit series of one copy, read back from its stride-1 windows."""
    n = len(data.train)
    values = np.concatenate([x[:, 0].numpy(), x[-1, 1:].numpy()])
    assert values.shape[0] == n + 6
    return data.scaler.inverse_transform(values.astype(np.float64))


def test_gaussian_copies_add_noise_of_the_stated_size(data: TrainingData) -> None:
    seen, _ = _epochs(GaussianAugmentMethod, data, level=0.05, copies=2)
    n = len(data.train)
    x, y = seen[0]
    real_x, real_y = data.train.tensors()
    assert x.shape[0] == 3 * n
    assert torch.equal(x[:n], real_x) and torch.equal(y[:n], real_y)
    real = data.scaler.inverse_transform(data.series[: n + 6].astype(np.float64))
    peak = float(data.scaler.inverse_transform(data.series.max()))
    for k in (1, 2):
        noise = _copy_series(data, x[k * n : (k + 1) * n]) - real
        assert np.std(noise) == pytest.approx(0.05 * peak, rel=0.15)
        assert abs(np.mean(noise)) < 0.2 * 0.05 * peak
    assert not torch.equal(x[n : 2 * n], x[2 * n :])  # the copies are independent
    assert torch.equal(seen[1][0], x)  # drawn once by default


def test_cutout_zeroes_about_the_stated_fraction(data: TrainingData) -> None:
    seen, _ = _epochs(CutoutAugmentMethod, data, level=0.05, regenerate=True)
    n = len(data.train)
    real = data.scaler.inverse_transform(data.series[: n + 6].astype(np.float64))
    for x, _ in seen:
        copy = _copy_series(data, x[n:])
        zeroed = np.abs(copy) < 1e-3 * real.max()
        assert 0.03 < zeroed.mean() < 0.07
        np.testing.assert_allclose(copy[~zeroed], real[~zeroed], rtol=1e-5)
    assert not torch.equal(seen[0][0], seen[1][0])  # regenerated every epoch


def test_perlin_copies_are_smooth_and_bounded(data: TrainingData) -> None:
    seen, _ = _epochs(PerlinAugmentMethod, data, level=0.05)
    n = len(data.train)
    real = data.scaler.inverse_transform(data.series[: n + 6].astype(np.float64))
    peak = float(data.scaler.inverse_transform(data.series.max()))
    noise = _copy_series(data, seen[0][0][n:]) - real
    assert np.abs(noise).max() <= 0.05 * peak * (1 + 1e-5)
    assert np.abs(noise).max() > 0.02 * peak
    # smooth: consecutive noise values differ far less than the noise itself varies
    assert np.std(np.diff(noise)) < 0.5 * np.std(noise)


def test_corruption_targets_come_from_the_corrupted_series(data: TrainingData) -> None:
    seen, _ = _epochs(GaussianAugmentMethod, data)
    n = len(data.train)
    x, y = seen[0]
    # the target of window i is input slot 6 of window i + 1 in the same copy
    assert torch.equal(y[n:-1, 0], x[n + 1 :, 6])


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (GaussianAugmentMethod, {"level": 0.0}, "augment-gaussian.level"),
        (PerlinAugmentMethod, {"copies": 0}, "augment-perlin.copies"),
        (CutoutAugmentMethod, {"level": 1.0}, "augment-cutout.level"),
    ],
)
def test_bad_corruption_hyperparameters(cls, kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        cls(**kwargs)


# ------------------------------------------------------------------------------ window factors
def _both(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Inputs and targets side by side, ``[N, w + h]`` float64."""
    return torch.cat([x, y], dim=1).double().numpy()


def test_level_scales_each_window_by_one_log_uniform_factor(data: TrainingData) -> None:
    seen, _ = _epochs(LevelAugmentMethod, data, low=0.25, high=4.0)
    real = data.scaler.inverse_transform(_both(*data.train.tensors()))
    assert real.min() > 0  # every ratio below is defined
    logs = []
    for x, y in seen:
        assert x.shape == data.train.x.shape and y.shape == data.train.y.shape
        ratio = data.scaler.inverse_transform(_both(x, y)) / real
        factor = ratio[:, :1]
        # one factor per window, shared by its inputs and its target
        np.testing.assert_allclose(ratio, np.broadcast_to(factor, ratio.shape), rtol=1e-4)
        assert factor.min() >= 0.25 * (1 - 1e-5) and factor.max() <= 4.0 * (1 + 1e-5)
        logs.append(np.log(factor[:, 0]))
    # log-uniform on [ln 1/4, ln 4]: mean 0, standard deviation 2 ln 4 / √12
    assert abs(logs[0].mean()) < 0.1
    assert logs[0].std() == pytest.approx(2 * np.log(4) / np.sqrt(12), rel=0.1)
    assert not np.allclose(logs[0], logs[1])  # fresh factors every epoch


def test_level_keeps_the_stated_share_of_windows_unchanged(data: TrainingData) -> None:
    seen, _ = _epochs(LevelAugmentMethod, data, low=0.5, high=2.0, real_fraction=0.25)
    real_x, real_y = data.train.tensors()
    n = len(data.train)
    for x, y in seen:
        same = (torch.isclose(x, real_x, rtol=1e-6, atol=1e-7).all(1)) & torch.isclose(
            y, real_y, rtol=1e-6, atol=1e-7
        ).all(1)
        assert int(same.sum()) == round(0.25 * n)


def test_burst_scales_deviations_from_the_moving_mean(data: TrainingData) -> None:
    seen, _ = _epochs(BurstAugmentMethod, data, low=0.5, high=2.0, span=5)
    series = np.asarray(data.series, np.float64)
    centred = pd.Series(series).rolling(5, center=True, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(moving_mean(series, 5), centred, rtol=1e-10, atol=1e-12)
    slots = data.train.start[:, None] + np.arange(8)
    mean = centred[slots]
    real = _both(*data.train.tensors())
    floor = data.scaler.transform(0.0)
    for x, y in seen:
        new = _both(x, y)
        clipped = np.isclose(new, floor, atol=1e-6)
        assert new.min() >= floor - 1e-6
        # away from the zero-demand clip: one factor per window, x' - m = s (x - m)
        keep = ~clipped.any(1)
        assert keep.mean() > 0.9
        dev, dev_new = real[keep] - mean[keep], new[keep] - mean[keep]
        factor = (dev * dev_new).sum(1, keepdims=True) / (dev * dev).sum(1, keepdims=True)
        np.testing.assert_allclose(dev_new, factor * dev, rtol=0, atol=1e-5)
        assert factor.min() >= 0.5 * (1 - 1e-4) and factor.max() <= 2.0 * (1 + 1e-4)
        assert np.log(factor).std() == pytest.approx(2 * np.log(2) / np.sqrt(12), rel=0.15)
        # the level stays: window means move far less than the deviations do
        level_change = np.abs(new[keep].mean(1) - real[keep].mean(1))
        assert np.median(level_change) < 0.5 * np.median(np.abs(new[keep] - real[keep]))


@pytest.mark.parametrize("cls", [LevelAugmentMethod, BurstAugmentMethod])
def test_window_factor_draws_follow_the_seed(cls, data: TrainingData) -> None:
    first, _ = _epochs(cls, data)
    again, _ = _epochs(cls, data)
    other, _ = _epochs(cls, data, train=TRAIN.model_copy(update={"seed": 1}))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    assert not torch.equal(first[0][0], other[0][0])


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (LevelAugmentMethod, {"low": 2.0, "high": 1.0}, "augment-level.high"),
        (LevelAugmentMethod, {"low": 0.0}, "augment-level.low"),
        (BurstAugmentMethod, {"span": 1}, "augment-burst.span"),
        (BurstAugmentMethod, {"real_fraction": 1.0}, "augment-burst.real_fraction"),
    ],
)
def test_bad_window_factor_hyperparameters(cls, kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        cls(**kwargs)


# ------------------------------------------------------------------------------ diffusion
def test_diffusion_mix_has_the_stated_real_fraction(
    data: TrainingData, diffusion: DiffusionModel
) -> None:
    seen, result = _epochs(
        DiffusionAugmentMethod,
        data,
        diffusion=diffusion,
        samples=None,
        real_fraction=0.3,
        regenerate=False,
    )
    n = len(data.train)
    real_rows = _rows(data.train.tensors()[0])
    for x, _ in seen:
        assert x.shape[0] == n
        is_real = np.array([row.tobytes() in real_rows for row in x.numpy()])
        assert is_real.sum() == round(0.3 * n)
        assert len(_rows(x[torch.as_tensor(is_real)])) == round(0.3 * n)  # no real repeats
    # generated windows never go below zero demand and come from one fixed pool
    floor = data.scaler.transform(0.0)
    assert all(float(x.min()) >= floor - 1e-6 for x, _ in seen)
    fake = [_rows(x) - real_rows for x, _ in seen]
    # samples=None draws enough segments for one epoch (no generated window used twice)
    pool = result.history[0]["generated_pool"]
    assert n - round(0.3 * n) <= pool < n - round(0.3 * n) + diffusion.segment_length
    assert len(fake[0] & fake[1]) > 0.8 * len(fake[0])
    segments = result.artifacts["generated_segments"]
    assert segments.shape[1] == diffusion.segment_length


def test_diffusion_regenerate_draws_new_segments(
    data: TrainingData, diffusion: DiffusionModel
) -> None:
    seen, _ = _epochs(
        DiffusionAugmentMethod,
        data,
        diffusion=diffusion,
        real_fraction=0.0,
        sampler="ddim",
        steps=5,
    )
    assert not _rows(seen[0][0]) & _rows(seen[1][0])


def test_diffusion_samples_are_mapped_into_the_training_scaler(
    data: TrainingData, diffusion: DiffusionModel
) -> None:
    # the same weights with a scaler twice as wide (same lower end): identical draws u mean
    # real demand lo + 2·span·u, i.e. 2u in the training scaler's units
    wide = diffusion.clone()
    wide.scaler = Scaler(data.scaler.lo, data.scaler.lo + 2 * data.scaler.span)
    kwargs = {"real_fraction": 0.0, "regenerate": False, "sampler": "ddim", "steps": 4}
    _, same = _epochs(DiffusionAugmentMethod, data, diffusion=diffusion, **kwargs)
    _, mapped = _epochs(DiffusionAugmentMethod, data, diffusion=wide, **kwargs)
    a, b = same.artifacts["generated_segments"], mapped.artifacts["generated_segments"]
    floor = data.scaler.transform(0.0)
    inside = np.minimum(a, 2 * a) > floor + 1e-6  # neither value clipped at zero demand
    assert inside.mean() > 0.3
    np.testing.assert_allclose(b[inside], 2 * a[inside], rtol=1e-5, atol=1e-6)


def test_diffusion_from_directory_matches_object(
    data: TrainingData, diffusion: DiffusionModel, tmp_path
) -> None:
    diffusion.save(tmp_path / "diff")
    kwargs = {"real_fraction": 0.5, "sampler": "ddim", "steps": 4}
    from_dir, _ = _epochs(DiffusionAugmentMethod, data, diffusion=tmp_path / "diff", **kwargs)
    from_obj, _ = _epochs(DiffusionAugmentMethod, data, diffusion=diffusion, **kwargs)
    assert torch.allclose(from_dir[0][0], from_obj[0][0])


def test_bad_diffusion_arguments(data: TrainingData, diffusion: DiffusionModel, tmp_path) -> None:
    with pytest.raises(ConfigError, match="diffusion-augment.real_fraction"):
        DiffusionAugmentMethod(diffusion=diffusion, real_fraction=1.0)
    with pytest.raises(ConfigError, match="diffusion-augment.samples"):
        DiffusionAugmentMethod(diffusion=diffusion, samples=0)
    with pytest.raises(ConfigError, match="diffusion-augment.diffusion: .*no diffusion model"):
        DiffusionAugmentMethod(diffusion=tmp_path / "missing")
    short = DiffusionModel(DiffusionModelConfig(segment_length=4, T=5, channel_mults=(1,)))
    with pytest.raises(DataError, match="cannot hold one window"):
        DiffusionAugmentMethod(diffusion=short, train=TRAIN).fit(
            data, TASK, build_forecaster("linear", 7, 1, seed=0)
        )
