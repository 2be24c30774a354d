"""Data-augmentation baselines: decision-focused training on more (non-adversarial) data.

* ``augment-gaussian``, ``augment-perlin``, ``augment-cutout``: the training windows plus
  the same windows cut from corrupted copies of the training series (the paper's
  augmentation baselines);
* ``augment-level``, ``augment-burst``: every epoch, each training window (inputs and
  target together) with its demand level scaled, or its deviations from a moving mean
  scaled, by a factor drawn per window — the level and burstiness shifts a workload
  change brings, without a generative model;
* ``diffusion-augment``: real windows mixed with windows of segments sampled from the
  reference diffusion model θ₀ — 3D-Learning without its adversary, the ablation that
  separates "more data" from "worst-case data".
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from drdfl.data.shifts import apply_corruption
from drdfl.data.training import TrainingData
from drdfl.data.windows import describe_span
from drdfl.diffusion.segments import segments_to_windows
from drdfl.errors import ConfigError, DataError
from drdfl.methods.reference import ReferenceParams, reference_model, to_training_units
from drdfl.methods.trainer import TrainedMethod
from drdfl.schema import StrictModel
from drdfl.tasks.base import DecisionTask

#: generated segments kept in the fit result for the report
_KEPT_SEGMENTS = 16


def _seed_from(generator: torch.Generator) -> int:
    """A fresh seed drawn from ``generator`` (for samplers that take seeds, not generators)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def _subsample(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` indices into ``range(n)``: without replacement when ``n ≥ k``."""
    if k <= n:
        return torch.randperm(n, generator=generator)[:k]
    return torch.randint(0, n, (k,), generator=generator)


def _window_slots(
    name: str, data: TrainingData, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Series slot of every input ``[N, w]`` and target ``[N, h]`` of the training windows."""
    train = data.train
    need = int(train.start.max()) + train.span if len(train) else 0
    if need > len(data.series):
        raise DataError(
            f"{name}: training windows reach slot {need - 1} but the training series "
            f"has {len(data.series)} slots; windows must be cut from TrainingData.series"
        )
    start = torch.as_tensor(train.start, dtype=torch.long, device=device)[:, None]
    x_index = start + torch.arange(train.window, device=device)
    y_index = start + train.window + train.lead + torch.arange(train.horizon, device=device)
    return x_index, y_index


# ------------------------------------------------------------------------- corruptions
class CorruptionParams(StrictModel):
    """Hyperparameters of the corruption-augmentation baselines."""

    level: float = Field(
        0.05, gt=0, description="noise σ / magnitude as a fraction of the maximum, or cutout p"
    )
    copies: int = Field(1, ge=1, description="corrupted copies of the training series")
    regenerate: bool = Field(False, description="draw fresh corruptions every epoch")


class CorruptionAugmentMethod(TrainedMethod):
    """DFL on the training windows plus the same windows of corrupted series copies.

    Each copy is the training series in real units passed through
    :func:`drdfl.data.shifts.apply_corruption` (as the corruption test sets are), then
    scaled with the training scaler; its windows sit at the training windows' positions.
    ``copies`` copies are added to the original windows, so an epoch has ``1 + copies``
    times as many windows. With ``regenerate`` the copies are redrawn every epoch,
    otherwise once. Paper: one copy, level 5 %.
    """

    #: corruption name understood by :func:`~drdfl.data.shifts.apply_corruption`
    corruption: ClassVar[str] = ""
    #: exclusive upper limit of ``level`` (a probability for cutout)
    max_level: ClassVar[float] = math.inf

    Params = CorruptionParams

    def configure(self) -> None:
        p = self.params
        if p.level >= self.max_level:
            raise ConfigError(
                f"method_params.{self.name}.level: must be below {self.max_level} (got {p.level!r})"
            )
        self.level, self.copies, self.regenerate = p.level, p.copies, p.regenerate

    def prepare(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        generator: torch.Generator,
    ) -> None:
        self._real_series = data.scaler.inverse_transform(np.asarray(data.series, np.float64))
        self._x_index, self._y_index = _window_slots(self.name, data, self._x.device)
        self._epoch_data = self._augmented(generator)

    def _augmented(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [self._x], [self._y]
        for _ in range(self.copies):
            real = apply_corruption(
                self.corruption, self._real_series, self.level, _seed_from(generator)
            )
            copy = torch.as_tensor(
                self._scaler.transform(real), dtype=self._x.dtype, device=self._x.device
            )
            xs.append(copy[self._x_index])
            ys.append(copy[self._y_index])
        return torch.cat(xs), torch.cat(ys)

    def epoch_windows(
        self, epoch: int, forecaster: nn.Module, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.regenerate and epoch > 0:
            self._epoch_data = self._augmented(generator)
        return self._epoch_data


class GaussianAugmentMethod(CorruptionAugmentMethod):
    """Augmentation with Gaussian noise of σ = ``level`` × the series maximum (paper: 5 %)."""

    name = "augment-gaussian"
    corruption = "gaussian"


class PerlinAugmentMethod(CorruptionAugmentMethod):
    """Augmentation with 8-octave Perlin noise of magnitude ``level`` × the maximum (5 %)."""

    name = "augment-perlin"
    corruption = "perlin"


class CutoutAugmentMethod(CorruptionAugmentMethod):
    """Augmentation that sets each slot to zero demand with probability ``level`` (5 %)."""

    name = "augment-cutout"
    corruption = "cutout"
    max_level = 1.0


# ------------------------------------------------------------------------- window factors
class WindowFactorParams(StrictModel):
    """Hyperparameters shared by the per-window factor augmentations."""

    low: float = Field(gt=0, description="smallest factor")
    high: float = Field(gt=0, description="largest factor")
    real_fraction: float = Field(
        0.0, ge=0, lt=1, description="share of windows left unchanged each epoch"
    )


class LevelAugmentParams(WindowFactorParams):
    """Hyperparameters of ``augment-level``."""

    low: float = Field(0.25, gt=0, description="smallest level factor")
    high: float = Field(4.0, gt=0, description="largest level factor")


class BurstAugmentParams(WindowFactorParams):
    """Hyperparameters of ``augment-burst``."""

    low: float = Field(0.5, gt=0, description="smallest deviation factor")
    high: float = Field(2.0, gt=0, description="largest deviation factor")
    span: int = Field(13, ge=2, description="slots of the centred moving mean")


class WindowFactorAugmentMethod(TrainedMethod):
    """DFL where every epoch transforms each training window by its own random factor.

    Factors are drawn log-uniformly from ``[low, high]`` afresh every epoch, one per
    window (its inputs and target share it); ``real_fraction`` of the windows, chosen at
    random each epoch, keep factor 1. An epoch has as many windows as DFL's.
    """

    Params = WindowFactorParams

    def configure(self) -> None:
        p = self.params
        if p.high < p.low:
            raise ConfigError(
                f"method_params.{self.name}.high: must be at least low = {p.low!r} (got {p.high!r})"
            )

    def factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Per-window factors ``[n, 1]``: log-uniform on ``[low, high]``, some set to 1."""
        p = self.params
        log_low, log_high = math.log(p.low), math.log(p.high)
        u = torch.rand(n, 1, generator=generator, dtype=torch.float64)
        factor = torch.exp(log_low + (log_high - log_low) * u)
        kept = round(p.real_fraction * n)
        if kept:
            factor[_subsample(n, kept, generator)] = 1.0
        return factor.to(self._x.dtype).to(self._x.device)

    @abstractmethod
    def transform(self, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training windows ``(x, y)`` (normalized) transformed by ``factor [N, 1]``."""

    def epoch_windows(
        self, epoch: int, forecaster: nn.Module, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.factors(self._x.shape[0], generator))


class LevelAugmentMethod(WindowFactorAugmentMethod):
    """Level scaling: each window's demand in real units multiplied by its factor.

    Demand ``z`` becomes ``s·z``, so zero stays zero and a window keeps its shape; in
    normalized units that is the affine map ``u ↦ s·u + (s − 1)·lo / span``. Default
    range ``[1/4, 4]``.
    """

    name = "augment-level"
    Params = LevelAugmentParams

    def prepare(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        generator: torch.Generator,
    ) -> None:
        self._x_real = data.scaler.inverse_transform(self._x)
        self._y_real = data.scaler.inverse_transform(self._y)

    def transform(self, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaler = self._scaler
        return scaler.transform(factor * self._x_real), scaler.transform(factor * self._y_real)


class BurstAugmentMethod(WindowFactorAugmentMethod):
    """Burstiness scaling: deviations from a moving mean of the series scaled per window.

    With ``m`` the centred moving mean of the training series over ``span`` slots
    (truncated at its ends), a window's values become ``m + s·(x − m)`` — inputs and
    target alike — clipped at zero demand. Levels stay; bursts grow (``s > 1``) or
    smooth out (``s < 1``). Default range ``[1/2, 2]``, span 13 slots.
    """

    name = "augment-burst"
    Params = BurstAugmentParams

    def prepare(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        generator: torch.Generator,
    ) -> None:
        x_index, y_index = _window_slots(self.name, data, self._x.device)
        mean = torch.as_tensor(
            moving_mean(np.asarray(data.series, np.float64), self.params.span),
            dtype=self._x.dtype,
            device=self._x.device,
        )
        self._x_mean, self._y_mean = mean[x_index], mean[y_index]
        self._floor = float(data.scaler.transform(0.0))

    def transform(self, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mx, my = self._x_mean, self._y_mean
        x = (mx + factor * (self._x - mx)).clamp_min(self._floor)
        y = (my + factor * (self._y - my)).clamp_min(self._floor)
        return x, y


def moving_mean(values: np.ndarray, span: int) -> np.ndarray:
    """Centred moving mean over ``span`` slots (``span // 2`` before, the rest after),
    averaging only the slots that exist at the series' ends."""
    n = values.shape[0]
    before = span // 2
    after = span - 1 - before
    total = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(n)
    lo = np.maximum(index - before, 0)
    hi = np.minimum(index + after + 1, n)
    return (total[hi] - total[lo]) / (hi - lo)


# ------------------------------------------------------------------------- diffusion
class DiffusionAugmentParams(ReferenceParams):
    """Hyperparameters of ``diffusion-augment``."""

    samples: int | None = Field(
        64, ge=1, description="segments drawn from θ₀ per draw (None: enough for one epoch)"
    )
    real_fraction: float = Field(0.3, ge=0, lt=1, description="share of real windows per epoch")
    regenerate: bool = Field(True, description="draw fresh segments every epoch (else once)")
    sampler: Literal["ddpm", "ddim"] = "ddpm"
    steps: int | None = Field(None, ge=1, description="reverse steps (None: the sampler's)")


class DiffusionAugmentMethod(TrainedMethod):
    """DFL on real windows mixed with windows of segments sampled from the reference θ₀.

    Every epoch has as many windows as the real training set, so it costs what a DFL epoch
    costs: ``real_fraction`` of them are real windows and the rest generated windows, both
    drawn at random without replacement (the generated ones with replacement only if the
    pool is smaller than needed). ``samples`` segments are drawn from θ₀ — once, or every
    epoch with ``regenerate`` — and cut into windows that never cross two segments.
    Generated values are mapped into the training scaler's units (via real units when the
    diffusion model carries its own scaler; without one it is taken to share the
    training scaler) and clipped at zero demand.

    ``diffusion`` is a fitted :class:`~drdfl.diffusion.model.DiffusionModel` or the
    directory it was saved in; without one, θ₀ is fitted here with ``preset``. The
    defaults (64 fresh DDPM segments per epoch, 30 % real windows) are those of
    ``threed``'s adversarial datasets, so that the two differ only in the adversary.
    """

    name = "diffusion-augment"
    Params = DiffusionAugmentParams

    def configure(self) -> None:
        p = self.params
        self.samples, self.real_fraction = p.samples, p.real_fraction
        self.regenerate, self.sampler, self.steps = p.regenerate, p.sampler, p.steps

    def prepare(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        generator: torch.Generator,
    ) -> None:
        p = self.params
        real = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
        self.diffusion = reference_model(
            p.diffusion, real, p.preset, p.diffusion_iterations, self.train.seed
        )
        window, horizon, self._lead = data.train.window, data.train.horizon, data.train.lead
        per_segment = self.diffusion.segment_length - data.train.span + 1
        if per_segment < 1:
            raise DataError(
                f"{self.name}: diffusion segments of {self.diffusion.segment_length} slots "
                f"cannot hold one window of {describe_span(window, horizon, self._lead)}"
            )
        self._n_real = round(self.real_fraction * len(data.train))
        self._n_generated = len(data.train) - self._n_real
        self._n_segments = self.samples or max(1, math.ceil(self._n_generated / per_segment))
        self.diffusion.to(self._x.device)
        self._pool = self._generate(generator)

    def _generate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``(x, y)`` of freshly sampled segments, in the training scaler's units."""
        was_training = self.diffusion.training
        self.diffusion.eval()
        u = self.diffusion.sample(
            self._n_segments, self.sampler, self.steps, seed=_seed_from(generator)
        ).segments
        self.diffusion.train(was_training)
        u = to_training_units(self.diffusion, self._scaler, u.detach().cpu().double().numpy())
        self._segments = u[:_KEPT_SEGMENTS]
        windows = segments_to_windows(u, self._x.shape[1], self._y.shape[1], lead=self._lead)
        return windows.tensors(self._x.device)

    def epoch_windows(
        self, epoch: int, forecaster: nn.Module, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.regenerate and epoch > 0:
            self._pool = self._generate(generator)
        gx, gy = self._pool
        real = _subsample(self._x.shape[0], self._n_real, generator)
        fake = _subsample(gx.shape[0], self._n_generated, generator)
        return torch.cat([self._x[real], gx[fake]]), torch.cat([self._y[real], gy[fake]])

    def epoch_record(self) -> dict[str, float]:
        return {"generated_pool": float(self._pool[0].shape[0])}

    def artifacts(self) -> dict[str, Any]:
        """A few generated segments (training-scaler units) for the report."""
        return {"generated_segments": self._segments}


__all__ = [
    "BurstAugmentMethod",
    "CorruptionAugmentMethod",
    "CutoutAugmentMethod",
    "DiffusionAugmentMethod",
    "GaussianAugmentMethod",
    "LevelAugmentMethod",
    "PerlinAugmentMethod",
    "WindowFactorAugmentMethod",
    "moving_mean",
]
