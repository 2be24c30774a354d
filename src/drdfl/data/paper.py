"""Paper mode: the preprocessing of the 3D-Learning paper's public code, reproduced.

Only for reproducing the paper's numbers; drdfl's own protocol (one train-fitted
``Scaler``, chronological splits with gaps) is in :mod:`drdfl.data.windows`.

What the paper's code does (``Data_Loader`` in ``Utils/datasets.py``, ``ML.train`` and
``ML.test_task`` in ``Utils/Algos/ml.py``, ``main.py``; the same in ``DDD_Learning``),
and what this module reproduces:

1. **Read.** One column, ``ContextTokens``. Test files are cut to their first 100,000
   rows *before* normalization (``len_limit=100000``; only the 120,959-row 24D24V file
   is affected). The training file is read whole. NaNs are replaced by the mean.
2. **Normalize each series by its own extremes**: ``(z - min) / (max - min)`` with the
   min and max of that (truncated) file; a constant series becomes all zeros. Test files
   are therefore *not* scaled with the training range: a test file's level and spread
   are erased, only its shape relative to its own range remains.
3. **Rows of 28**: the normalized series is truncated to a multiple of 28 (the tail is
   dropped) and reshaped to ``[n_rows, 28]`` (the "pictures" the diffusion model sees).
4. **Split** (training file only): ``train_test_split(test_size=0.3, shuffle=False)`` on
   the rows: the last ``ceil(0.3 * n_rows)`` rows are the in-distribution test set.
   The 2023 conversation file is one hour tiled 30 times, so those test rows repeat
   training content (see :func:`paper_leakage` and ``../shared/data/README.md``).
5. **Batches**: ``DataLoader(batch_size=64, shuffle=False, drop_last=True)`` over rows:
   rows after the last full batch of 64 are never used, in training and in testing.
6. **Windows inside rows**: for each batch and each ``t`` in ``7 … 27`` the inputs are
   ``row[t-7:t]`` and the target ``row[t]`` (window 7, horizon 1): 21 windows per row,
   none crossing a row boundary (the 7 first slots of a row are never a target). Each
   ``(batch, t)`` step is one optimizer step in training and one term of the test mean.
7. **De-normalize with the training range**: predictions ``relu(model(x))`` and targets
   are mapped to tokens with ``u * (max_train - min_train) + min_train``, where the
   extremes are those of the whole raw training file (``data_range``), for every test set.
8. **Normalized regret**: per ``(batch, t)`` step, ``mean(regret) / -mean(optimal_loss)``
   over the 64 windows of that step (a ratio of batch means, not a mean of ratios);
   the reported number is the plain mean of these ratios over all steps.

Noise at test time (``noise_type``) is applied to the normalized series before step 3;
:func:`paper_corrupt` reproduces it (Gaussian σ and Perlin clipped to ``[0, 1]``,
cutout segments filled with 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from drdfl.data.shifts import cutout_segment, gradient_noise
from drdfl.data.windows import Scaler, Windows, check_shape, describe_span
from drdfl.errors import DataError

PIC_SIZE = 28
WINDOW = 7
HORIZON = 1
TEST_FRACTION = 0.3
TEST_ROW_LIMIT = 100_000
BATCH_SIZE = 64

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
PaperNoise = Literal["gaussian", "perlin", "cutout"]


def _values(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"{name}: expected a non-empty 1-D series, got shape {arr.shape}")
    if np.all(np.isnan(arr)):
        raise DataError(f"{name}: every value is NaN")
    if np.any(np.isinf(arr)):
        raise DataError(f"{name}: contains infinite values")
    # The paper's loader replaces NaNs by the mean of the rest.
    return np.where(np.isnan(arr), np.nanmean(arr), arr)


def paper_normalize(values: np.ndarray, name: str = "series") -> tuple[np.ndarray, Scaler]:
    """``values`` min-max normalized by their own extremes, and the scaler that did it.

    A constant series maps to zeros (the scaler then spans 1 so it stays invertible).
    """
    arr = _values(values, name)
    scaler = Scaler.fit(arr)
    if arr.max() == arr.min():
        return np.zeros_like(arr), scaler
    return scaler.transform(arr), scaler


def paper_rows(values: np.ndarray, pic_size: int = PIC_SIZE) -> np.ndarray:
    """The series cut into consecutive rows of ``pic_size`` slots (the tail is dropped)."""
    arr = np.asarray(values, dtype=np.float64)
    n_rows = arr.shape[0] // pic_size
    if arr.ndim != 1 or n_rows == 0:
        raise DataError(f"series of shape {arr.shape} holds no full row of {pic_size} slots")
    return arr[: n_rows * pic_size].reshape(n_rows, pic_size)


def paper_split(
    rows: np.ndarray, test_frac: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Unshuffled train/test split of rows: the last ``ceil(test_frac * n)`` rows are test."""
    n = rows.shape[0]
    n_test = int(np.ceil(test_frac * n))
    if not 0 < n_test < n:
        raise DataError(f"cannot split {n} rows with test fraction {test_frac}")
    return rows[: n - n_test], rows[n - n_test :]


def paper_windows(
    rows: np.ndarray,
    window: int = WINDOW,
    horizon: int = HORIZON,
    batch_size: int = BATCH_SIZE,
    name: str = "",
    first_row: int = 0,
    lead: int = 0,
) -> Windows:
    """The paper's windows, in the order its loops visit them.

    Rows after the last full batch of ``batch_size`` are dropped. For each batch, for
    each decision position ``t = window … row_len - lead - horizon``, the ``batch_size``
    windows ``row[t-window:t] → row[t+lead:t+lead+horizon]`` follow each other; so every
    consecutive block of ``batch_size`` windows is one step of the paper's training or
    test loop (the paper's own windows have ``lead = 0``). ``start`` indexes the first
    input slot in the series the rows were cut from (``first_row`` is the index of
    ``rows[0]`` among that series' rows).
    """
    n_rows, row_len = rows.shape
    check_shape(window, horizon, lead, 1, name or "rows")
    positions = np.arange(window, row_len - lead - horizon + 1)
    if positions.size == 0:
        raise DataError(
            f"{name or 'rows'}: a row of {row_len} slots holds no window of "
            f"{describe_span(window, horizon, lead)}"
        )
    n_batches = n_rows // batch_size
    if n_batches == 0:
        raise DataError(
            f"{name or 'rows'}: {n_rows} rows make no full batch of {batch_size} "
            "(the paper's loaders drop incomplete batches)"
        )
    used = rows[: n_batches * batch_size].reshape(n_batches, batch_size, row_len)
    offsets = np.r_[np.arange(-window, 0), lead + np.arange(horizon)]
    cols = positions[:, None] + offsets[None, :]  # [t, slot]
    # [batch, row, t, slot] -> [batch, t, row, slot]: the loop order of the paper's code
    cut = used[:, :, cols].transpose(0, 2, 1, 3)
    flat = cut.reshape(-1, window + horizon).astype(np.float32)
    row_index = first_row + np.arange(n_batches * batch_size).reshape(n_batches, 1, batch_size)
    start = (row_index * row_len + (positions - window)[None, :, None]).reshape(-1)
    return Windows(flat[:, :window].copy(), flat[:, window:].copy(), start, name, lead)


@dataclass(frozen=True)
class PaperNormalization:
    """The paper's units: inputs scaled by each series' own extremes, outputs and targets
    mapped back to tokens with the training file's range (its ``data_range``)."""

    train_range: Scaler

    @classmethod
    def from_training(cls, train_values: np.ndarray) -> PaperNormalization:
        """From the whole raw training series."""
        return cls(paper_normalize(train_values, "training series")[1])

    def predictions_to_real(self, u: ArrayT) -> ArrayT:
        """Forecasts in tokens: ``relu`` (as the paper applies to model outputs), then the
        training range."""
        clipped = u.clamp(min=0.0) if isinstance(u, torch.Tensor) else np.maximum(u, 0.0)
        return self.train_range.inverse_transform(clipped)

    def targets_to_real(self, u: ArrayT) -> ArrayT:
        """Targets in tokens, with the training range (whatever series they came from)."""
        return self.train_range.inverse_transform(u)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "paper", "train_range": self.train_range.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PaperNormalization:
        return cls(Scaler.from_dict(d["train_range"]))


def paper_corrupt(normalized: np.ndarray, kind: PaperNoise, param: float, seed: int) -> np.ndarray:
    """The paper's test-time noise on a normalized series (values in ``[0, 1]``).

    ``gaussian``: add N(0, param²), clip to [0, 1]; ``perlin``: add ``param`` times one
    octave of gradient noise with 8 cells over the series (zero-mean, peak 1), clip to
    [0, 1]; ``cutout``: set one segment of ``int(param * n)`` slots to 1. The paper's
    Fig. 2 levels are gaussian 0.1, perlin 0.05, cutout 0.005. Unlike the paper's code
    (global NumPy state, unseeded Perlin), every draw here comes from ``seed``.
    """
    u = np.asarray(normalized, dtype=np.float64)
    if kind == "cutout":
        return cutout_segment(u, param, seed, fill=1.0)
    if kind == "gaussian":
        noise = np.random.default_rng(seed).standard_normal(u.shape[0])
    elif kind == "perlin":
        noise = gradient_noise(u.shape[0], seed, octaves=1, base_cells=8)
    else:
        raise DataError(f"unknown paper noise {kind!r}: expected gaussian, perlin or cutout")
    return np.clip(u + param * noise, 0.0, 1.0)


def paper_training_data(
    train_values: np.ndarray,
    window: int = WINDOW,
    horizon: int = HORIZON,
    name: str = "train",
) -> tuple[Windows, Windows, PaperNormalization]:
    """Training windows, in-distribution test windows and the normalization of the
    paper's training file (steps 2-6 of the module docstring)."""
    normalized, _ = paper_normalize(train_values, name)
    rows = paper_rows(normalized)
    train_rows, test_rows = paper_split(rows)
    train = paper_windows(train_rows, window, horizon, name=f"{name} (train)")
    test = paper_windows(
        test_rows, window, horizon, name=f"{name} (test)", first_row=train_rows.shape[0]
    )
    return train, test, PaperNormalization.from_training(train_values)


def paper_test_windows(
    values: np.ndarray,
    name: str,
    window: int = WINDOW,
    horizon: int = HORIZON,
    row_limit: int | None = TEST_ROW_LIMIT,
    noise: tuple[PaperNoise, float] | None = None,
    seed: int = 0,
    lead: int = 0,
) -> Windows:
    """Windows of a whole test file as the paper evaluates it: first ``row_limit`` values,
    own-extremes normalization, optional test-time ``noise = (kind, param)``, rows of 28,
    full batches of 64."""
    arr = np.asarray(values, dtype=np.float64)
    if row_limit is not None:
        arr = arr[:row_limit]
    normalized, _ = paper_normalize(arr, name)
    if noise is not None:
        normalized = paper_corrupt(normalized, noise[0], noise[1], seed)
    return paper_windows(paper_rows(normalized), window, horizon, name=name, lead=lead)


def paper_leakage(train: Windows, test: Windows) -> float:
    """Fraction of ``test`` windows (inputs and target) identical to some ``train`` window."""
    both = np.concatenate(
        (np.concatenate((train.x, train.y), axis=1), np.concatenate((test.x, test.y), axis=1))
    )
    _, ids = np.unique(both, axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    return float(np.mean(np.isin(ids[len(train) :], ids[: len(train)])))
