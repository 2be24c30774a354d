"""Wasserstein DRO by Frank–Wolfe adversarial training (``wdro``, Staib & Jegelka 2017).

Every batch of input windows is moved, per window, within an ℓ2 ball of radius ε to raise
the forecaster's loss; the forecaster then takes its descent step on the moved windows
(targets unchanged). This is the standard adversarial-training approximation of the
Wasserstein-∞ DRO objective ``min_w E[max_{‖δ‖₂≤ε} ℓ(h_w(x+δ), y)]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from drdfl.methods.losses import sample_losses
from drdfl.methods.trainer import TrainedMethod
from drdfl.schema import StrictModel

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def frank_wolfe_attack(
    forecaster: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    radius: float,
    steps: int,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Windows ``x + δ`` with ``‖δ_i‖₂ ≤ radius`` per window that (approximately) maximise
    ``loss_fn(forecaster(x + δ), y)``, by ``steps`` Frank–Wolfe steps of size ``2/(i+2)``.

    The linear maximisation oracle over the ball is ``x + radius·g/‖g‖`` per window (``g``
    the loss gradient at the current iterate). With ``bounds``, each oracle point is clipped
    to them, which keeps it in the ball when ``x`` lies within them, so every iterate (a
    convex combination of oracle points) stays in ball ∩ box; a coordinate of ``x`` already
    outside ``bounds`` is never pushed further out. The forecaster runs in eval mode (no
    dropout, no normalisation-statistics updates), only the input gradient is computed (the
    parameters' ``.grad`` is untouched), and its mode is restored afterwards.
    """
    x0 = x.detach()
    if bounds is not None:
        lo = x0.clamp(max=bounds[0])
        hi = x0.clamp(min=bounds[1])
    shape = (-1,) + (1,) * (x0.dim() - 1)
    was_training = forecaster.training
    forecaster.eval()
    adv = x0.clone()
    try:
        # cuDNN's RNN backward refuses eval mode; the native kernels do not
        with torch.backends.cudnn.flags(enabled=False):
            for i in range(steps):
                adv.requires_grad_(True)
                loss = loss_fn(forecaster(adv), y).sum()
                (grad,) = torch.autograd.grad(loss, adv)
                with torch.no_grad():
                    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
                    vertex = x0 + radius * grad / norm
                    if bounds is not None:
                        vertex = torch.minimum(torch.maximum(vertex, lo), hi)
                    gamma = 2.0 / (i + 2.0)
                    adv = adv + gamma * (vertex - adv)
    finally:
        forecaster.train(was_training)
    return adv.detach()


class WDROParams(StrictModel):
    """Hyperparameters of ``wdro``."""

    radius: float = Field(2.0, gt=0, description="ℓ2 radius ε per window, normalized units")
    steps: int = Field(15, ge=1, description="Frank–Wolfe steps per batch")
    attack_objective: Literal["regret", "decision", "mse"] | None = Field(
        None, description="loss the attack maximises (None: the training objective)"
    )
    bounds: tuple[float, float] | None = Field(
        (0.0, 1.0), description="range the attacked inputs are kept in (None: unbounded)"
    )

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError("lower bound must be below upper bound")
        return v


class WDROMethod(TrainedMethod):
    """W-DRO: decision-focused steps on Frank–Wolfe ℓ2-attacked input windows.

    Hyperparameters: ``radius`` ε of the per-window ℓ2 ball in *normalized* units; ``steps``
    Frank–Wolfe steps; ``attack_objective`` the loss the attack maximises (default: the
    training objective, i.e. the decision regret; ``"mse"`` is what the paper's code did);
    ``bounds`` the range attacked inputs are kept in. The default ``(0, 1)`` is exactly the
    range of the training windows (the min-max scaler is fitted on them): the adversary
    may move demand anywhere between the smallest and largest training demand but not to
    negative or unseen levels; ``None`` lifts the limit.

    Paper settings: ε = 2, 15 steps, lr 2e-5, 100 epochs. Note that ε = 2 on 7-slot windows
    in ``[0, 1]`` is a huge ball — the unit cube's diagonal is √7 ≈ 2.65 — so the attacker
    can replace a window by almost any other window; smaller ε gives a gentler baseline.
    """

    name = "wdro"

    Params = WDROParams

    def configure(self) -> None:
        p = self.params
        self.radius, self.steps = p.radius, p.steps
        self.attack_objective, self.bounds = p.attack_objective, p.bounds
        self._gain = torch.zeros(3)

    def attack_losses(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample loss the attack maximises."""
        objective = self.attack_objective or self.objective
        return sample_losses(pred, y, self._task, self._scaler, objective)

    def epoch_windows(
        self, epoch: int, forecaster: nn.Module, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # (sum of clean attack losses, sum of attacked attack losses, windows) this epoch
        self._gain = torch.zeros(3, dtype=torch.float64)
        return super().epoch_windows(epoch, forecaster, generator)

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, forecaster: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adv = frank_wolfe_attack(
            forecaster, self.attack_losses, x, y, self.radius, self.steps, self.bounds
        )
        was_training = forecaster.training
        forecaster.eval()
        with torch.no_grad():
            pair = self.attack_losses(forecaster(torch.cat([x, adv])), torch.cat([y, y]))
        forecaster.train(was_training)
        n = x.shape[0]
        self._gain += torch.stack(
            [pair[:n].sum().double().cpu(), pair[n:].sum().double().cpu(), torch.tensor(n)]
        )
        return adv, y

    def epoch_record(self) -> dict[str, float]:
        """Mean attack loss before and after the attack over the epoch's batches."""
        clean, attacked, n = self._gain.tolist()
        n = max(n, 1.0)
        return {"attack_loss_clean": clean / n, "attack_loss_adv": attacked / n}


__all__ = ["WDROMethod", "WDROParams", "frank_wolfe_attack"]
