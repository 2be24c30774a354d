"""The reference-model quality gate's settings and verdict (plain data: the model saves
the verdict, :mod:`drdfl.diffusion.quality` computes it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field

from drdfl.errors import ModelError
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
        0.05, ge=0, description="allowed excess of the generated-vs-real discriminator accuracy"
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


@dataclass(frozen=True)
class Criterion:
    """One pass/fail check: ``value`` must lie in ``[low, high]``. ``reference`` is the
    held-out value (for the discriminator, its held-out-vs-fit accuracy) and ``tolerance``
    the gate's allowance there."""

    name: str
    value: float
    reference: float
    tolerance: float
    passed: bool
    low: float
    high: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Criterion:
        """Rebuild a saved criterion; one saved without its bounds (before they were kept)
        gets ``reference ± tolerance``."""
        bounds = {"low": d["reference"] - d["tolerance"], "high": d["reference"] + d["tolerance"]}
        return cls(**{**bounds, **d})


@dataclass(frozen=True)
class GateResult:
    """The verdict on a reference model, with every figure it rests on."""

    status: Literal["passed", "failed", "unjudged"]
    criteria: list[Criterion]
    figures: dict[str, dict[str, float]]
    """Statistics of the ``generated``, ``heldout`` and ``fit`` sets, and discriminator
    accuracies (``discriminator``: generated vs held-out, ``calibration``: held-out vs
    fit)."""
    sampler: str
    steps: int | None
    split: dict[str, Any]
    config: dict[str, Any]
    reason: str | None = None
    iteration: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failures(self) -> list[str]:
        return [c.name for c in self.criteria if not c.passed]

    def summary(self) -> str:
        """One line: the verdict and the criteria that failed, or why it was not judged."""
        if self.status == "unjudged":
            return f"quality gate not judged: {self.reason}"
        if self.passed:
            return f"quality gate passed ({self.sampler})"
        return f"quality gate failed ({self.sampler}): {', '.join(self.failures)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        """Rebuild from :meth:`to_dict` output (e.g. a saved model's meta)."""
        try:
            return cls(
                status=d["status"],
                criteria=[Criterion.from_dict(c) for c in d["criteria"]],
                figures=d["figures"],
                sampler=d["sampler"],
                steps=d["steps"],
                split=d["split"],
                config=d["config"],
                reason=d.get("reason"),
                iteration=d.get("iteration"),
            )
        except (KeyError, TypeError) as exc:
            raise ModelError(f"quality record is malformed ({exc})") from None


__all__ = ["STATISTICS", "Criterion", "GateConfig", "GateResult"]
