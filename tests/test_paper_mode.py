"""Paper mode: the preprocessing of the 3D-Learning paper's code, on its own files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drdfl.data.paper import (
    PaperNormalization,
    paper_corrupt,
    paper_leakage,
    paper_normalize,
    paper_rows,
    paper_split,
    paper_test_windows,
    paper_training_data,
    paper_windows,
)
from drdfl.errors import DataError

CONV23 = "AzureLLMInferenceTrace_2023_Conversation_compressed-5s.csv"
SHIFT24 = "Combined_AzureLLMInferenceTrace_2024_Coding_2024_Conversation_compressed-5s.csv"


def paper_file(data_dir: Path, name: str) -> np.ndarray:
    return pd.read_csv(data_dir / "paper-3dl" / name)["ContextTokens"].to_numpy(np.float64)


@pytest.mark.shared_data
def test_training_file_rows_split_batches_and_range(data_dir: Path) -> None:
    raw = paper_file(data_dir, CONV23)  # 21,030 values -> 751 rows of 28 (2 dropped)
    train, test, norm = paper_training_data(raw)
    # 751 rows: 226 = ceil(0.3 * 751) test rows, 525 train rows; full batches of 64
    # rows only (8 and 3), 21 windows per row (targets at slots 7..27).
    assert len(train) == 8 * 64 * 21 and len(test) == 3 * 64 * 21
    assert (norm.train_range.lo, norm.train_range.hi) == (374.0, 106_957.0)
    # The first test window: inputs = slots 0..6 of row 525, target = slot 7.
    first = 525 * 28
    assert test.start[0] == first
    np.testing.assert_allclose(norm.targets_to_real(test.y[0]), raw[first + 7], rtol=1e-6)
    np.testing.assert_allclose(norm.targets_to_real(test.x[0]), raw[first : first + 7], rtol=1e-6)
    # The next window in order is the same slot of the next row (one batch step).
    assert test.start[1] == first + 28 and test.start[64] == first + 1


@pytest.mark.shared_data
def test_in_distribution_split_repeats_training_windows(data_dir: Path) -> None:
    # The training file is one hour tiled 30 times: every in-distribution test window
    # (inputs and target) is an exact copy of a training window.
    train, test, _ = paper_training_data(paper_file(data_dir, CONV23))
    assert paper_leakage(train, test) == 1.0


@pytest.mark.shared_data
def test_test_file_truncated_own_normalized_and_mapped_to_training_units(
    data_dir: Path,
) -> None:
    raw = paper_file(data_dir, SHIFT24)  # 120,959 values
    test = paper_test_windows(raw, "24D24V")
    # First 100,000 values -> 3,571 rows -> 55 full batches of 64.
    assert len(test) == 55 * 64 * 21 and test.start.max() < 100_000
    head = raw[:100_000]
    expected = (raw[:7] - head.min()) / (head.max() - head.min())
    np.testing.assert_allclose(test.x[0], expected, rtol=1e-6)
    # De-normalized with the 2023 training range, the 2024 targets land in the 2023
    # units: their level (up to 1.27 M tokens per 5 s) is gone.
    norm = PaperNormalization.from_training(paper_file(data_dir, CONV23))
    real = norm.targets_to_real(test.y)
    assert raw.max() > 1e6 and real.max() <= 106_957.0 + 1e-6


def test_windows_stay_inside_rows_in_loop_order() -> None:
    rows = paper_rows(np.arange(130 * 28, dtype=np.float64))
    w = paper_windows(rows, window=7, horizon=1, batch_size=64)
    assert len(w) == 2 * 64 * 21  # 130 rows: 2 full batches, 2 rows dropped
    first_slot, last_slot = w.start, w.start + 7  # the target slot
    assert np.all(first_slot // 28 == last_slot // 28)  # never across a row boundary
    np.testing.assert_array_equal(w.x[:, 0], w.start)  # values are the slot indices here
    np.testing.assert_array_equal(w.y[:, 0], w.start + 7)
    blocks = w.start.reshape(-1, 64)  # one block = one (batch, t) step
    assert np.all(np.ptp(blocks % 28, axis=1) == 0)  # same t within a block
    assert np.all(np.diff(blocks // 28, axis=1) == 1)  # consecutive rows of one batch
    assert set(np.unique(w.start % 28)) == set(range(21))


def test_split_is_unshuffled_with_ceil_test_rows() -> None:
    rows = paper_rows(np.arange(280.0))
    train, test = paper_split(rows)
    assert train.shape[0] == 7 and test.shape[0] == 3
    np.testing.assert_array_equal(np.concatenate((train, test)), rows)
    with pytest.raises(DataError, match="cannot split"):
        paper_split(rows[:1])


def test_normalization_own_extremes_relu_and_training_range() -> None:
    u, scaler = paper_normalize(np.array([10.0, 20.0, np.nan, 30.0]))
    np.testing.assert_allclose(u, [0.0, 0.5, 0.5, 1.0])  # NaN -> mean, as the paper
    assert (scaler.lo, scaler.hi) == (10.0, 30.0)
    flat, _ = paper_normalize(np.full(5, 3.0))
    np.testing.assert_array_equal(flat, np.zeros(5))
    norm = PaperNormalization.from_training(np.array([100.0, 300.0]))
    np.testing.assert_allclose(norm.predictions_to_real(np.array([-0.5, 0.5])), [100.0, 200.0])
    torch.testing.assert_close(
        norm.predictions_to_real(torch.tensor([-0.5, 0.5])), torch.tensor([100.0, 200.0])
    )
    np.testing.assert_allclose(norm.targets_to_real(np.array([-0.5])), [0.0])
    assert PaperNormalization.from_dict(norm.to_dict()) == norm


def test_paper_noise_levels_and_clipping() -> None:
    u = np.full(20_000, 0.5)
    gauss = paper_corrupt(u, "gaussian", 0.1, 0)
    assert np.std(gauss - u) == pytest.approx(0.1, rel=0.03)
    assert gauss.min() >= 0 and gauss.max() <= 1
    np.testing.assert_array_equal(gauss, paper_corrupt(u, "gaussian", 0.1, 0))
    perlin = paper_corrupt(u, "perlin", 0.05, 1)
    assert np.max(np.abs(perlin - u)) == pytest.approx(0.05)
    assert np.corrcoef(perlin[:-1], perlin[1:])[0, 1] > 0.999  # 8 smooth cells
    cut = paper_corrupt(u, "cutout", 0.005, 2)
    hit = np.flatnonzero(cut != u)
    assert hit.size == 100 and np.all(np.diff(hit) == 1) and np.all(cut[hit] == 1.0)
    with pytest.raises(DataError, match="unknown paper noise"):
        paper_corrupt(u, "blur", 0.1, 0)  # type: ignore[arg-type]


def test_too_short_inputs_raise() -> None:
    with pytest.raises(DataError, match="no full row"):
        paper_rows(np.arange(27.0))
    with pytest.raises(DataError, match="no full batch"):
        paper_windows(paper_rows(np.arange(28.0 * 10)))
    with pytest.raises(DataError, match="holds no window"):
        paper_windows(paper_rows(np.arange(28.0 * 64)), window=28)
