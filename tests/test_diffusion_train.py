"""Training: it learns, it is seeded, it checkpoints and resumes, it rejects bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drdfl.data.series import Series
from drdfl.diffusion.ddpm import score_matching_loss
from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig, DiffusionTrainConfig
from drdfl.diffusion.segments import cut_segments
from drdfl.diffusion.train import fit_series, train_diffusion
from drdfl.errors import ConfigError, DataError, ModelError
from drdfl.seeding import torch_generator

CFG = DiffusionModelConfig(
    segment_length=16, T=20, beta_start=0.01, beta_end=0.4, base_channels=8, channel_mults=(1, 2)
)
TRAIN = DiffusionTrainConfig(iterations=10, batch_size=16, lr=3e-3, ema_decay=0.9, seed=3)


def _series(n: int = 400, seed: int = 0) -> np.ndarray:
    """Normalized values around 0.8 with a little noise."""
    return 0.8 + 0.03 * np.random.default_rng(seed).standard_normal(n)


def _weights(model: DiffusionModel) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_same_seed_same_run() -> None:
    torch.manual_seed(9)  # the initial weights come from the global generator
    a = DiffusionModel(CFG)
    torch.manual_seed(9)
    b = DiffusionModel(CFG)
    ra = train_diffusion(a, _series(), TRAIN, progress=False)
    rb = train_diffusion(b, _series(), TRAIN, progress=False)
    assert np.array_equal(ra.losses, rb.losses) and ra.iterations == 10
    assert torch.equal(_weights(a), _weights(b))
    torch.manual_seed(9)
    c = DiffusionModel(CFG)
    rc = train_diffusion(c, _series(), TRAIN.model_copy(update={"seed": 4}), progress=False)
    assert not np.array_equal(ra.losses, rc.losses)


def test_resume_continues_the_same_run(tmp_path: Path) -> None:
    cfg = TRAIN.model_copy(update={"checkpoint_every": 5})
    torch.manual_seed(0)
    full = DiffusionModel(CFG)
    r_full = train_diffusion(full, _series(), cfg, progress=False)

    torch.manual_seed(0)
    first = DiffusionModel(CFG)
    train_diffusion(
        first, _series(), cfg.model_copy(update={"iterations": 5}), tmp_path, progress=False
    )
    assert (tmp_path / "checkpoint.pt").is_file()
    torch.manual_seed(123)  # a fresh model: everything must come from the checkpoint
    resumed = DiffusionModel(CFG)
    r_res = train_diffusion(resumed, _series(), cfg, tmp_path, progress=False)
    assert r_res.resumed_from == 5 and r_res.iterations == 10
    assert np.array_equal(r_res.losses, r_full.losses)
    assert torch.equal(_weights(resumed), _weights(full))


def test_checkpoint_from_another_configuration(tmp_path: Path) -> None:
    train_diffusion(DiffusionModel(CFG), _series(), TRAIN, tmp_path, progress=False)
    other = DiffusionModel(CFG.model_copy(update={"base_channels": 4}))
    with pytest.raises(ModelError, match="base_channels is 8 there, 4 here"):
        train_diffusion(other, _series(), TRAIN, tmp_path, progress=False)
    with pytest.raises(ModelError, match="lr is 0.003 there, 0.01 here"):
        train_diffusion(
            DiffusionModel(CFG),
            _series(),
            TRAIN.model_copy(update={"lr": 1e-2}),
            tmp_path,
            progress=False,
        )
    with pytest.raises(ModelError, match="other data"):
        train_diffusion(DiffusionModel(CFG), _series(seed=1), TRAIN, tmp_path, progress=False)


def test_training_lowers_the_loss_on_unseen_segments() -> None:
    torch.manual_seed(0)
    model = DiffusionModel(CFG)
    unseen = torch.as_tensor(cut_segments(_series(seed=5), 16), dtype=torch.float32)

    def j() -> float:
        with torch.no_grad():
            return score_matching_loss(model, unseen, generator=torch_generator(0)).item()

    before = j()
    cfg = TRAIN.model_copy(update={"iterations": 60, "batch_size": 32})
    result = train_diffusion(model, _series(), cfg, progress=False)
    assert j() < 0.3 * before
    assert result.losses[-10:].mean() < 0.3 * result.losses[:5].mean()


def test_t_range_and_budget() -> None:
    cfg = TRAIN.model_copy(update={"t_range": (1, 5)})
    assert train_diffusion(DiffusionModel(CFG), _series(), cfg, progress=False).iterations == 10
    with pytest.raises(ConfigError, match="t_range"):
        train_diffusion(
            DiffusionModel(CFG),
            _series(),
            TRAIN.model_copy(update={"t_range": (3, 21)}),
            progress=False,
        )
    r = train_diffusion(DiffusionModel(CFG), _series(), TRAIN, time_budget_s=0.0, progress=False)
    assert r.iterations == 1 and r.stopped_by_budget


def test_bad_series() -> None:
    with pytest.raises(DataError, match="shorter than one segment of 16 slots"):
        train_diffusion(DiffusionModel(CFG), np.ones(15), TRAIN, progress=False)
    values = _series()
    values[123] = np.nan
    with pytest.raises(DataError, match="first at slot 123"):
        fit_series(Series(values * 1000, "demand"), CFG, TRAIN, progress=False)


def test_fit_series_writes_a_loadable_directory(tmp_path: Path) -> None:
    raw = 1000 + 500 * _series()
    model, result = fit_series(Series(raw, "demand"), CFG, TRAIN, tmp_path, progress=False)
    assert model.scaler is not None
    assert model.scaler.lo == raw.min() and model.scaler.hi == raw.max()
    for name in ("diffusion.pt", "config.json", "checkpoint.pt", "history.csv"):
        assert (tmp_path / name).is_file()
    assert np.allclose(np.load(tmp_path / "train_values.npy"), model.scaler.transform(raw))
    history = pd.read_csv(tmp_path / "history.csv")
    assert np.allclose(history["loss"], result.losses)
    loaded = DiffusionModel.load(tmp_path, expect=CFG)
    assert loaded.meta["train_series"] == "demand" and loaded.meta["iterations"] == 10
    assert torch.equal(_weights(loaded), _weights(model))
    real = loaded.sample_series(4, "ddim", steps=5)
    assert real.shape == (4, 16) and real.min() >= 0
