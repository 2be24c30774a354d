"""How close generated segments are to real data, and the reference model's quality gate.

Three views, all on normalized values: the 1-D Wasserstein distance between marginals (the
paper's measure, each set min-max scaled by its own extremes, and, because that scaling
hides a shift of level or scale, also on the common training scale), the mean absolute
difference of the average autocorrelation functions up to lag 50 (temporal structure),
and a discriminative score (cross-validated accuracy of a small classifier trained on
random overlapping crops to tell real from generated segments: 0.5 is
indistinguishable). Each is meant to be read next to the same number for held-out real
data against the training data, which says how far apart two honest samples of the
workload already are.

The quality gate (:class:`QualityGate`) turns that reading into a verdict on a reference
model θ₀: segment-level statistics of its samples (drawn with the sampler the methods
use) against a held-out split of the training series, and the discriminator against its
own accuracy on held-out versus fitted real data. :func:`realism` gives the same figures
for any batch of segments, e.g. an adversary's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from drdfl.data.shifts import wasserstein_marginal
from drdfl.diffusion.segments import check_series, cut_segments
from drdfl.diffusion.verdict import _FRACTIONS, STATISTICS, GateConfig
from drdfl.errors import ConfigError, DataError
from drdfl.records import Criterion, GateResult
from drdfl.seeding import numpy_rng, torch_generator

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
    """Cross-validated accuracy of a real-vs-candidate classifier on random overlapping
    crops (0.5 is perfect)."""
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
    n_crops: int = 256,
) -> QualityMetrics:
    """Metrics of ``candidate`` against ``reference``, each a series ``[N]`` or segments ``[n, L]``.

    A series is cut into consecutive non-overlapping segments for the ACF; the
    discriminator sees ``n_crops`` random overlapping crops of ``L`` slots of each (from
    within segments); the marginal uses every value. ACF lags stop at ``L − 1`` for short
    segments.
    """
    cand = _as_segments(candidate, segment_length, "candidate")
    ref = _as_segments(reference, segment_length, "reference")
    max_lag = min(max_lag, segment_length - 1)
    rng = numpy_rng(seed)
    crops_cand = random_crops(np.asarray(candidate, dtype=np.float64), segment_length, n_crops, rng)
    crops_ref = random_crops(np.asarray(reference, dtype=np.float64), segment_length, n_crops, rng)
    return QualityMetrics(
        wasserstein=wasserstein_marginal(np.ravel(candidate), np.ravel(reference)),
        wasserstein_common=float(wasserstein_distance(np.ravel(candidate), np.ravel(reference))),
        acf_diff=acf_distance(cand, ref, max_lag),
        discriminative=crop_discriminator(crops_ref, crops_cand, torch_generator(seed)),
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
    sampler: str = "ddpm",
    steps: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Generated vs. training data, and, with held-out data, held-out vs. training (calibration)
    and generated vs. held-out. All inputs are normalized series. The default sampler is
    the one the methods sample with (DDPM, every step).

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


# ----------------------------------------------------------------------------- the gate
@dataclass(frozen=True)
class GateSplit:
    """The real data a gate judges against: pieces to fit on, pieces held out."""

    fit: list[np.ndarray]
    heldout: list[np.ndarray]
    kind: str
    """``blocks`` or ``tail``."""
    length: int
    """Slots of the series that was split (one period when the input is tiled)."""
    period: int | None = None
    """The tiling period of the input, if it repeats exactly."""
    reason: str | None = None
    """Why the gate cannot judge on this split (``None``: it can)."""

    @property
    def fit_values(self) -> np.ndarray:
        return np.concatenate(self.fit)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "length": self.length,
            "period": self.period,
            "fit_slots": int(sum(len(p) for p in self.fit)),
            "heldout_slots": int(sum(len(p) for p in self.heldout)),
            "heldout_pieces": len(self.heldout),
            "reason": self.reason,
        }


def detect_period(values: np.ndarray) -> int | None:
    """The smallest ``p`` with ``values[i + p] == values[i]`` for every ``i``, if the series
    holds at least two full copies of it; ``None`` when the series does not repeat."""
    v = np.asarray(values)
    n = v.shape[0]
    candidates = np.flatnonzero(v[1 : n // 2 + 1] == v[0]) + 1
    # Most candidates fail on their first few slots; test those cheaply before the rest.
    for probe in range(1, min(8, n // 2)):
        if candidates.size == 0:
            return None
        candidates = candidates[v[candidates + probe] == v[probe]]
    for p in candidates:
        if np.array_equal(v[p:], v[: n - p]):
            return int(p)
    return None


def gate_split(values: np.ndarray, segment_length: int, config: GateConfig) -> GateSplit:
    """Split a (normalized) training series into the parts a gate fits on and judges on.

    A series that is a tiled copy of a shorter one is split within one period: any other
    held-out part would be a copy of training data. When the held-out part cannot hold
    ``min_heldout_segments`` whole segments (or the fit part one), the split carries the
    reason and the gate does not judge.
    """
    values = check_series(values, segment_length, "training series")
    period = detect_period(values)
    base = values[:period] if period is not None else values
    n = base.shape[0]
    length = segment_length
    if config.split == "tail":
        cut = round(n * (1 - config.heldout_fraction))
        fit, heldout = [base[:cut]], [base[cut:]]
    else:
        block = config.block_segments * length
        every = max(round(1 / config.heldout_fraction), 2)
        starts = np.arange(0, n, block)
        held = (np.arange(starts.size) % every) == every // 2
        pieces = [base[s : s + block] for s in starts]
        heldout = [p for p, h in zip(pieces, held, strict=True) if h and len(p) >= length]
        fit_pieces: list[np.ndarray] = []
        for p, h in zip(pieces, held, strict=True):
            # Consecutive fitting blocks form one piece, so crops may span their border.
            if h:
                fit_pieces.append(np.empty(0))
            elif fit_pieces and len(fit_pieces[-1]):
                fit_pieces[-1] = np.concatenate([fit_pieces[-1], p])
            else:
                fit_pieces.append(p)
        fit = [p for p in fit_pieces if len(p) >= length]
    reason = None
    held_segments = sum(len(p) // length for p in heldout)
    what = f"one period of {n} slots (the series is tiled)" if period else f"{n} slots"
    if held_segments < config.min_heldout_segments:
        reason = (
            f"the held-out part of {what} holds {held_segments} whole {length}-slot "
            f"segment(s), fewer than {config.min_heldout_segments}"
        )
    elif not fit:
        reason = f"the fitting part of {what} holds no whole {length}-slot segment"
    return GateSplit(fit, heldout, config.split, n, period, reason)


def segment_statistics(segments: np.ndarray, train_min: float, floor: float) -> dict[str, float]:
    """The gate's statistics (:data:`STATISTICS`) of normalized segments ``[n, L]``."""
    x = np.asarray(segments, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise DataError(f"segment statistics: expected segments [n, L >= 2], got {x.shape}")
    return {
        "level_spread": float(x.mean(axis=1).std()),
        "below_min": float((x < train_min - 1e-9).mean()),
        "at_floor": float((x <= floor + 1e-9).mean()),
        "within_std": float(x.std(axis=1).mean()),
        "lag1_diff": float(np.abs(np.diff(x, axis=1)).mean()),
    }


def random_crops(
    pieces: np.ndarray | list[np.ndarray], length: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` overlapping crops ``[n, length]`` at uniformly random offsets.

    ``pieces`` is a series, a list of series (crops never span two of them) or segments
    ``[m, L]`` (crops stay inside one segment).
    """
    if isinstance(pieces, np.ndarray) and pieces.ndim == 2:
        pieces = list(pieces)
    elif isinstance(pieces, np.ndarray):
        pieces = [pieces]
    views = [
        np.lib.stride_tricks.sliding_window_view(np.asarray(p, dtype=np.float64), length)
        for p in pieces
        if len(p) >= length
    ]
    if not views:
        raise DataError(f"no piece of the data holds a {length}-slot crop")
    table = np.concatenate(views) if len(views) > 1 else views[0]
    return table[rng.integers(0, table.shape[0], size=n)]


def crop_discriminator(
    a: np.ndarray, b: np.ndarray, generator: torch.Generator, epochs: int = 200, lr: float = 1e-2
) -> float:
    """Two-fold cross-validated accuracy of a small CNN telling crops ``a`` from crops ``b``.

    Each set is halved at random; a classifier trained on one half of both is scored on
    the other and vice versa, so every crop is scored once (0.5: indistinguishable).
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(
            "crop discriminator: expected two [n, L] sets with equal L, "
            f"got {a.shape} and {b.shape}"
        )
    n = min(len(a), len(b))
    if n < 4:
        raise DataError(f"crop discriminator: {n} crops per class is too few")
    from drdfl.diffusion.model import init_weights

    ia = torch.randperm(len(a), generator=generator)[:n].numpy()
    ib = torch.randperm(len(b), generator=generator)[:n].numpy()
    x = torch.from_numpy(np.concatenate([a[ia], b[ib]]))
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    fold = torch.cat([torch.arange(n) % 2, torch.arange(n) % 2]).bool()
    correct = 0.0
    loss_fn = nn.BCEWithLogitsLoss()
    for test in (fold, ~fold):
        with torch.random.fork_rng(devices=[]):  # weights come from `generator` alone
            clf = _Discriminator()
        init_weights(clf, generator)
        opt = torch.optim.Adam(clf.parameters(), lr=lr)
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss_fn(clf(x[~test]), y[~test]).backward()
            opt.step()
        with torch.no_grad():
            correct += float(((clf(x[test]) > 0).float() == y[test]).sum())
    return correct / (2 * n)


def realism(
    segments: np.ndarray | torch.Tensor,
    real: np.ndarray | list[np.ndarray],
    generator: torch.Generator,
    floor: float | None = None,
    n_crops: int = 256,
    epochs: int = 200,
    discriminator: bool = True,
) -> dict[str, float]:
    """How real a batch of normalized segments ``[n, L]`` looks next to real data.

    ``real`` is a normalized series, a list of series or segments; crops of ``L`` slots
    are drawn from it. Returns the discriminator accuracy (``discriminator``, 0.5 is
    indistinguishable; trained only when ``discriminator`` is true, the costly part) on
    ``n_crops`` random overlapping real crops against the
    segments, the 1-D Wasserstein distance of the values on the common scale
    (``w1``), the std of segment means of both (``level_spread``, ``real_level_spread``)
    and, with ``floor``, the fraction of values at or below it (``at_floor``,
    ``real_at_floor``).
    """
    seg = np.asarray(
        segments.detach().cpu().numpy() if isinstance(segments, torch.Tensor) else segments,
        dtype=np.float64,
    )
    if seg.ndim != 2:
        raise DataError(f"realism: expected segments [n, L], got shape {seg.shape}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    crops = random_crops(real, seg.shape[1], max(n_crops, len(seg)), numpy_rng(seed))
    out = {
        "w1": float(wasserstein_distance(seg.ravel(), crops.ravel())),
        "level_spread": float(seg.mean(axis=1).std()),
        "real_level_spread": float(crops.mean(axis=1).std()),
    }
    if floor is not None:
        out["at_floor"] = float((seg <= floor + 1e-9).mean())
        out["real_at_floor"] = float((crops <= floor + 1e-9).mean())
    if discriminator:
        out["discriminator"] = crop_discriminator(seg, crops, generator, epochs)
    return out


def _criterion(
    name: str, value: float, heldout: float, fit: float, config: GateConfig
) -> Criterion:
    # Two honest samples of a workload differ too: with band="range" the generated set may
    # lie anywhere between the held-out and the fitted part, and within the tolerance of
    # that range (the tolerance is relative to the nearer end, absolute for fractions).
    floor_tol = config.abs_tol if name in _FRACTIONS else 0.0
    ends = (min(heldout, fit), max(heldout, fit)) if config.band == "range" else (heldout,) * 2
    low = ends[0] - max(config.rel_tol * abs(ends[0]), floor_tol)
    if name in _FRACTIONS:
        low = max(low, 0.0)
    high = ends[1] + max(config.rel_tol * abs(ends[1]), floor_tol)
    tolerance = max(config.rel_tol * abs(heldout), floor_tol)
    return Criterion(name, value, heldout, tolerance, bool(low <= value <= high), low, high)


class QualityGate:
    """The quality gate of a reference model, bound to the real data it judges against.

    Requires every statistic of ``n_generated`` segments (drawn with the configured
    sampler and clamped at the ``floor``, zero demand, as the methods clamp them) to lie
    within its tolerance (``rel_tol`` of the value, at least ``abs_tol`` for the
    fractions) of the range spanned by the held-out and fitting parts (``band="range"``)
    or of the held-out value alone (``band="heldout"``).
    The generated-vs-held-out discriminator may be no more accurate than the
    held-out-vs-fit one (the mean of ``calibration_repeats``) plus ``disc_margin``. The
    real-data figures are computed once; every call draws the same noise (from
    ``generator``'s first draw), so verdicts differ only by the model's weights.
    """

    def __init__(
        self,
        split: GateSplit,
        segment_length: int,
        floor: float,
        config: GateConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.split = split
        self.segment_length = segment_length
        self.floor = floor
        self.config = config or GateConfig()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self._seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        self.real: dict[str, dict[str, float]] = {}
        self.calibration = float("nan")
        if split.reason is not None:
            return
        self.train_min = float(split.fit_values.min())
        rng = numpy_rng(self._seed)
        n_real = max(self.config.n_crops, self.config.n_generated)
        self.heldout = random_crops(split.heldout, segment_length, n_real, rng)
        fit = random_crops(split.fit, segment_length, n_real, rng)
        self.real = {
            "heldout": segment_statistics(self.heldout, self.train_min, floor),
            "fit": segment_statistics(fit, self.train_min, floor),
        }
        # The reference accuracy is a property of the real data alone: averaged over fresh
        # crops and classifiers, so that the verdict does not hang on one draw.
        gen = torch_generator(self._seed)
        epochs = self.config.disc_epochs
        accuracies = [crop_discriminator(self.heldout, fit, gen, epochs)]
        for _ in range(self.config.calibration_repeats - 1):
            heldout = random_crops(split.heldout, segment_length, n_real, rng)
            other = random_crops(split.fit, segment_length, n_real, rng)
            accuracies.append(crop_discriminator(heldout, other, gen, epochs))
        self.calibration = float(np.mean(accuracies))

    def __call__(self, model: DiffusionModel, iteration: int | None = None) -> GateResult:
        """The verdict on ``model`` (its segments in the split's normalized units)."""
        config = self.config
        described = self.split.describe()
        settings = config.model_dump(mode="json")
        if self.split.reason is not None:
            return GateResult(
                "unjudged", [], {}, config.sampler, config.steps, described, settings,
                self.split.reason, iteration,
            )  # fmt: skip
        if model.segment_length != self.segment_length:
            raise ConfigError(
                f"quality gate: built for {self.segment_length}-slot segments, "
                f"the model makes {model.segment_length}"
            )
        gen = torch_generator(self._seed)
        drawn = model.sample(config.n_generated, config.sampler, config.steps, generator=gen)
        fake = np.maximum(drawn.segments.cpu().numpy().astype(np.float64), self.floor)
        figures = {"generated": segment_statistics(fake, self.train_min, self.floor)}
        figures.update(self.real)
        disc = crop_discriminator(fake, self.heldout, gen, config.disc_epochs)
        calib = self.calibration
        figures["discriminator"] = {"generated_vs_heldout": disc, "heldout_vs_fit": calib}
        held, fit = self.real["heldout"], self.real["fit"]
        criteria = [
            _criterion(k, figures["generated"][k], held[k], fit[k], config) for k in STATISTICS
        ]
        high = calib + config.disc_margin
        criteria.append(
            Criterion("discriminator", disc, calib, config.disc_margin, disc <= high, 0.0, high)
        )
        status: Literal["passed", "failed"] = (
            "passed" if all(c.passed for c in criteria) else "failed"
        )
        return GateResult(
            status, criteria, figures, config.sampler, config.steps, described, settings, None,
            iteration,
        )  # fmt: skip


def model_floor(model: DiffusionModel) -> float:
    """Zero demand in ``model``'s normalized units (``-inf`` without a scaler)."""
    return float(model.scaler.transform(0.0)) if model.scaler is not None else -np.inf


def quality_gate(
    model: DiffusionModel,
    split: GateSplit,
    config: GateConfig | None = None,
    generator: torch.Generator | None = None,
) -> GateResult:
    """One verdict on ``model`` against ``split`` (see :class:`QualityGate`)."""
    gate = QualityGate(split, model.segment_length, model_floor(model), config, generator)
    return gate(model)
