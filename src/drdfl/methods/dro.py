"""Divergence-ball DRO of the per-sample decision loss: ``kldro``, ``cvar`` and ``chi2``.

Each method trains the forecaster on the worst-case expectation of the per-sample loss over
distributions within a divergence ball around the empirical one, written in its dual form
(a minimisation over one scalar dual variable next to the forecaster's weights):

* KL (Hu & Hong 2013): ``min_{λ>0} λ log E[exp(ℓ/λ)] + λ ε``;
* CVaR-α (Rockafellar & Uryasev; Levy et al. 2020): ``min_η η + E[(ℓ−η)₊] / (1−α)``;
* χ² (Levy et al. 2020, with ``D(Q‖P) = ½ E_P[(dQ/dP − 1)²]``):
  ``min_η sqrt(1+2ρ) · sqrt(E[(ℓ−η)₊²]) + η``.

The dual variable is an extra trained parameter, optimised jointly with the forecaster by the
shared loop. Because it shares the forecaster's (small) learning rate, it is also re-solved
exactly on the whole training set at the start of every epoch: the dual is convex in it for
fixed weights, so this is an exact block-coordinate step and keeps the objective the stated
robust loss rather than a lagging surrogate.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable

import torch
from pydantic import Field
from scipy.optimize import minimize_scalar
from torch import nn

from drdfl.data.training import TrainingData
from drdfl.methods.trainer import TrainedMethod
from drdfl.schema import StrictModel
from drdfl.tasks.base import DecisionTask

#: smallest KL temperature λ; keeps ``ℓ/λ`` finite (logsumexp handles the large values)
LAMBDA_FLOOR = 1e-6
#: tolerance (relative to the search interval) and iteration cap of the exact 1-D dual solves
_XATOL = 1e-12
_MAX_ITER = 500
#: windows scored per forward pass when re-solving the dual on the whole training set
_CHUNK = 8192


# ---------------------------------------------------------------------------- dual forms
def kl_dual(losses: torch.Tensor, lam: torch.Tensor | float, radius: float) -> torch.Tensor:
    """``λ log E[exp(ℓ/λ)] + λ ε`` for per-sample ``losses [n]`` (upper bound for every λ>0)."""
    lam = torch.as_tensor(lam, dtype=losses.dtype, device=losses.device)
    n = losses.shape[0]
    return lam * (torch.logsumexp(losses / lam, dim=0) - math.log(n)) + lam * radius


def cvar_dual(losses: torch.Tensor, eta: torch.Tensor | float, alpha: float) -> torch.Tensor:
    """``η + E[(ℓ−η)₊]/(1−α)``; minimised over η: the CVaR at level α (mean of the worst 1−α)."""
    return eta + torch.relu(losses - eta).mean() / (1.0 - alpha)


def chi2_dual(losses: torch.Tensor, eta: torch.Tensor | float, radius: float) -> torch.Tensor:
    """``sqrt(1+2ρ)·sqrt(E[(ℓ−η)₊²]) + η``; its minimum over η is the χ²-ball worst case."""
    second_moment = torch.relu(losses - eta).pow(2).mean()
    # the sqrt's gradient is infinite at 0 (η above every loss); a tiny floor keeps it finite
    return math.sqrt(1.0 + 2.0 * radius) * torch.sqrt(second_moment + 1e-20) + eta


# ---------------------------------------------------------------------------- exact solves
def _minimise_on(fn: Callable[[float], float], lo: float, hi: float) -> float:
    """Minimiser of a unimodal ``fn`` on ``[lo, hi]`` (bounded Brent search)."""
    result = minimize_scalar(
        fn,
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": _XATOL * max(1.0, hi - lo), "maxiter": _MAX_ITER},
    )
    return float(result.x)


def kl_solve(losses: torch.Tensor, radius: float) -> float:
    """The λ ≥ ``LAMBDA_FLOOR`` that minimises :func:`kl_dual` on fixed ``losses``.

    The optimum satisfies ``mean + λ ε ≤ dual(λ) ≤ max`` (Jensen; λ → 0), hence
    ``λ ≤ (max − mean)/ε``; the dual is convex in λ, so unimodal in ``log λ``.
    """
    z = losses.detach().double()
    spread = float(z.max() - z.mean())
    hi = spread / radius + 2.0 * LAMBDA_FLOOR
    log_lam = _minimise_on(
        lambda t: float(kl_dual(z, math.exp(t), radius)), math.log(LAMBDA_FLOOR), math.log(hi)
    )
    return max(math.exp(log_lam), LAMBDA_FLOOR)


def cvar_solve(losses: torch.Tensor, alpha: float) -> float:
    """An η minimising :func:`cvar_dual`: the α-quantile (the ⌈αn⌉-th smallest loss)."""
    z = torch.sort(losses.detach().double()).values
    n = z.shape[0]
    k = min(max(math.ceil(alpha * n - 1e-9), 1), n)
    return float(z[k - 1])


def chi2_solve(losses: torch.Tensor, radius: float) -> float:
    """The η minimising :func:`chi2_dual` on fixed ``losses``.

    Below the smallest loss the dual's stationary point is ``mean − std/sqrt(2ρ)`` (all
    samples reweighted, none to zero); otherwise the optimum lies between min and max.
    """
    z = losses.detach().double()
    unclipped = float(z.mean() - z.std(correction=0) / math.sqrt(2.0 * radius))
    if unclipped <= float(z.min()):
        return unclipped
    return _minimise_on(lambda e: float(chi2_dual(z, e, radius)), float(z.min()), float(z.max()))


def kl_robust_loss(losses: torch.Tensor, radius: float) -> torch.Tensor:
    """``sup_{KL(Q‖P̂)≤ε} E_Q[ℓ]`` over the empirical distribution of ``losses``."""
    return kl_dual(losses, kl_solve(losses, radius), radius)


def cvar(losses: torch.Tensor, alpha: float) -> torch.Tensor:
    """CVaR at level α of the empirical distribution of ``losses``."""
    return cvar_dual(losses, cvar_solve(losses, alpha), alpha)


def chi2_robust_loss(losses: torch.Tensor, radius: float) -> torch.Tensor:
    """``sup_{χ²(Q‖P̂)≤ρ} E_Q[ℓ]`` over the empirical distribution of ``losses``."""
    return chi2_dual(losses, chi2_solve(losses, radius), radius)


# ---------------------------------------------------------------------------- methods
class DROMethod(TrainedMethod):
    """Decision-focused training on the dual form of a divergence-ball worst case.

    Subclasses give the dual objective in terms of the *constrained* dual value, its exact
    solve on fixed losses, and the map between that value and the unconstrained parameter.
    """

    #: name of the dual variable in the training history
    dual_name = "dual"

    def configure(self) -> None:
        self._raw: nn.Parameter | None = None

    # -- what a subclass defines
    @abstractmethod
    def dual_objective(self, losses: torch.Tensor, dual: torch.Tensor | float) -> torch.Tensor:
        """The dual objective for per-sample ``losses [B]`` at the (constrained) dual value."""

    @abstractmethod
    def solve(self, losses: torch.Tensor) -> float:
        """The dual value minimising :meth:`dual_objective` on fixed ``losses``."""

    def to_raw(self, dual: float) -> float:
        """Unconstrained parameter for a dual value (identity for a free dual variable)."""
        return dual

    def from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    # -- shared
    def robust_loss(self, losses: torch.Tensor) -> torch.Tensor:
        """The worst-case expected loss over the ball for fixed ``losses`` (dual solved exactly)."""
        return self.dual_objective(losses, self.solve(losses))

    @property
    def dual(self) -> float:
        """Current value of the dual variable."""
        if self._raw is None:
            raise RuntimeError(f"{self.name}: the dual variable exists only during fit()")
        return float(self.from_raw(self._raw.detach()))

    @torch.no_grad()
    def _train_losses(self, forecaster: nn.Module) -> torch.Tensor:
        was_training = forecaster.training
        forecaster.eval()
        parts = [
            self.losses(forecaster(self._x[i : i + _CHUNK]), self._y[i : i + _CHUNK])
            for i in range(0, self._x.shape[0], _CHUNK)
        ]
        forecaster.train(was_training)
        return torch.cat(parts)

    def _resolve(self, forecaster: nn.Module) -> None:
        value = self.to_raw(self.solve(self._train_losses(forecaster)))
        with torch.no_grad():
            self._raw.fill_(value)

    def prepare(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        generator: torch.Generator,
    ) -> None:
        self._raw = nn.Parameter(torch.zeros((), device=self._x.device))

    def epoch_windows(
        self, epoch: int, forecaster: nn.Module, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._resolve(forecaster)
        return super().epoch_windows(epoch, forecaster, generator)

    def aggregate(self, losses: torch.Tensor) -> torch.Tensor:
        return self.dual_objective(losses, self.from_raw(self._raw))

    def extra_parameters(self) -> list[nn.Parameter]:
        return [self._raw]

    def epoch_record(self) -> dict[str, float]:
        return {self.dual_name: self.dual}


class KLDROParams(StrictModel):
    """Hyperparameters of ``kldro``."""

    radius: float = Field(2.0, gt=0, description="KL radius ε (paper: 2)")


class KLDROMethod(DROMethod):
    """KL-DRO of the per-sample decision loss, ``min_{w,λ>0} λ log E[exp(ℓ_w/λ)] + λ ε``.

    λ = softplus(ρ) + ``LAMBDA_FLOOR`` with ρ trained. Unlike the paper's code (the dual of
    the *batch mean* with a fixed λ, which is plain DFL), the expectation runs over samples,
    so high-loss windows get exponentially more weight. As ε → 0 the objective tends to the
    mean loss, as ε grows to the largest loss. Paper: ε = 2, lr 2e-5, 100 epochs.
    """

    name = "kldro"
    dual_name = "lambda"

    Params = KLDROParams

    @property
    def radius(self) -> float:
        return self.params.radius

    def dual_objective(self, losses: torch.Tensor, dual: torch.Tensor | float) -> torch.Tensor:
        return kl_dual(losses, dual, self.radius)

    def solve(self, losses: torch.Tensor) -> float:
        return kl_solve(losses, self.radius)

    def to_raw(self, dual: float) -> float:
        # inverse softplus, x + log(1 − e^{−x}), stable for large x; clamped away from 0
        x = max(dual - LAMBDA_FLOOR, 1e-12)
        return x + math.log(-math.expm1(-x))

    def from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(raw) + LAMBDA_FLOOR


class CVaRParams(StrictModel):
    """Hyperparameters of ``cvar``."""

    alpha: float = Field(
        0.9, ge=0, lt=1, description="level α: the objective is the mean of the worst 1−α"
    )


class CVaRMethod(DROMethod):
    """CVaR-α of the per-sample decision loss, ``min_{w,η} η + E[(ℓ_w−η)₊]/(1−α)``.

    At the optimum η is the α-quantile of the losses and the objective the mean of the
    worst ``1−α`` fraction of windows (α = 0: plain DFL).
    """

    name = "cvar"
    dual_name = "eta"

    Params = CVaRParams

    @property
    def alpha(self) -> float:
        return self.params.alpha

    def dual_objective(self, losses: torch.Tensor, dual: torch.Tensor | float) -> torch.Tensor:
        return cvar_dual(losses, dual, self.alpha)

    def solve(self, losses: torch.Tensor) -> float:
        return cvar_solve(losses, self.alpha)


class Chi2Params(StrictModel):
    """Hyperparameters of ``chi2``."""

    radius: float = Field(1.0, gt=0, description="χ² radius ρ, with D = ½ E[(dQ/dP − 1)²]")


class Chi2DROMethod(DROMethod):
    """χ²-divergence DRO of the per-sample decision loss (Levy et al. 2020 dual).

    ``min_{w,η} sqrt(1+2ρ)·sqrt(E[(ℓ_w−η)₊²]) + η``: for small ρ it adds
    ``sqrt(2ρ)·std(ℓ)`` to the mean loss; the positive part keeps reweighting non-negative.
    """

    name = "chi2"
    dual_name = "eta"

    Params = Chi2Params

    @property
    def radius(self) -> float:
        return self.params.radius

    def dual_objective(self, losses: torch.Tensor, dual: torch.Tensor | float) -> torch.Tensor:
        return chi2_dual(losses, dual, self.radius)

    def solve(self, losses: torch.Tensor) -> float:
        return chi2_solve(losses, self.radius)


__all__ = [
    "LAMBDA_FLOOR",
    "CVaRMethod",
    "Chi2DROMethod",
    "DROMethod",
    "KLDROMethod",
    "chi2_dual",
    "chi2_robust_loss",
    "chi2_solve",
    "cvar",
    "cvar_dual",
    "cvar_solve",
    "kl_dual",
    "kl_robust_loss",
    "kl_solve",
]
