"""GPU replicas: how many model replicas to run in each slot, the planner's question.

Each replica serves up to ``tokens_per_s_per_replica`` (μ) tokens per second within the
serving SLO, so ``r`` replicas hold ``μ · r · interval_s`` tokens of a slot's demand.
Running a replica costs ``cost_per_replica_hour``; every token of demand beyond what the
replicas hold costs ``penalty_per_unserved_token`` (a lost or SLO-violating request). The
money one slot costs, its **operating cost**, is

    operating_cost(r, y) = cost_per_replica_hour · r · interval_s / 3600
                           + penalty_per_unserved_token · (y - μ · r · interval_s)⁺

and :meth:`ReplicasTask.operating_cost` returns it per slot. The task's :meth:`cost`, which
methods train on and regret is measured in, prices the same decision against running no
replica at all: it subtracts ``penalty_per_unserved_token · y``, which no decision changes,
so decisions and regret are those of the operating cost, while the optimal cost is minus
what perfect provisioning saves, and a normalized regret (regret over that saving) is
defined. Over a horizon of ``h`` slots the cost of a sample is the mean over its slots.

Decisions are whole replicas in ``[min_replicas, max_replicas]``. For one known demand the
cost is piecewise linear and convex in ``r``, with its kink at ``y / (μ · interval_s)``;
for several equally likely demands (:meth:`ReplicasTask.optimal_replicas`) its continuous
minimiser is the critical-ratio quantile of demand over ``μ · interval_s``, at the level

    q = 1 - cost_per_replica_hour / (3600 · penalty_per_unserved_token · μ),

and the whole-replica optimum is whichever of that quantile's floor and ceiling costs less
("rounded as the cost says"). A single known demand is the case of one scenario. When a
replica costs more than the tokens it can serve would (``q ≤ 0``) the optimum is
``min_replicas``.

:meth:`decide` is differentiable through a straight-through surrogate: its value is the
whole-replica optimum, its gradient that of the continuous replicas ``y_hat / (μ ·
interval_s)`` (clamped to the bounds), so decision-focused training sees the marginal cost
of a replica against the penalty of the tokens it would have served.

Presets (illustrative prices, one replica per GPU):

``balanced`` (default)
    μ = 10,000 tokens/s, 4.0 per replica-hour, 2e-6 per unserved token (2 per million):
    q ≈ 0.944. 1 to 64 replicas.
``strict``
    The same replica at 2e-5 per unserved token: q ≈ 0.994, for a tight SLO.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from drdfl.errors import ConfigError
from drdfl.tasks.base import DecisionTask

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ReplicasParams:
    """Constants of the replicas task, in the units their names say."""

    #: μ: tokens per second one replica serves within the SLO
    tokens_per_s_per_replica: float
    #: money one replica costs per hour it runs
    cost_per_replica_hour: float
    #: money each token of demand beyond the replicas' throughput costs
    penalty_per_unserved_token: float
    #: fewest replicas a slot may run
    min_replicas: int = 1
    #: most replicas a slot may run
    max_replicas: int = 64

    def check(self) -> None:
        """Raise :class:`ConfigError` naming every constant that is out of range."""
        problems = []
        if not self.tokens_per_s_per_replica > 0:
            problems.append(
                f"tokens_per_s_per_replica must be > 0, got {self.tokens_per_s_per_replica}"
            )
        if not self.cost_per_replica_hour >= 0:
            problems.append(f"cost_per_replica_hour must be >= 0, got {self.cost_per_replica_hour}")
        if not self.penalty_per_unserved_token >= 0:
            problems.append(
                f"penalty_per_unserved_token must be >= 0, got {self.penalty_per_unserved_token}"
            )
        for key in ("min_replicas", "max_replicas"):
            value = getattr(self, key)
            if isinstance(value, bool) or value != int(value) or value < 0:
                problems.append(f"{key} must be a whole number >= 0, got {value}")
        if not self.max_replicas >= max(self.min_replicas, 1):
            problems.append(
                f"max_replicas must be >= min_replicas and >= 1, got "
                f"[{self.min_replicas}, {self.max_replicas}]"
            )
        if problems:
            raise ConfigError("replicas task: " + "; ".join(problems))


PRESETS: dict[str, ReplicasParams] = {
    "balanced": ReplicasParams(
        tokens_per_s_per_replica=10_000.0,
        cost_per_replica_hour=4.0,
        penalty_per_unserved_token=2e-6,
    ),
    "strict": ReplicasParams(
        tokens_per_s_per_replica=10_000.0,
        cost_per_replica_hour=4.0,
        penalty_per_unserved_token=2e-5,
    ),
}
DEFAULT_PRESET = "balanced"
_INT_FIELDS = ("min_replicas", "max_replicas")


def replicas_params(preset: str, **overrides: Any) -> ReplicasParams:
    """A preset's constants with ``overrides`` (field names of :class:`ReplicasParams`)."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown replicas preset {preset!r}; valid presets: {', '.join(PRESETS)}"
        )
    known = {f.name for f in fields(ReplicasParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"replicas task: unknown parameter {unknown[0]!r}; valid: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"replicas task: {key} must be a number, got {value!r}") from None
        if key in _INT_FIELDS:
            if not number.is_integer():
                raise ConfigError(f"replicas task: {key} must be a whole number, got {value!r}")
            values[key] = int(number)
        else:
            values[key] = number
    return replace(PRESETS[preset], **values)


class ReplicasTask(DecisionTask):
    """Whole GPU replicas per slot, priced by GPU-hours and unserved tokens.

    Forecasts and demands ``[B, h]`` are tokens per slot of ``interval_s`` seconds;
    decisions ``[B, h]`` are replicas (whole numbers, as floats). Build from a preset,
    ``ReplicasTask("strict", interval_s=60)``, with field overrides,
    ``ReplicasTask("balanced", max_replicas=128)``, or from explicit constants.
    """

    name = "replicas"
    units = "tokens per interval"
    decision_units = "replicas"

    def __init__(
        self,
        preset: str | None = DEFAULT_PRESET,
        params: ReplicasParams | None = None,
        *,
        interval_s: float = 5.0,
        **overrides: Any,
    ) -> None:
        if params is None:
            params = replicas_params(preset or DEFAULT_PRESET, **overrides)
        elif overrides:
            raise ConfigError("replicas task: give explicit params or overrides, not both")
        params.check()
        if not (isinstance(interval_s, int | float) and math.isfinite(interval_s)) or not (
            interval_s > 0
        ):
            raise ConfigError(f"replicas task: interval_s must be > 0 seconds, got {interval_s}")
        self.params = params
        self.preset = preset if preset in PRESETS and params == PRESETS[preset] else None
        self.base_preset = preset if preset in PRESETS else None
        self.interval_s = float(interval_s)

    def __repr__(self) -> str:
        label = self.preset if self.preset is not None else self.params
        return f"{type(self).__name__}({label!r}, interval_s={self.interval_s:g})"

    # ------------------------------------------------------------------ constants
    @property
    def tokens_per_replica_slot(self) -> float:
        """Tokens one replica serves in one slot: ``μ · interval_s``."""
        return self.params.tokens_per_s_per_replica * self.interval_s

    @property
    def cost_per_replica_slot(self) -> float:
        """Money one replica costs per slot: ``cost_per_replica_hour · interval_s / 3600``."""
        return self.params.cost_per_replica_hour * self.interval_s / SECONDS_PER_HOUR

    @property
    def critical_ratio(self) -> float:
        """``q``: the demand quantile the optimal replicas cover (≤ 0: serving never pays)."""
        p = self.params
        value = p.penalty_per_unserved_token * self.tokens_per_replica_slot
        if value <= 0:
            return -math.inf
        return 1.0 - self.cost_per_replica_slot / value

    # ------------------------------------------------------------------ prices
    def operating_cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Money per slot ``[..., h]``: the replicas' GPU time plus the penalty of every
        token of demand ``y`` beyond what ``x`` replicas serve."""
        unserved = torch.relu(y - self.tokens_per_replica_slot * x)
        return self.cost_per_replica_slot * x + self.params.penalty_per_unserved_token * unserved

    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample ``[B]``: mean over slots of the operating cost minus the penalty of
        serving nothing (``penalty_per_unserved_token · y``); see the module docstring."""
        served = torch.minimum(y, self.tokens_per_replica_slot * x)
        slot = self.cost_per_replica_slot * x - self.params.penalty_per_unserved_token * served
        return slot.mean(dim=-1)

    def served_tokens(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Tokens of demand ``y`` that ``x`` replicas serve, per slot."""
        return torch.minimum(y, self.tokens_per_replica_slot * x)

    # ------------------------------------------------------------------ decisions
    def _bounded(self, replicas: torch.Tensor) -> torch.Tensor:
        return replicas.clamp(float(self.params.min_replicas), float(self.params.max_replicas))

    def optimal_replicas(self, demand: torch.Tensor) -> torch.Tensor:
        """Whole replicas ``[...]`` that minimise the mean operating cost over the equally
        likely demand scenarios ``demand [..., S]`` (tokens per slot): the critical-ratio
        quantile of ``demand / (μ · interval_s)``, floor or ceiling as the cost says, in
        ``[min_replicas, max_replicas]``. Not differentiable."""
        demand = torch.as_tensor(demand)
        p = self.params
        q = self.critical_ratio
        if q <= 0:
            return torch.full(demand.shape[:-1], float(p.min_replicas), dtype=demand.dtype)
        n = demand.shape[-1]
        if n == 0:
            raise ConfigError("replicas task: optimal_replicas needs at least one scenario")
        # smallest r with an empirical CDF of demand / (μ·dt) at r of at least q
        k = min(max(math.ceil(q * n) - 1, 0), n - 1)
        quantile = demand.sort(dim=-1).values[..., k] / self.tokens_per_replica_slot
        low = self._bounded(torch.floor(quantile))
        high = self._bounded(torch.ceil(quantile))
        cost_low = self.operating_cost(low.unsqueeze(-1), demand).mean(dim=-1)
        cost_high = self.operating_cost(high.unsqueeze(-1), demand).mean(dim=-1)
        # a tie goes to the larger count: the same money, fewer tokens left unserved
        return torch.where(cost_high <= cost_low, high, low)

    def decide(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Whole replicas ``[B, h]`` that minimise the operating cost if demand is ``y_hat``;
        the gradient is that of the continuous replicas (straight-through)."""
        if self.critical_ratio <= 0:
            return torch.full_like(y_hat, float(self.params.min_replicas))
        continuous = self._bounded(y_hat / self.tokens_per_replica_slot)
        whole = self.optimal_replicas(y_hat.detach().unsqueeze(-1))
        return continuous + (whole - continuous).detach()

    # ------------------------------------------------------------------ data
    def fit_to_data(self, demand: np.ndarray, interval_s: float) -> tuple[ReplicasTask, str | None]:
        """This task on slots of ``interval_s`` seconds, checked against the training
        ``demand`` (tokens per slot): a :class:`ConfigError` when ``max_replicas`` holds
        less than the median slot (most decisions would sit at the cap) or
        ``min_replicas`` more than the largest (every decision would sit at the floor);
        a note when only the largest slots exceed ``max_replicas``."""
        task = ReplicasTask(self.base_preset, self.params, interval_s=interval_s)
        values = np.asarray(demand, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return task, None
        p = task.params
        per_replica = task.tokens_per_replica_slot
        most = p.max_replicas * per_replica
        median, largest = float(np.median(values)), float(values.max())
        where = (
            f"(max_replicas={p.max_replicas} × {p.tokens_per_s_per_replica:g} tokens/s × "
            f"{interval_s:g} s = {most:,.0f} tokens per slot)"
        )
        if median > most:
            raise ConfigError(
                f"replicas task: the training demand's median slot holds {median:,.0f} tokens, "
                f"more than the most replicas serve {where}, so most decisions would sit at "
                "max_replicas; raise max_replicas or tokens_per_s_per_replica (task_params)"
            )
        if (
            task.critical_ratio > 0
            and p.min_replicas > 0
            and largest < ((p.min_replicas - 1) * per_replica)
        ):
            raise ConfigError(
                f"replicas task: min_replicas={p.min_replicas} serves "
                f"{p.min_replicas * per_replica:,.0f} tokens per slot, but the training "
                f"demand never exceeds {largest:,.0f}, so every decision would sit at "
                "min_replicas; lower min_replicas (task_params)"
            )
        note = None
        capped = float(np.mean(values > most))
        if capped > 0:
            note = (
                f"replicas task: {capped:.1%} of the training slots hold more demand than "
                f"max_replicas serve {where}; their decisions sit at max_replicas"
            )
        return task, note

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        """Name, preset (``None`` for changed constants), slot length and every constant."""
        return {
            "name": self.name,
            "preset": self.preset,
            "base_preset": self.base_preset,
            "interval_s": self.interval_s,
            **asdict(self.params),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReplicasTask:
        """Rebuild from :meth:`to_dict` output; the constants win over the preset name."""
        names = [f.name for f in fields(ReplicasParams)]
        missing = [k for k in names if k not in d]
        if missing:
            raise ConfigError(f"replicas task dict lacks {', '.join(missing)}")
        values = {k: (int(d[k]) if k in _INT_FIELDS else float(d[k])) for k in names}
        preset = d.get("base_preset") or d.get("preset")
        return cls(preset, ReplicasParams(**values), interval_s=float(d.get("interval_s", 5.0)))
