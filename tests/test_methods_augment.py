"""Augmentation baselines: what each epoch trains on (corrupted copies of the training
series; real windows mixed with windows sampled from the reference diffusion model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_training_data, tiny_diffusion

from drdfl.config import TrainConfig
from drdfl.data.windows import Scaler
from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig
from drdfl.errors import ConfigError, DataError
from drdfl.methods.augment import (
    CutoutAugmentMethod,
    DiffusionAugmentMethod,
    GaussianAugmentMethod,
    PerlinAugmentMethod,
)
from drdfl.methods.base import TrainingData
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


def _epochs(cls, data: TrainingData, **kwargs) -> tuple[list, object]:
    """Fit a method and return the ``(x, y)`` it trained on in each epoch."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Spy(cls):
        def epoch_windows(self, epoch, forecaster, generator):
            out = super().epoch_windows(epoch, forecaster, generator)
            seen.append((out[0].clone(), out[1].clone()))
            return out

    method = Spy(train=TRAIN, **kwargs)
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
