"""How close generated segments are to real data.

Three views, all on normalized values: the 1-D Wasserstein distance between marginals (the
paper's measure, each set min-max scaled by its own extremes, and, because that scaling
hides a shift of level or scale, also on the common training scale), the mean absolute
difference of the average autocorrelation functions
up to lag 50 (temporal structure), and a discriminative score (held-out accuracy of a
small classifier trained to tell real from generated segments: 0.5 is indistinguishable).
Each is meant to be read next to the same number for held-out real data against the
training data, which says how far apart two honest samples of the workload already are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from drdfl.data.shifts import wasserstein_marginal
from drdfl.diffusion.segments import check_series, cut_segments
from drdfl.errors import ConfigError, DataError
from drdfl.seeding import numpy_rng

if TYPE_CHECKING:
    from drdfl.diffusion.model import DiffusionModel


def autocorrelation(segments: np.ndarray, max_lag: int = 50) -> np.ndarray:
    """Average over segments of each segment's autocorrelation at lags ``0..max_lag``.

    Every segment is centred on its own mean and scaled by its own variance (a constant
    segment contributes zeros beyond lag 0).
    """
    x = np.asarray(segments, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"autocorrelation: expected segments [n, L], got shape {x.shape}")
    if not 0 < max_lag < x.shape[1]:
        raise ConfigError(f"max_lag must be in 1..{x.shape[1] - 1} for {x.shape[1]}-slot segments")
    x = x - x.mean(axis=1, keepdims=True)
    # Autocovariance by FFT with zero padding to 2L (no circular wrap-around).
    spectrum = np.fft.rfft(x, n=2 * x.shape[1], axis=1)
    acov = np.fft.irfft(spectrum * spectrum.conj(), axis=1)[:, : max_lag + 1]
    var = acov[:, :1]
    acf = np.divide(acov, var, out=np.zeros_like(acov), where=var > 0)
    acf[:, 0] = 1.0
    return acf.mean(axis=0)


def acf_distance(a: np.ndarray, b: np.ndarray, max_lag: int = 50) -> float:
    """Mean absolute difference of the average ACFs of two sets of segments, lags 1..max_lag."""
    return float(np.abs(autocorrelation(a, max_lag)[1:] - autocorrelation(b, max_lag)[1:]).mean())


class _Discriminator(nn.Module):
    """A tiny 1-D CNN: two strided convolutions, global mean and max pooling, a logit.

    The first convolution's kernel spans its stride, so no slot goes unseen.
    """

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels // 2, 8, stride=4, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels // 2, channels, 5, stride=2, padding=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x[:, None, :])
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1)).squeeze(1)


def discriminative_score(
    real: np.ndarray,
    fake: np.ndarray,
    seed: int = 0,
    epochs: int = 200,
    test_fraction: float = 0.3,
    lr: float = 1e-2,
) -> float:
    """Held-out accuracy of a small CNN telling ``real`` from ``fake`` segments (0.5 is perfect).

    Both sets are subsampled to the same size; a ``test_fraction`` of each is held out.
    """
    real = np.asarray(real, dtype=np.float32)
    fake = np.asarray(fake, dtype=np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise DataError(
            f"discriminative_score: expected two [n, L] sets with equal L, "
            f"got {real.shape} and {fake.shape}"
        )
    n = min(len(real), len(fake))
    n_test = round(test_fraction * n)
    if n_test < 1 or n - n_test < 1:
        raise DataError(
            f"discriminative_score: {n} segments per class is too few for a held-out split"
        )
    rng = numpy_rng(seed)
    real = real[rng.permutation(len(real))[:n]]
    fake = fake[rng.permutation(len(fake))[:n]]
    x_train = torch.from_numpy(np.concatenate([real[n_test:], fake[n_test:]]))
    y_train = torch.cat([torch.ones(n - n_test), torch.zeros(n - n_test)])
    x_test = torch.from_numpy(np.concatenate([real[:n_test], fake[:n_test]]))
    y_test = torch.cat([torch.ones(n_test), torch.zeros(n_test)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = _Discriminator()
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss_fn(clf(x_train), y_train).backward()
        opt.step()
    with torch.no_grad():
        predicted = (clf(x_test) > 0).float()
    return float((predicted == y_test).float().mean())


@dataclass(frozen=True)
class QualityMetrics:
    """How far a candidate set is from a reference set."""

    wasserstein: float
    """1-D Wasserstein distance between marginals, each min-max scaled by its own extremes
    (the paper's measure, :func:`drdfl.data.shifts.wasserstein_marginal`)."""
    wasserstein_common: float
    """1-D Wasserstein distance between marginals on the common (training) scale."""
    acf_diff: float
    """Mean absolute difference of average autocorrelations, lags 1..max_lag."""
    discriminative: float
    """Held-out accuracy of a real-vs-candidate classifier (0.5 is perfect)."""
    n_candidate: int
    n_reference: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    candidate: np.ndarray,
    reference: np.ndarray,
    segment_length: int,
    seed: int = 0,
    max_lag: int = 50,
) -> QualityMetrics:
    """Metrics of ``candidate`` against ``reference``, each a series ``[N]`` or segments ``[n, L]``.

    A series is cut into consecutive non-overlapping segments for the ACF and the
    discriminator; the marginal uses every value. ACF lags stop at ``L − 1`` for short
    segments.
    """
    cand = _as_segments(candidate, segment_length, "candidate")
    ref = _as_segments(reference, segment_length, "reference")
    max_lag = min(max_lag, segment_length - 1)
    return QualityMetrics(
        wasserstein=wasserstein_marginal(np.ravel(candidate), np.ravel(reference)),
        wasserstein_common=float(wasserstein_distance(np.ravel(candidate), np.ravel(reference))),
        acf_diff=acf_distance(cand, ref, max_lag),
        discriminative=discriminative_score(ref, cand, seed),
        n_candidate=len(cand),
        n_reference=len(ref),
    )


def _as_segments(values: np.ndarray, segment_length: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2:
        if arr.shape[1] != segment_length:
            raise DataError(f"{name}: segments of {arr.shape[1]} slots, expected {segment_length}")
        return arr
    return cut_segments(check_series(arr, segment_length, name), segment_length)


def quality_report(
    model: DiffusionModel,
    train_values: np.ndarray,
    heldout_values: np.ndarray | None = None,
    n_samples: int | None = None,
    sampler: str = "ddim",
    steps: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Generated vs. training data, and, with held-out data, held-out vs. training (calibration)
    and generated vs. held-out. All inputs are normalized series.

    ``n_samples`` defaults to as many segments as the training series holds end to end.
    """
    length = model.segment_length
    train_values = check_series(train_values, length, "training series")
    n = n_samples or max(len(train_values) // length, 2)
    generated = model.sample(n, sampler, steps, seed=seed).segments.cpu().numpy()
    report: dict[str, Any] = {
        "sampler": sampler,
        "steps": steps,
        "n_generated": n,
        "segment_length": length,
        "generated_vs_train": compare(generated, train_values, length, seed).to_dict(),
    }
    if heldout_values is not None:
        heldout_values = check_series(heldout_values, length, "held-out series")
        report["heldout_vs_train"] = compare(heldout_values, train_values, length, seed).to_dict()
        report["generated_vs_heldout"] = compare(generated, heldout_values, length, seed).to_dict()
    return report
