"""Decision tasks whose decision is the solution of a user-written convex program.

A :class:`ConvexTask` wraps a DPP-compliant ``cvxpy`` problem with the forecast as a
``cvxpy.Parameter``; :meth:`ConvexTask.decide` solves it for every forecast of a batch and
is differentiated through the solution map by ``cvxpylayers``. The cost that prices a
decision is a plain torch function, so it may be the exact loss even where the program
has to use a convex surrogate of it.

:class:`MultiSlotProvisioningTask` is the built-in use: the paper's provisioning trade-off
over ``h`` slots with a penalty on capacity changes, which couples the slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cvxpy as cp
import numpy as np
import torch
from cvxpylayers.torch import CvxpyLayer

from drdfl.errors import ConfigError, TrainingError
from drdfl.tasks.base import DecisionTask
from drdfl.tasks.provisioning import DEFAULT_PRESET, ProvisioningParams, ProvisioningTask

# Clarabel (interior point) solves to high accuracy, which keeps the implicit derivatives
# of the solution close to the finite-difference ones.
DEFAULT_SOLVER_ARGS: dict[str, Any] = {"solve_method": "Clarabel"}


class ConvexTask(DecisionTask):
    """A task whose decision is ``argmin`` of a convex program parametrised by the forecast.

    ``problem`` must be DPP-compliant (``problem.is_dpp()``), with ``parameter`` a vector of
    shape ``(h,)`` that receives one forecast and ``variable`` the decision. Forecasts
    ``[B, h]`` pass through ``forecast_to_parameter`` (e.g. a normalization) before they
    are written into ``parameter``; solutions pass through ``solution_to_decision``.
    ``cost_fn(x, y)`` prices decisions ``x`` under demand ``y`` per sample (``[B]``).

    A task built this way is saved by name only; to rebuild it from a saved model, subclass
    it with a ``from_dict`` classmethod and register it in ``drdfl.tasks.TASKS`` (its name →
    ``"module:Class"``).
    """

    name = "convex"

    def __init__(
        self,
        problem: cp.Problem,
        parameter: cp.Parameter,
        variable: cp.Variable,
        cost_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        forecast_to_parameter: Callable[[torch.Tensor], torch.Tensor] | None = None,
        solution_to_decision: Callable[[torch.Tensor], torch.Tensor] | None = None,
        units: str = "tokens per interval",
        solver_args: dict[str, Any] | None = None,
    ) -> None:
        if not problem.is_dpp():
            raise ConfigError("convex task: the problem is not DPP-compliant (see cvxpy's DPP)")
        # cvxpy overloads ==, so membership is checked by identity
        if not any(p is parameter for p in problem.parameters()):
            raise ConfigError(f"convex task: parameter {parameter.name()!r} is not in the problem")
        if not any(v is variable for v in problem.variables()):
            raise ConfigError(f"convex task: variable {variable.name()!r} is not in the problem")
        if len(parameter.shape) != 1:
            raise ConfigError(
                f"convex task: the forecast parameter must be a vector (h,), got {parameter.shape}"
            )
        self.horizon = int(parameter.shape[0])
        self.units = units
        self._cost_fn = cost_fn
        self._to_parameter = forecast_to_parameter
        self._to_decision = solution_to_decision
        self._layer = CvxpyLayer(
            problem,
            parameters=[parameter],
            variables=[variable],
            solver_args={**DEFAULT_SOLVER_ARGS, **(solver_args or {})},
        )

    def decide(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Solve the program for each forecast of ``y_hat [B, h]``; differentiable."""
        if y_hat.dim() != 2 or y_hat.shape[1] != self.horizon:
            raise ConfigError(
                f"{self.name} task decides over {self.horizon} slots: expected forecasts of "
                f"shape [B, {self.horizon}], got {list(y_hat.shape)}"
            )
        value = y_hat if self._to_parameter is None else self._to_parameter(y_hat)
        try:
            (solution,) = self._layer(value)
        except cp.error.SolverError as exc:
            raise TrainingError(f"{self.name} task: the solver failed ({exc})") from None
        return solution if self._to_decision is None else self._to_decision(solution)

    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample cost ``[B]`` of decisions ``x`` under demand ``y`` (the torch cost)."""
        return self._cost_fn(x, y)


def _log_spaced_tangent_points(curvature: float, count: int) -> np.ndarray:
    """Points on ``[0, 1]`` spaced evenly in ``ln(1 + A z)``.

    Tangents of ``ln(1 + A z)`` at these points bound it from above with a gap ~10x
    smaller than evenly spaced points give, since the curve bends most near 0.
    """
    return np.expm1(np.linspace(0.0, math.log1p(curvature), count)) / curvature


def _tangents(p: ProvisioningParams, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent planes of the utility curve ``s``: ``s(z) ≤ offset_k + slope_k·z`` for all k,
    and the kinks ``ζ_k`` of their lower envelope (where tangents k and k+1 meet)."""
    z = _log_spaced_tangent_points(p.utility_a, count)
    scale = p.utility_b * math.log1p(p.utility_a)
    slope = p.utility_a / ((1.0 + p.utility_a * z) * scale)
    offset = np.log1p(p.utility_a * z) / scale - slope * z
    kinks = (offset[1:] - offset[:-1]) / (slope[:-1] - slope[1:])
    return offset, slope, kinks


class MultiSlotProvisioningTask(ConvexTask):
    """Provisioning over ``h`` coupled slots: the paper's trade-off plus a ramp penalty.

    The cost of capacities ``a_1..a_h`` under demand ``c_1..c_h`` is

        (1/h) · [ Σ_t loss(a_t, c_t) + ramp · Σ_{t≥2} |â_t − â_{t−1}| ]

    with ``loss`` the exact per-slot loss of :class:`ProvisioningTask` and ``â`` the
    normalized capacity: changing capacity between slots costs, so a decision balances
    each slot's optimum against its neighbours'.

    The per-slot loss is not convex in ``a`` (the energy ``P_act·min(a, c) + P_idle·(a−c)⁺``
    is concave when ``P_act > P_idle``), so the program minimises a convex surrogate:

    - the energy is lifted with a served-tokens variable ``m ≤ min(â, ĉ)`` billed at
      ``P_act − P_idle`` on top of ``P_idle·â``; minimising over ``m`` gives the convex
      envelope of the per-slot loss, which equals the loss for every capacity up to the
      point where serving one more token stops paying (in particular at the single-slot
      optimum), and lies below it beyond;
    - the utility ``ĉ·s(m/ĉ)`` is replaced by the minimum of ``tangents`` tangent planes,
      an upper bound within ``1e-4·max s`` for the default 64 log-spaced tangents.

    The task's cost is the program's own objective (that envelope with the tangent-plane
    utility, the served tokens chosen optimally in closed form), so the program's
    decision is exactly optimal for the cost it is judged by and regret is never negative
    beyond the solver's tolerance. (Pricing with the exact non-convex loss instead gave
    regrets down to -5.7e-4 at ``ramp = 1``: a large ramp holds capacity where the
    envelope lies below the loss.) With one slot and no ramp the program's decision is
    within ``3e-5 · ĉ`` of the exact loss's optimum; ``exact_loss`` prices decisions with
    the exact per-slot loss for reference.
    """

    name = "multislot"

    def __init__(
        self,
        preset: str | None = DEFAULT_PRESET,
        *,
        horizon: int = 4,
        ramp: float = 0.05,
        tangents: int = 64,
        params: ProvisioningParams | None = None,
        solver_args: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(f"multislot task: horizon must be a positive integer, got {horizon}")
        if not ramp >= 0:
            raise ConfigError(f"multislot task: ramp must be >= 0, got {ramp}")
        if isinstance(tangents, bool) or not isinstance(tangents, int) or tangents < 2:
            raise ConfigError(f"multislot task: tangents must be an integer >= 2, got {tangents}")
        self.slot_task = ProvisioningTask(preset, params)
        self.ramp = float(ramp)
        self.tangents = tangents
        self._offset, self._slope, self._kinks = _tangents(self.slot_task.params, tangents)
        problem, demand, capacity = self._program(horizon)
        super().__init__(
            problem,
            demand,
            capacity,
            self._cost,
            forecast_to_parameter=self.slot_task.normalize,
            solution_to_decision=lambda a: self.slot_task.denormalize(a.clamp(0.0, 1.0)),
            units=self.slot_task.units,
            solver_args=solver_args,
        )

    def __repr__(self) -> str:
        label = self.slot_task.preset if self.slot_task.preset is not None else "custom"
        return f"{type(self).__name__}({label!r}, horizon={self.horizon}, ramp={self.ramp})"

    def _program(self, h: int) -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
        """The surrogate program in normalized units: demand parameter, capacity variable."""
        p = self.slot_task.params
        demand = cp.Parameter(h, nonneg=True, name="demand")
        capacity = cp.Variable(h, name="capacity")
        served = cp.Variable(h, name="served")
        utility = cp.Variable(h, name="utility")

        offset, slope = self._offset, self._slope
        # tangent k at z_k, scaled by the demand c: c·s(z_k) + s'(z_k)·(m − z_k·c)
        row = (1, h)
        tangent_bound = offset[:, None] @ cp.reshape(demand, row, order="C") + slope[
            :, None
        ] @ cp.reshape(served, row, order="C")
        utility_rows = np.ones((self.tangents, 1)) @ cp.reshape(utility, row, order="C")

        energy = p.pue * (p.p_idle * cp.sum(capacity) + (p.p_active - p.p_idle) * cp.sum(served))
        objective = (1.0 - p.eta) * energy - p.eta * cp.sum(utility)
        if h > 1:
            objective = objective + self.ramp * cp.norm1(cp.diff(capacity))
        constraints = [
            utility_rows <= tangent_bound,
            served >= 0,
            served <= capacity,
            served <= demand,
            capacity >= 0,
            capacity <= 1,
        ]
        return cp.Problem(cp.Minimize(objective / h), constraints), demand, capacity

    def _ramp_cost(self, x: torch.Tensor) -> torch.Tensor:
        return self.ramp * self.slot_task.normalize(x).diff(dim=-1).abs().sum(dim=-1)

    def _slot_surrogate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The program's per-slot energy and utility ``[B, h]`` at capacities ``x``.

        For fixed capacity the objective is convex and piecewise linear in the served
        tokens ``m ∈ [0, min(â, ĉ)]``, so its minimum lies at an end of that interval or at
        a kink of the tangent envelope (``m = ĉ·ζ_k``): all are evaluated, the best kept.
        """
        p = self.slot_task.params
        a_n = self.slot_task.normalize(x).clamp(0.0, 1.0)
        c_n = self.slot_task.normalize(y)
        top = torch.minimum(a_n, c_n).unsqueeze(-1)
        kinks = torch.as_tensor(self._kinks, dtype=x.dtype, device=x.device)
        served = torch.cat(
            (torch.zeros_like(top), top, torch.minimum(c_n.unsqueeze(-1) * kinks, top)), dim=-1
        )  # [B, h, candidates]
        offset = torch.as_tensor(self._offset, dtype=x.dtype, device=x.device)
        slope = torch.as_tensor(self._slope, dtype=x.dtype, device=x.device)
        # utility bound: min_k ĉ·offset_k + slope_k·m, for every candidate m
        utility = (c_n.unsqueeze(-1).unsqueeze(-1) * offset + served.unsqueeze(-1) * slope).amin(
            dim=-1
        )
        energy = p.pue * (p.p_idle * a_n.unsqueeze(-1) + (p.p_active - p.p_idle) * served)
        objective = (1.0 - p.eta) * energy - p.eta * utility
        best = objective.argmin(dim=-1, keepdim=True)
        return {
            "energy": energy.gather(-1, best).squeeze(-1),
            "utility": utility.gather(-1, best).squeeze(-1),
        }

    def _cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_terms(x, y)["loss"]

    def exact_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample exact provisioning loss plus the ramp penalty (not the program's)."""
        return self.slot_task.cost(x, y) + self._ramp_cost(x) / x.shape[-1]

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample ``[B]`` parts of :meth:`cost` (means over slots): energy, utility and
        ramp; ``loss = (1-η)·energy - η·utility + ramp``."""
        terms = self._slot_surrogate(x, y)
        eta = self.slot_task.params.eta
        ramp = self._ramp_cost(x) / x.shape[-1]
        slot_loss = ((1.0 - eta) * terms["energy"] - eta * terms["utility"]).mean(dim=-1)
        return {
            "energy": terms["energy"].mean(dim=-1),
            "utility": terms["utility"].mean(dim=-1),
            "ramp": ramp,
            "loss": slot_loss + ramp,
        }

    def to_dict(self) -> dict[str, Any]:
        """Horizon, ramp, tangents and the slot task's constants."""
        slot = self.slot_task.to_dict()
        del slot["name"]
        return {
            "name": self.name,
            "horizon": self.horizon,
            "ramp": self.ramp,
            "tangents": self.tangents,
            **slot,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultiSlotProvisioningTask:
        """Rebuild from :meth:`to_dict` output."""
        missing = {"horizon", "ramp", "tangents"} - set(d)
        if missing:
            raise ConfigError(f"multislot task dict lacks {', '.join(sorted(missing))}")
        slot = ProvisioningTask.from_dict(d)
        return cls(
            slot.preset,
            horizon=int(d["horizon"]),
            ramp=float(d["ramp"]),
            tangents=int(d["tangents"]),
            params=slot.params,
        )
