"""The records drdfl writes and reads back without torch: a run directory's tables and
files (written by the runner, read by the report) and the quality gate's verdict (saved
with a reference model and copied into the run directory).

A run's output directory ``OUT`` (a sweep's grid point has the same in
``OUT/points/<point>``; only ``results.csv`` is required by the report):

* ``results.csv``: tidy :data:`RESULT_COLUMNS` rows;
* ``histories.csv``: :data:`HISTORY_KEYS` plus the per-epoch columns of
  :data:`~drdfl.methods.registry.SHARED_HISTORY` and of each method's registry entry;
* ``timings.csv``: :data:`TIMING_COLUMNS`;
* ``samples.npz``: segments ``[n, L]`` named as :data:`SAMPLE_SETS`;
* ``results.json``: ``profile``, ``config`` (the resolved configuration), ``code``,
  ``notes``, ``versions``, ``results`` (the rows of ``results.csv``, which tell a
  truncated copy), ``timings``; a run adds ``units`` (the planned ``{"label", "seed"}``
  pairs), ``test_sets`` and ``in_distribution``, a sweep ``grid``, ``points`` and
  ``failed``;
* ``failed.json``: units that failed or did not run, as :func:`unit_key` names or
  ``{"trial": ...}`` records whose last ``/``-part is the unit; listed, not required;
* ``config.toml``: the resolved configuration;
* ``reference/s<seed>/quality.json`` (:func:`quality_path`): the seed's reference-model
  verdict, :meth:`GateResult.to_dict`;
* ``units/<key>/``: one unit's folder (see :mod:`drdfl.runner.store`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

RESULTS_FILE = "results.csv"
HISTORIES_FILE = "histories.csv"
TIMINGS_FILE = "timings.csv"
SAMPLES_FILE = "samples.npz"
RECORD_FILE = "results.json"
FAILED_FILE = "failed.json"
CONFIG_FILE = "config.toml"

RESULT_COLUMNS = ("method", "seed", "suite", "test_set", "metric", "value")
#: the columns every row of ``histories.csv`` starts with
HISTORY_KEYS = ("method", "seed", "epoch")
TIMING_COLUMNS = ("method", "seed", "stage", "seconds")
#: arrays of ``samples.npz``, with what each holds
SAMPLE_SETS = {
    "real": "real normalized training segments",
    "generated": "segments of the reference diffusion model θ₀",
    "worst_case": "3D-Learning's worst cases (adversary on)",
    "worst_case_off": "the same draw with the adversary off (θ₀'s tails)",
}
#: the worst-case arrays a 3D-Learning unit keeps (``NAME.npy``, sample sets of that name),
#: by the fit artifact each comes from: the adversary's worst cases and θ₀'s from the same
#: states and noise (adversary off)
WORST_CASES = {"worst_case": "worst_case", "worst_case_off": "worst_case_reference"}

#: how much more accurate a crop discriminator may be at telling generated segments from
#: real ones than at telling two real parts apart (the quality gate's default
#: ``disc_margin``; the report holds 3D-Learning's adversarial sets to it too)
DISC_MARGIN = 0.05

REFERENCE_DIR = "reference"
QUALITY_FILE = "quality.json"
GATE_STATUSES = ("passed", "failed", "unjudged")


def unit_key(label: str, seed: int) -> str:
    """The name of the unit of run label ``label`` and ``seed``: its folder under
    ``OUT/units``, its node in the plan and its entry in ``failed.json``."""
    return f"{label}-s{seed}".replace("/", "_")


def corruption_name(kind: str, level: float) -> str:
    """The name of the test set of corruption ``kind`` at ``level`` (suite ``corruptions``)."""
    return f"{kind} {level:.3g}"


def read_corruption_name(name: str) -> tuple[str, float] | None:
    """The corruption kind and level a :func:`corruption_name` names (``None``: not one)."""
    kind, _, level = name.rpartition(" ")
    try:
        return (kind, float(level)) if kind else None
    except ValueError:
        return None


def quality_path(out: Path, seed: int) -> Path:
    """Where the run in ``out`` keeps the quality gate's verdict on ``seed``'s reference model."""
    return out / REFERENCE_DIR / f"s{seed}" / QUALITY_FILE


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


@dataclass(frozen=True)
class GateResult:
    """The quality gate's verdict on a reference model, with every figure it rests on."""

    status: Literal["passed", "failed", "unjudged"]
    criteria: list[Criterion]
    figures: dict[str, dict[str, float]]
    """Statistics of the ``generated``, ``heldout`` and ``fit`` sets, and the
    discriminator's accuracies (``discriminator``: ``generated_vs_heldout``,
    ``heldout_vs_fit``)."""
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
    def from_dict(cls, d: Any) -> GateResult:
        """Rebuild from :meth:`to_dict` output; a ``ValueError`` says what is malformed."""
        status = d.get("status") if isinstance(d, dict) else None
        if status not in GATE_STATUSES:
            raise ValueError(f"'status' is {status!r}, expected one of {GATE_STATUSES}")
        criteria = []
        for k, item in enumerate(d.get("criteria") or []):
            try:
                criteria.append(Criterion(**item))
            except TypeError as exc:
                raise ValueError(
                    f"criteria[{k}] is malformed ({exc}); expected "
                    + ", ".join(Criterion.__dataclass_fields__)
                ) from None
        try:
            return cls(
                status=status,
                criteria=criteria,
                figures=d["figures"],
                sampler=d["sampler"],
                steps=d["steps"],
                split=d["split"],
                config=d["config"],
                reason=d.get("reason"),
                iteration=d.get("iteration"),
            )
        except KeyError as exc:
            raise ValueError(f"lacks {exc}") from None


__all__ = [
    "CONFIG_FILE",
    "DISC_MARGIN",
    "FAILED_FILE",
    "GATE_STATUSES",
    "HISTORIES_FILE",
    "HISTORY_KEYS",
    "QUALITY_FILE",
    "RECORD_FILE",
    "REFERENCE_DIR",
    "RESULTS_FILE",
    "RESULT_COLUMNS",
    "SAMPLES_FILE",
    "SAMPLE_SETS",
    "TIMINGS_FILE",
    "TIMING_COLUMNS",
    "WORST_CASES",
    "Criterion",
    "GateResult",
    "corruption_name",
    "quality_path",
    "read_corruption_name",
    "unit_key",
]
