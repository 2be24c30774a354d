"""Quality metrics on sets whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig
from drdfl.diffusion.quality import (
    acf_distance,
    autocorrelation,
    compare,
    crop_discriminator,
    quality_report,
)
from drdfl.errors import ConfigError, DataError


def _ar1(n: int, length: int, phi: float, seed: int) -> np.ndarray:
    """``n`` stationary AR(1) segments of ``length`` slots with coefficient ``phi``."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, length + 200))
    return lfilter([1.0], [1.0, -phi], noise, axis=1)[:, 200:]


def test_autocorrelation_of_ar1() -> None:
    acf = autocorrelation(_ar1(400, 256, 0.7, 0), max_lag=5)
    assert acf[0] == 1.0
    # Per-segment demeaning biases sample ACFs slightly low; 0.03 covers it at L = 256.
    assert np.allclose(acf[1:], 0.7 ** np.arange(1, 6), atol=0.03)


def test_constant_segments_have_zero_autocorrelation() -> None:
    acf = autocorrelation(np.ones((3, 20)), max_lag=4)
    assert np.array_equal(acf, [1.0, 0.0, 0.0, 0.0, 0.0])


def test_acf_distance() -> None:
    a, b = _ar1(200, 128, 0.9, 1), _ar1(200, 128, 0.9, 2)
    white = _ar1(200, 128, 0.0, 3)
    assert acf_distance(a, a) == 0.0
    assert acf_distance(a, b) < 0.03
    assert acf_distance(a, white) > 0.1
    assert acf_distance(a, white) == pytest.approx(acf_distance(white, a))
    with pytest.raises(ConfigError, match="max_lag"):
        acf_distance(a, b, max_lag=128)


def test_crop_discriminator_separates_only_different_sets() -> None:
    real, alike, white = _ar1(256, 64, 0.8, 4), _ar1(256, 64, 0.8, 5), _ar1(256, 64, 0.0, 5)
    same = crop_discriminator(real, alike, torch.Generator().manual_seed(0))
    assert abs(same - 0.5) < 0.1
    assert crop_discriminator(real, white, torch.Generator().manual_seed(0)) > 0.9
    assert same == crop_discriminator(real, alike, torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="too few"):
        crop_discriminator(np.ones((1, 8)), np.ones((1, 8)), torch.Generator())
    with pytest.raises(DataError, match="equal L"):
        crop_discriminator(np.ones((5, 8)), np.ones((5, 9)), torch.Generator())


def test_compare_paper_measure_hides_a_level_shift() -> None:
    rng = np.random.default_rng(6)
    reference = 0.3 + 0.1 * rng.random(64 * 40)
    shifted = reference + 0.3
    m = compare(shifted, reference, segment_length=64)
    # Each set scaled by its own extremes: identical shapes, no distance.
    assert m.wasserstein == pytest.approx(0.0, abs=1e-12)
    assert m.wasserstein_common == pytest.approx(0.3)
    assert m.acf_diff == pytest.approx(0.0, abs=1e-12)
    assert m.discriminative > 0.9
    assert (m.n_candidate, m.n_reference) == (40, 40)
    with pytest.raises(DataError, match="segments of 32 slots, expected 64"):
        compare(np.ones((5, 32)), reference, segment_length=64)


def test_quality_report_shape() -> None:
    torch.manual_seed(0)
    model = DiffusionModel(
        DiffusionModelConfig(
            segment_length=16,
            T=8,
            beta_start=0.01,
            beta_end=0.5,
            base_channels=4,
            channel_mults=(1, 2),
        )
    )
    rng = np.random.default_rng(0)
    report = quality_report(model, rng.random(16 * 30), rng.random(16 * 10), steps=4)
    assert report["n_generated"] == 30
    for key in ("generated_vs_train", "heldout_vs_train", "generated_vs_heldout"):
        assert set(report[key]) == {
            "wasserstein",
            "wasserstein_common",
            "acf_diff",
            "discriminative",
            "n_candidate",
            "n_reference",
        }
    assert report["heldout_vs_train"]["n_candidate"] == 10
    # Untrained samples are far from uniform noise on [0, 1]; held-out real data is not.
    gen, cal = report["generated_vs_train"], report["heldout_vs_train"]
    assert gen["wasserstein_common"] > cal["wasserstein_common"]
