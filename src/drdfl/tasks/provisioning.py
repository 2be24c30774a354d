"""LLM resource provisioning, the decision task of the 3D-Learning paper.

Per slot, a data centre provisions serving capacity ``a`` (tokens per interval) for the
token demand ``c`` that will arrive. Both are normalized as
``n(z) = max(0, (z - a_min) / (a_max - a_min))`` and, with ``â = n(a)``, ``ĉ = n(c)``,
the per-slot decision loss is

    loss(a, c) = (1 - η) · PUE · (P_act · min(â, ĉ) + P_idle · (â - ĉ)⁺)  -  η · s(min(â/ĉ, 1)) · ĉ

with the accuracy curve ``s(z) = ln(A z + 1) / (B ln(A + 1))``: energy for the tokens
served and for idle capacity, against the utility of the share of demand that is served.
Capacity is bounded, ``a ∈ [a_min, a_max]``. The range follows the training data
(:meth:`ProvisioningTask.fit_to_data`): where the preset's range would cap the decision
for the largest training demand, both bounds are multiplied by a ``demand_scale`` so that
twice that demand is decided below the cap (the loss, in normalized units, is that of the
preset on demand divided by the scale); otherwise the preset's range is kept as it is, as
for the paper's own data. Over a horizon of ``h`` slots the cost of
a sample is the **mean** of the per-slot losses, so that costs (and regrets) of models
with different horizons are on the same scale.

Presets:

``paper-code`` (default)
    The constants of the paper's official code, which produced its Table I: η = 0.7,
    A = 20, B = 1.5, a_min = 200, a_max = 400000, P_act = 280/200 and P_idle = 100/200
    per normalized token, PUE = 1. The optimal capacity is an interior point: it serves
    ``â = 0.315 · ĉ`` (the marginal energy of serving a token equals its marginal
    utility), and both under- and over-provisioning relative to that point cost.

``paper-text``
    The constants printed in the paper: A = 20, B = 0.2, P_act = 4e-6 kWh,
    P_idle = 1.4e-6 kWh, PUE = 1.1 (it multiplies the IT energy, i.e. the whole energy
    term), cost weight 1 - η = 0.34, with the code's capacity range. On the normalized
    scale the energy is about 10⁻⁶ of the utility, so the interior stationary point lies at
    ``â ≈ 7·10⁵ · ĉ`` and the decision is always to provision the full demand
    (``a = clip(c, a_min, a_max)``). A missing token costs at least 1.03 (normalized
    units) while an idle one costs 5.2·10⁻⁷: the regret is, in effect, the utility lost
    to under-forecasting, and a forecaster trained on decision loss alone learns to
    over-forecast.

:meth:`ProvisioningTask.decide` is the exact minimiser in closed form. On
``[0, min(ĉ, 1)]`` (under-provisioning) the loss is convex in ``â`` (linear energy minus a
concave utility), so its minimum is its stationary point ``â = k ĉ`` with
``k = η / ((1 - η) PUE P_act B ln(A + 1)) - 1/A``, clamped to the interval; on
``[ĉ, 1]`` it is linear. The minimum over the box is therefore one of four candidates —
the clamped stationary point, ``min(ĉ, 1)``, 0 and 1 — and the best is chosen per slot.
(The official code compares two candidates by their *batch-mean* loss and returns the
first candidate in both branches; this implementation chooses per slot.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from drdfl.errors import ConfigError
from drdfl.tasks.base import DecisionTask

# Below this normalized demand the served fraction is taken as 0 rather than divided by a
# (near-)zero demand; the utility there is below 1e-12 in any case.
_MIN_DEMAND = 1e-12


@dataclass(frozen=True)
class ProvisioningParams:
    """Constants of the provisioning loss (see the module docstring for their roles)."""

    eta: float
    utility_a: float
    utility_b: float
    a_min: float
    a_max: float
    p_active: float
    p_idle: float
    pue: float = 1.0

    def check(self) -> None:
        """Raise :class:`ConfigError` if the constants do not define a valid task."""
        problems = []
        if not 0.0 <= self.eta < 1.0:
            problems.append(f"eta must be in [0, 1), got {self.eta}")
        if self.utility_a <= 0 or self.utility_b <= 0:
            problems.append(
                f"utility_a and utility_b must be > 0, got {self.utility_a}, {self.utility_b}"
            )
        if not self.a_max > self.a_min:
            problems.append(f"a_max must exceed a_min, got [{self.a_min}, {self.a_max}]")
        if self.p_active <= 0 or self.p_idle < 0 or self.pue <= 0:
            problems.append(
                "p_active and pue must be > 0 and p_idle >= 0, got "
                f"{self.p_active}, {self.pue}, {self.p_idle}"
            )
        if problems:
            raise ConfigError("provisioning task: " + "; ".join(problems))


PRESETS: dict[str, ProvisioningParams] = {
    "paper-code": ProvisioningParams(
        eta=0.7,
        utility_a=20.0,
        utility_b=1.5,
        a_min=200.0,
        a_max=400_000.0,
        p_active=280.0 / 200.0,
        p_idle=100.0 / 200.0,
    ),
    "paper-text": ProvisioningParams(
        eta=1.0 - 0.34,
        utility_a=20.0,
        utility_b=0.2,
        a_min=200.0,
        a_max=400_000.0,
        p_active=4e-6,
        p_idle=1.4e-6,
        pue=1.1,
    ),
}
DEFAULT_PRESET = "paper-code"


def preset_params(preset: str) -> ProvisioningParams:
    """The constants of a named preset; :class:`ConfigError` listing the valid ones if unknown."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown provisioning preset {preset!r}; valid presets: {', '.join(PRESETS)}"
        )
    return PRESETS[preset]


class ProvisioningTask(DecisionTask):
    """Provision capacity (tokens per interval) for each slot of the forecast horizon.

    Decisions ``x [B, h]`` are capacities in real units, one per forecast slot; any horizon
    ``h`` works. Build from a preset with ``ProvisioningTask("paper-text")`` or from explicit
    constants with ``ProvisioningTask(params=ProvisioningParams(...))``.
    """

    name = "provisioning"
    units = "tokens per interval"

    def __init__(
        self,
        preset: str | None = DEFAULT_PRESET,
        params: ProvisioningParams | None = None,
        demand_scale: float = 1.0,
    ) -> None:
        if params is None:
            if preset is None:
                raise ConfigError("provisioning task: give a preset or explicit params")
            params = preset_params(preset)
        params.check()
        if not (math.isfinite(demand_scale) and demand_scale > 0):
            raise ConfigError(f"provisioning task: demand_scale must be > 0, got {demand_scale}")
        self.preset = preset if params == PRESETS.get(preset or "") else None
        self.params = params
        self.demand_scale = float(demand_scale)

    def __repr__(self) -> str:
        label = self.preset if self.preset is not None else self.params
        scale = f", demand_scale={self.demand_scale:g}" if self.demand_scale != 1.0 else ""
        return f"{type(self).__name__}({label!r}{scale})"

    @property
    def capacity_range(self) -> tuple[float, float]:
        """The capacity bounds in real units (tokens per interval)."""
        return self.demand_scale * self.params.a_min, self.demand_scale * self.params.a_max

    def capped_from(self) -> float:
        """The smallest demand (real units) whose optimal capacity is the upper bound."""
        low, high = 0.0, 1.0
        one = torch.ones(1, 1, dtype=torch.float64)
        while self._decide_normalized(high * one).item() < 1.0 - 1e-9:
            high *= 2.0
            if high > 1e12:
                return math.inf
        for _ in range(80):
            mid = 0.5 * (low + high)
            if self._decide_normalized(mid * one).item() < 1.0 - 1e-9:
                low = mid
            else:
                high = mid
        return float(self.denormalize(torch.tensor(high, dtype=torch.float64)))

    def fit_to_data(
        self, demand: np.ndarray, interval_s: float
    ) -> tuple[ProvisioningTask, str | None]:
        """The task with its capacity range following the training ``demand`` (tokens per
        interval): unchanged when the largest demand is decided below the upper bound,
        else both bounds scaled (to two significant digits, rounded up) so that twice the
        largest demand is; the note says so."""
        values = np.asarray(demand, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return self, None
        largest = float(values.max())
        cap = self.capped_from()
        if largest < cap:
            return self, None
        needed = 2.0 * largest / cap * self.demand_scale
        digits = 10.0 ** (math.floor(math.log10(needed)) - 1)
        scale = math.ceil(needed / digits - 1e-9) * digits
        task = ProvisioningTask(self.preset, self.params, scale)
        lo, hi = self.capacity_range
        new_lo, new_hi = task.capacity_range
        note = (
            f"provisioning task: the training demand reaches {largest:,.0f} tokens per "
            f"interval, but the capacity range [{lo:,.0f}, {hi:,.0f}] caps the decision "
            f"from {cap:,.0f} on; the range is scaled ×{scale:g} to [{new_lo:,.0f}, "
            f"{new_hi:,.0f}] so that the decisions follow the demand"
        )
        return task, note

    @property
    def stationary_ratio(self) -> float:
        """``k``: the under-provisioning loss is stationary at normalized capacity ``k · ĉ``."""
        p = self.params
        energy_per_token = (1.0 - p.eta) * p.pue * p.p_active
        return p.eta / (energy_per_token * p.utility_b * math.log(p.utility_a + 1.0)) - (
            1.0 / p.utility_a
        )

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Real units → the loss's normalized units,
        ``max(0, (z / demand_scale - a_min) / (a_max - a_min))``."""
        p = self.params
        return torch.relu((z / self.demand_scale - p.a_min) / (p.a_max - p.a_min))

    def denormalize(self, u: torch.Tensor) -> torch.Tensor:
        """Normalized capacity in ``[0, 1]`` → real units in :attr:`capacity_range`."""
        p = self.params
        return self.demand_scale * (p.a_min + (p.a_max - p.a_min) * u)

    def _slot_terms(
        self, a_n: torch.Tensor, c_n: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slot energy (PUE included) and utility, both unweighted, normalized inputs."""
        p = self.params
        served = torch.minimum(a_n, c_n)
        energy = p.pue * (p.p_active * served + p.p_idle * torch.relu(a_n - c_n))
        # served <= c_n, so the fraction stays in [0, 1] and is 0 where demand is 0
        fraction = served / c_n.clamp_min(_MIN_DEMAND)
        accuracy = torch.log1p(p.utility_a * fraction) / (p.utility_b * math.log(p.utility_a + 1.0))
        return energy, accuracy * c_n

    def _slot_loss(self, a_n: torch.Tensor, c_n: torch.Tensor) -> torch.Tensor:
        energy, utility = self._slot_terms(a_n, c_n)
        return (1.0 - self.params.eta) * energy - self.params.eta * utility

    def decide(self, y_hat: torch.Tensor) -> torch.Tensor:
        """The capacity ``[B, h]`` (real units) that minimises the loss if demand is ``y_hat``.

        Exact and differentiable: the gradient flows through the candidate chosen per slot.
        """
        return self.denormalize(self._decide_normalized(self.normalize(y_hat)))

    def _decide_normalized(self, c_n: torch.Tensor) -> torch.Tensor:
        top = c_n.clamp_max(1.0)
        stationary = torch.minimum((self.stationary_ratio * c_n).clamp_min(0.0), top)
        candidates = torch.stack(
            (stationary, top, torch.zeros_like(c_n), torch.ones_like(c_n)), dim=-1
        )
        losses = self._slot_loss(candidates, c_n.unsqueeze(-1))
        return candidates.gather(-1, losses.argmin(dim=-1, keepdim=True)).squeeze(-1)

    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``[B]``: mean over slots of the decision loss of ``x`` under ``y``."""
        return self._slot_loss(self.normalize(x), self.normalize(y)).mean(dim=-1)

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample ``[B]`` parts of :meth:`cost`, means over slots in normalized units.

        ``energy`` and ``utility`` are unweighted; ``loss = (1-η)·energy - η·utility``.
        ``served`` is the fraction of demand the capacity covers (1 where demand is 0).
        """
        a_n, c_n = self.normalize(x), self.normalize(y)
        energy, utility = self._slot_terms(a_n, c_n)
        eta = self.params.eta
        served = torch.where(
            c_n > _MIN_DEMAND,
            torch.minimum(a_n, c_n) / c_n.clamp_min(_MIN_DEMAND),
            torch.ones_like(c_n),
        )
        return {
            "energy": energy.mean(dim=-1),
            "utility": utility.mean(dim=-1),
            "loss": ((1.0 - eta) * energy - eta * utility).mean(dim=-1),
            "served": served.mean(dim=-1),
        }

    def to_dict(self) -> dict[str, Any]:
        """Name, preset (or ``None`` for custom constants), every constant and the scale of
        the capacity range."""
        return {
            "name": self.name,
            "preset": self.preset,
            **asdict(self.params),
            "demand_scale": self.demand_scale,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProvisioningTask:
        """Rebuild from :meth:`to_dict` output; the constants win over the preset name."""
        fields = set(ProvisioningParams.__dataclass_fields__)
        missing = fields - {"pue"} - set(d)
        if missing:
            raise ConfigError(f"provisioning task dict lacks {', '.join(sorted(missing))}")
        params = ProvisioningParams(**{k: float(d[k]) for k in fields if k in d})
        return cls(d.get("preset"), params, float(d.get("demand_scale", 1.0)))
