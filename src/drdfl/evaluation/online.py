"""Online decision-focused recalibration at test time.

An operator's system sees the demand of every slot once it has passed. This mode walks a
test set in time order and, before each decision, picks the correction of the forecast
that would have cost least on the slots already observed: **discounted follow-the-leader**
over a grid of experts, each a multiple ``k`` of a blend of the model's forecast ``f``
and its anchor rule ``a`` (the rule an anchored model corrects, else persistence),

    forecast_e = k · ((1 − λ) · f + λ · a)      (real units: k multiplies demand itself)

scored by the decision regret each expert would have had, discounted by half every
``halflife`` windows. The expert ``k = 1, λ = 0`` is the model itself; it decides until
the first truth is known, and wins ties.

Time order is the order of the windows' first input slot in their test series (for the
``paper`` suite: rows in file order, windows left to right within a row; its batches are
then scored in the paper's own order). A window decided at slot ``s + w`` (its inputs
``s … s + w − 1`` seen) may use the regret of window ``m`` only when all of ``m``'s
targets have passed: ``s_m + w + lead + h ≤ s + w``. The demand of a slot being decided
for never enters its own decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import lfilter
from torch import nn

from drdfl.data.windows import Scaler, Windows
from drdfl.errors import ConfigError
from drdfl.evaluation.metrics import WindowScores
from drdfl.tasks.base import DecisionTask

#: multiples of demand an expert may apply: 1/2 … 2 in steps of 2^(1/4)
SCALES = tuple(2.0 ** (k / 4) for k in range(-4, 5))
#: weights of the anchor rule an expert may blend in
MIXES = (0.0, 0.5, 1.0)
#: experts priced per chunk (bounds memory on long test sets)
_CHUNK = 4_000_000


@dataclass(frozen=True)
class OnlineSettings:
    """How the online recalibration adapts."""

    #: windows after which an observed regret counts half
    halflife: float = 256.0
    scales: tuple[float, ...] = SCALES
    mixes: tuple[float, ...] = MIXES
    #: rules the experts blend in besides the model's anchor (``mean``: the window mean)
    rules: tuple[str, ...] = ()

    def experts(self, n_rules: int) -> np.ndarray:
        """``[E, 3]`` rows ``(k, rule, λ)``; the model itself (``k = 1, λ = 0``) first, a
        blend with λ = 0 listed once (its rule does not matter)."""
        grid = {(k, 0, 0.0) for k in self.scales}
        grid |= {
            (k, r, lam) for lam in self.mixes if lam for k in self.scales for r in range(n_rules)
        }
        grid.add((1.0, 0, 0.0))
        rows = sorted(grid, key=lambda e: (e != (1.0, 0, 0.0), e[2], e[1], e[0]))
        return np.asarray(rows, dtype=np.float64)


def check_online(n_windows: int, name: str, settings: OnlineSettings) -> None:
    """Raise :class:`ConfigError` if a test set of ``n_windows`` is too short to adapt on:
    it must hold more windows than the half-life of what is observed."""
    if n_windows <= settings.halflife:
        raise ConfigError(
            f"evaluation.online: test set {name!r} has {n_windows} windows, not more than "
            f"evaluation.online_halflife = {settings.halflife:g}; lower the half-life or "
            "turn evaluation.online off"
        )


def anchor_rules(forecaster: nn.Module, extra: tuple[str, ...] = ()) -> list[nn.Module]:
    """The rules the online experts blend in: an anchored forecaster's own rule (a naive
    forecaster itself; persistence for any other forecaster), then the ``extra`` rules it
    is not already."""
    from drdfl.models.forecasters import RevINForecaster
    from drdfl.models.naive import AnchoredForecaster, NaiveForecaster

    inner = forecaster.inner if isinstance(forecaster, RevINForecaster) else forecaster
    window, horizon = int(inner.window), int(inner.horizon)  # type: ignore[arg-type]
    if isinstance(inner, NaiveForecaster):
        own: nn.Module = inner
        name = str(inner.spec["rule"])
    elif isinstance(inner, AnchoredForecaster):
        own = NaiveForecaster(window, horizon, inner.anchor, alpha=inner.alpha)
        own.weights.copy_(inner.weights)
        name = inner.anchor
    else:
        own, name = NaiveForecaster(window, horizon, "last"), "last"
    return [own, *(NaiveForecaster(window, horizon, r) for r in extra if r != name)]


def known_before(start: np.ndarray, lead: int, horizon: int) -> np.ndarray:
    """For windows sorted by ``start``: how many of them (a prefix) have all their targets
    observed when each one is decided."""
    return np.searchsorted(start, start - lead - horizon, side="right")


@torch.inference_mode()
def recalibrate(
    scores: WindowScores,
    windows: Windows,
    scaler: Scaler,
    task: DecisionTask,
    rules: list[nn.Module],
    settings: OnlineSettings | None = None,
) -> WindowScores:
    """``scores`` (of ``windows``, in their order) with every decision remade online.

    Returns new scores in the same window order: the recalibrated forecast, its decision
    and regret; the optimal cost is unchanged. ``rules`` forecast what the experts blend
    in (:func:`anchor_rules`).
    """
    settings = settings or OnlineSettings()
    check_online(len(scores), windows.name or "test set", settings)
    order = np.argsort(scores.start, kind="stable")
    start = scores.start[order]
    model = torch.as_tensor(scores.prediction[order])  # [N, h], real units
    truth = torch.as_tensor(scores.truth[order])
    x = torch.as_tensor(windows.x[order], dtype=torch.float32)
    rule = torch.stack([scaler.inverse_transform(r(x).double()) for r in rules])  # [R, N, h]
    experts = torch.as_tensor(settings.experts(len(rules)))
    optimal = torch.as_tensor(scores.optimal_cost[order])

    def forecasts(e: torch.Tensor) -> torch.Tensor:
        """``[len(e), N, h]`` forecasts of experts ``e`` (rows of ``experts``)."""
        k, r, lam = e[:, 0, None, None], e[:, 1].long(), e[:, 2, None, None]
        return k * ((1.0 - lam) * model + lam * rule[r])

    n, h = model.shape
    per = max(1, _CHUNK // max(n * h, 1))
    regret = torch.cat(
        [
            task.cost(task.decide(f.reshape(-1, h)), truth.repeat(f.shape[0], 1)).reshape(-1, n)
            - optimal
            for f in (forecasts(experts[i : i + per]) for i in range(0, len(experts), per))
        ]
    ).numpy()
    decay = 0.5 ** (1.0 / settings.halflife)
    discounted = lfilter([1.0], [1.0, -decay], regret, axis=1)  # Σ_j≤i decay^(i-j) regret_j
    known = known_before(start, windows.lead, h)
    totals = np.where(known > 0, discounted[:, np.maximum(known - 1, 0)], 0.0)
    pick = totals.argmin(axis=0)  # ties and no history: expert 0, the model itself
    chosen = experts[pick]
    k, lam = chosen[:, 0, None], chosen[:, 2, None]
    blend = rule[chosen[:, 1].long(), torch.arange(n)]
    forecast = k * ((1.0 - lam) * model + lam * blend)
    decision = task.decide(forecast)
    back = np.empty_like(order)
    back[order] = np.arange(n)
    return WindowScores(
        start=scores.start,
        prediction=forecast.numpy()[back],
        truth=scores.truth,
        decision=decision.numpy()[back],
        regret=regret[pick, np.arange(n)][back],
        optimal_cost=scores.optimal_cost,
        sq_err=((scaler.transform(forecast) - scaler.transform(truth)) ** 2)
        .mean(dim=1)
        .numpy()[back],
    )


__all__ = [
    "MIXES",
    "SCALES",
    "OnlineSettings",
    "anchor_rules",
    "check_online",
    "known_before",
    "recalibrate",
]
