"""The untrained rules a capacity planner already runs, and forecasters anchored on them.

Every rule is a fixed linear map of the window, ``forecast = W · window`` with ``W [h, w]``
whose rows sum to one, so a rule follows any change of demand level or units:

* ``last`` (persistence): every horizon slot gets the window's last value;
* ``mean``: the window's mean;
* ``ets`` (simple exponential smoothing): the level after smoothing the window with
  constant α ∈ (0, 1], started at its first value (α = 1 is persistence);
* ``seasonal``: each horizon slot gets the value one ``period`` earlier, which the window
  must hold (``window + lead ≥ period ≥ lead + horizon``).

:class:`NaiveForecaster` is a rule as a forecaster, optionally times a decision-optimal
multiple of demand (around zero demand, not around the training minimum).
:class:`AnchoredForecaster` is a rule plus a learned correction in the window's own level
and scale, ``rule(x) + σ(x) · g((x − μ(x)) / σ(x))``; ``g``'s last layer starts at zero,
so an untrained anchored forecaster forecasts exactly its rule.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from drdfl.errors import ConfigError, ModelError
from drdfl.models.base import Forecaster

#: the rules, in the order the report lists their methods
RULES = ("last", "mean", "ets", "seasonal")
#: the rules a forecaster can be anchored on (``none``: no anchor)
ANCHORS = ("none", "last", "mean", "ets")
#: the smallest window each rule needs: a mean or a smoothing of one value is persistence,
#: and an anchored correction needs a spread within the window
MIN_WINDOW = {"last": 1, "mean": 2, "ets": 2}
#: smoothing constant of an ``ets`` rule that no method has fitted yet
DEFAULT_ALPHA = 0.5
_EPS = 1e-5


def check_alpha(alpha: Any, key: str) -> float:
    """``alpha`` as a smoothing constant in (0, 1]; a :class:`ConfigError` naming ``key``."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha <= 1:
        raise ConfigError(f"{key}: a smoothing constant must be in (0, 1], got {alpha!r}")
    return float(alpha)


def check_window(
    rule: str, window: int, key: str, lead: int = 0, horizon: int = 1, period: int | None = None
) -> None:
    """Raise a :class:`ConfigError` naming ``key`` if ``window`` slots are too few for
    ``rule``."""
    if rule == "seasonal":
        if period is None or period < lead + horizon:
            raise ConfigError(
                f"{key}: a seasonal period must reach past the lead time and horizon "
                f"(≥ {lead + horizon} slots), got {period!r}"
            )
        if window + lead < period:
            raise ConfigError(
                f"{key}: the seasonal rule with a period of {period} slots needs windows of "
                f"at least {period - lead} slots (data.window is {window})"
            )
        return
    need = MIN_WINDOW.get(rule)
    if need is None:
        raise ConfigError(f"{key}: unknown rule {rule!r}; valid rules: {', '.join(RULES)}")
    if window < need:
        raise ConfigError(
            f"{key}: the {rule!r} rule needs windows of at least {need} slots "
            f"(data.window is {window})"
        )


def rule_weights(
    rule: str,
    window: int,
    horizon: int = 1,
    alpha: float | None = None,
    period: int | None = None,
    lead: int = 0,
) -> torch.Tensor:
    """The ``[horizon, window]`` weights of ``rule`` (each row sums to one)."""
    check_window(rule, window, "rule", lead, horizon, period)
    w = torch.zeros(horizon, window, dtype=torch.float64)
    if rule == "last":
        w[:, -1] = 1.0
    elif rule == "mean":
        w[:] = 1.0 / window
    elif rule == "ets":
        a = check_alpha(DEFAULT_ALPHA if alpha is None else alpha, "alpha")
        age = torch.arange(window - 1, -1, -1, dtype=torch.float64)  # slots before the last
        row = a * (1.0 - a) ** age
        row[0] = (1.0 - a) ** (window - 1)
        w[:] = row
    else:  # seasonal: horizon slot j (at window + lead + j) reads one period earlier
        assert period is not None
        for j in range(horizon):
            w[j, window + lead + j - period] = 1.0
    return w.float()


class NaiveForecaster(Forecaster):
    """An untrained rule as a forecaster: ``zero + scale · (W·x − zero)``.

    ``zero`` is zero demand in the forecaster's (normalized) units, so ``scale`` multiplies
    demand itself. Nothing here is trained; the rule's constants are fitted by the
    ``naive-*`` methods and kept as buffers (saved with the model).
    """

    name = "naive"

    def __init__(
        self,
        window: int = 7,
        horizon: int = 1,
        rule: str = "last",
        alpha: float | None = None,
        period: int | None = None,
        lead: int = 0,
        scale: float = 1.0,
        zero: float = 0.0,
        output: str = "linear",
    ) -> None:
        super().__init__(
            window,
            horizon,
            output,
            rule=rule,
            alpha=alpha,
            period=period,
            lead=lead,
            scale=float(scale),
            zero=float(zero),
        )
        self.register_buffer("weights", rule_weights(rule, window, horizon, alpha, period, lead))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("zero", torch.tensor(float(zero)))

    def set_constants(self, **constants: float) -> None:
        """Set ``alpha``, ``scale`` or ``zero`` (and keep :attr:`spec` in step)."""
        for key, value in constants.items():
            if key == "alpha":
                self.weights.copy_(
                    rule_weights(
                        self.spec["rule"],
                        self.window,
                        self.horizon,
                        value,
                        self.spec["period"],
                        self.spec["lead"],
                    )
                )
            elif key in ("scale", "zero"):
                getattr(self, key).fill_(float(value))
            else:
                raise ModelError(f"naive forecaster has no constant {key!r}")
            self.spec[key] = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, h]`` for windows ``[B, w]``."""
        self._check(x)
        rule = x @ self.weights.T
        return self.output(self.zero + self.scale * (rule - self.zero))


def _last_linear(module: nn.Module) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"{type(module).__name__} has no linear output layer to start at zero")
    return linears[-1]


class AnchoredForecaster(Forecaster):
    """``inner`` as a learned correction of a rule in the window's own level and scale.

    ``forecast = W·x + σ · g((x − μ) / σ)`` with the window's mean μ and standard
    deviation σ (``eps`` added to the variance): the correction follows any positive
    scaling and shift of the window, as the rule does. ``g`` is ``inner`` with its head
    replaced by the identity and its last linear layer set to zero, so the untrained
    model forecasts exactly its rule.
    """

    name = "anchored"

    def __init__(self, inner: Forecaster, anchor: str, alpha: float | None = None) -> None:
        if isinstance(inner, AnchoredForecaster | NaiveForecaster):
            raise ModelError(f"cannot anchor a {inner.name} forecaster")
        if anchor not in ANCHORS[1:]:
            raise ConfigError(
                f"anchor: unknown rule {anchor!r}; valid anchors: {', '.join(ANCHORS)}"
            )
        check_window(anchor, inner.window, "anchor")
        if alpha is not None:
            alpha = check_alpha(alpha, "anchor_alpha")
        super().__init__(inner.window, inner.horizon, inner.spec["output"])
        self.spec = {**inner.spec, "anchor": anchor, "anchor_alpha": alpha}
        inner.output = nn.Identity()
        last = _last_linear(inner)
        with torch.no_grad():
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
        self.inner = inner
        self.register_buffer("weights", rule_weights(anchor, inner.window, inner.horizon, alpha))

    @property
    def anchor(self) -> str:
        return str(self.spec["anchor"])

    @property
    def alpha(self) -> float | None:
        """The smoothing constant of an ``ets`` anchor (``None``: not fitted yet)."""
        return self.spec["anchor_alpha"]

    def set_alpha(self, alpha: float) -> None:
        """Set the smoothing constant of the ``ets`` anchor."""
        alpha = check_alpha(alpha, "anchor_alpha")
        self.weights.copy_(rule_weights(self.anchor, self.window, self.horizon, alpha))
        self.spec["anchor_alpha"] = alpha

    def rule(self, x: torch.Tensor) -> torch.Tensor:
        """The anchor's forecast ``[B, h]``."""
        return x @ self.weights.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, h]`` for windows ``[B, w]``."""
        self._check(x)
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + _EPS)
        return self.output(self.rule(x) + std * self.inner((x - mean) / std))


__all__ = [
    "ANCHORS",
    "DEFAULT_ALPHA",
    "MIN_WINDOW",
    "RULES",
    "AnchoredForecaster",
    "NaiveForecaster",
    "check_alpha",
    "check_window",
    "rule_weights",
]
