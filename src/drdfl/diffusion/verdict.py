"""The reference-model quality gate's settings (plain data: the model's presets hold them,
:mod:`drdfl.diffusion.quality` judges with them; the verdict is
:class:`drdfl.records.GateResult`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drdfl.records import DISC_MARGIN
from drdfl.schema import StrictModel

#: The statistics the gate compares, in report order: std of segment means, fraction of
#: values below the training minimum, fraction at the floor (zero demand), mean
#: within-segment std, mean absolute slot-to-slot (lag-1) difference.
STATISTICS = ("level_spread", "below_min", "at_floor", "within_std", "lag1_diff")
_FRACTIONS = ("below_min", "at_floor")


class GateConfig(StrictModel):
    """When a reference diffusion model counts as a model of its data."""

    rel_tol: float = Field(0.10, gt=0, description="relative tolerance of each statistic")
    band: Literal["range", "heldout"] = Field(
        "range",
        description="what a statistic is held to: 'range', within its tolerance of the range "
        "the held-out and the fitted part span (two honest samples of the workload, which "
        "differ too); 'heldout', within its tolerance of the held-out value alone",
    )
    abs_tol: float = Field(
        0.01, ge=0, description="absolute tolerance of the fractions (below min, at floor)"
    )
    disc_margin: float = Field(
        DISC_MARGIN,
        ge=0,
        description="allowed excess of the generated-vs-real discriminator accuracy",
    )
    n_generated: int = Field(256, ge=16, description="segments drawn for each check")
    n_crops: int = Field(256, ge=256, description="random overlapping real crops per class")
    heldout_fraction: float = Field(0.2, gt=0, lt=1, description="share of the data held out")
    block_segments: int = Field(
        4, ge=1, description="held-out blocks are this many segments long (split='blocks')"
    )
    split: Literal["blocks", "tail"] = Field(
        "blocks",
        description="'blocks': every k-th block of the series is held out, so both parts "
        "span the whole trace; 'tail': the last fraction is held out",
    )
    min_heldout_segments: int = Field(
        4, ge=1, description="fewer non-overlapping held-out segments: the gate cannot judge"
    )
    sampler: Literal["ddpm", "ddim"] = Field(
        "ddpm", description="the sampler scored (ddpm: the one the methods sample with)"
    )
    steps: int | None = Field(None, ge=1, description="reverse steps (None: the sampler's)")
    disc_epochs: int = Field(200, ge=1, description="full-batch epochs of the discriminator")
    calibration_repeats: int = Field(
        4,
        ge=1,
        description="held-out-vs-fit discriminators (each on fresh crops) whose mean accuracy "
        "is the discriminator's reference; one alone varies by a few points from draw to draw",
    )


__all__ = ["STATISTICS", "GateConfig"]
