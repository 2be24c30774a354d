"""Forecasters: ``torch.nn.Module``s from demand windows ``[B, w]`` to forecasts ``[B, h]``.

Inputs and outputs are in the ``Scaler``'s normalized units, where zero demand sits at
``-lo / span`` (below 0 whenever the training minimum is above zero). The default head is
therefore unconstrained (``output="linear"``): a forecast can reach zero demand and any
level below the training minimum, and the decision's own clamp (capacity ≥ its floor)
supplies the non-negativity. Bounded heads stay available: ``output="softplus"`` is a
sharp softplus ``ln(1 + e^{βz}) / β`` with β = 10 (never a zero gradient, but never below
the training minimum), ``output="relu"`` the paper's choice.

``revin=True`` (or a name ``revin-<forecaster>``) wraps a forecaster in reversible instance
normalization (Kim et al., ICLR 2022): each input window is normalized by its own mean and
standard deviation, passed through an affine map and the network, and the forecast is
mapped back with the same statistics. The forecast then follows any positive scaling and
shift of the window — a change of demand level in real units is such an affine map of the
normalized units — up to the small ``eps`` in the standard deviation.

Every forecaster records its constructor arguments (``model.spec``), so that
``forecaster_from_spec(forecaster_spec(model))`` rebuilds the architecture; weights travel
separately as a ``state_dict``. Specs saved before the head became a choice record their
head (``"output": "softplus"``) and rebuild as they were.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from drdfl.errors import ConfigError, ModelError
from drdfl.models.base import Forecaster, positive_int
from drdfl.seeding import seeded

#: prefix of a forecaster name that asks for the RevIN wrapper (``revin-mlp``)
REVIN_PREFIX = "revin-"
_REVIN_EPS = 1e-5


def _sizes(values: Sequence[int], what: str) -> list[int]:
    sizes = [positive_int(v, what) for v in values]
    if not sizes:
        raise ConfigError(f"forecaster {what} must list at least one layer size")
    return sizes


def _dropout(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"forecaster dropout must be in [0, 1), got {p!r}")
    return float(p)


class LSTMForecaster(Forecaster):
    """The paper's LSTM: two LSTM layers with LayerNorm and dropout, then a GELU MLP head.

    With the defaults: LSTM 1→128, LayerNorm, dropout 0.3, LSTM 128→64, LayerNorm,
    dropout 0.3; the last time step goes through Linear 64→32, GELU, Linear 32→h.
    """

    name = "lstm"

    def __init__(
        self,
        window: int = 7,
        horizon: int = 1,
        hidden: Sequence[int] = (128, 64),
        head: int = 32,
        dropout: float = 0.3,
        output: str = "linear",
    ) -> None:
        sizes = _sizes(hidden, "hidden")
        super().__init__(
            window,
            horizon,
            output,
            hidden=sizes,
            head=positive_int(head, "head"),
            dropout=_dropout(dropout),
        )
        inputs = [1, *sizes[:-1]]
        self.lstms = nn.ModuleList(
            nn.LSTM(n_in, n_out, batch_first=True)
            for n_in, n_out in zip(inputs, sizes, strict=True)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(n) for n in sizes)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(sizes[-1], head), nn.GELU(), nn.Linear(head, horizon))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, h]`` for windows ``[B, w]``."""
        self._check(x)
        h = x.unsqueeze(-1)
        for lstm, norm in zip(self.lstms, self.norms, strict=True):
            h, _ = lstm(h)
            h = self.dropout(norm(h))
        return self.output(self.head(h[:, -1]))


class MLPForecaster(Forecaster):
    """A fully connected network on the whole window, GELU activations."""

    name = "mlp"

    def __init__(
        self,
        window: int = 7,
        horizon: int = 1,
        hidden: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        output: str = "linear",
    ) -> None:
        sizes = _sizes(hidden, "hidden")
        super().__init__(window, horizon, output, hidden=sizes, dropout=_dropout(dropout))
        layers: list[nn.Module] = []
        for n_in, n_out in zip([window, *sizes[:-1]], sizes, strict=True):
            layers += [nn.Linear(n_in, n_out), nn.GELU(), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers, nn.Linear(sizes[-1], horizon))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, h]`` for windows ``[B, w]``."""
        self._check(x)
        return self.output(self.body(x))


class LinearForecaster(Forecaster):
    """An autoregressive linear model: each forecast slot is an affine map of the window."""

    name = "linear"

    def __init__(self, window: int = 7, horizon: int = 1, output: str = "linear") -> None:
        super().__init__(window, horizon, output)
        self.linear = nn.Linear(window, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, h]`` for windows ``[B, w]``."""
        self._check(x)
        return self.output(self.linear(x))


class RevINForecaster(Forecaster):
    """``inner`` behind reversible instance normalization with a learned affine map.

    Each window is standardized by its own mean μ and standard deviation σ (``eps`` added
    to the variance), mapped by ``γ·z + β``, forecast by ``inner`` and mapped back,
    ``((ŷ − β) / γ)·σ + μ``; the head (``output``) acts on that de-normalized forecast. The
    inner network's own head is replaced by the identity, since a bound on the
    standardized scale would bound forecasts relative to each window's level.
    """

    name = "revin"

    def __init__(self, inner: Forecaster) -> None:
        if isinstance(inner, RevINForecaster):
            raise ModelError("forecaster is already wrapped in RevIN")
        super().__init__(inner.window, inner.horizon, inner.spec["output"])
        self.spec = {**inner.spec, "revin": True}
        inner.output = nn.Identity()
        self.inner = inner
        self.affine_weight = nn.Parameter(torch.ones(1))
        self.affine_bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, h]`` for windows ``[B, w]``."""
        self._check(x)
        mean = x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + _REVIN_EPS)
        z = (x - mean) / std * self.affine_weight + self.affine_bias
        # the ε² keeps the inverse finite should training drive γ to zero
        out = (self.inner(z) - self.affine_bias) / (self.affine_weight + _REVIN_EPS**2)
        return self.output(out * std + mean)


#: registry name → forecaster class
FORECASTERS: dict[str, type[Forecaster]] = {
    cls.name: cls for cls in (LSTMForecaster, MLPForecaster, LinearForecaster)
}


def _valid_names() -> str:
    return f"{', '.join(FORECASTERS)} (each also as {REVIN_PREFIX}<name>)"


def build_forecaster(
    name: str,
    window: int = 7,
    horizon: int = 1,
    *,
    seed: int | None = None,
    revin: bool = False,
    anchor: str = "none",
    anchor_alpha: float | None = None,
    **kwargs: Any,
) -> Forecaster:
    """A new forecaster ``name`` for windows of ``window`` slots and ``horizon`` outputs.

    ``kwargs`` go to the forecaster's constructor (e.g. ``hidden``, ``dropout``,
    ``output``). ``anchor`` (``last``, ``mean`` or ``ets`` with smoothing constant
    ``anchor_alpha``; ``None``: fitted by the method on the training windows) makes the
    network a learned correction of that rule
    (:class:`~drdfl.models.naive.AnchoredForecaster`). ``revin=True``, or a name
    ``revin-<name>``, wraps the result in :class:`RevINForecaster`. With ``seed``, the
    initial weights depend on the seed only (the global RNG is left as it was).
    """
    from drdfl.models.naive import ANCHORS, AnchoredForecaster, NaiveForecaster

    if name.startswith(REVIN_PREFIX):
        name, revin = name[len(REVIN_PREFIX) :], True
    if name == NaiveForecaster.name:  # a rule saved by a naive-* method
        return NaiveForecaster(window=window, horizon=horizon, **kwargs)
    if name not in FORECASTERS:
        raise ConfigError(f"unknown forecaster {name!r}; valid forecasters: {_valid_names()}")
    if not isinstance(revin, bool):
        raise ConfigError(f"forecaster revin must be true or false, got {revin!r}")
    if anchor not in ANCHORS:
        raise ConfigError(f"anchor: unknown rule {anchor!r}; valid anchors: {', '.join(ANCHORS)}")
    cls = FORECASTERS[name]
    try:
        with seeded(seed):
            model: Forecaster = cls(window=window, horizon=horizon, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for forecaster {name!r}: {exc}") from None
    if anchor != "none":
        model = AnchoredForecaster(model, anchor, anchor_alpha)
    return RevINForecaster(model) if revin else model


def with_revin(model: Forecaster) -> Forecaster:
    """``model`` wrapped in RevIN (``model`` itself if it already is); the wrapper takes
    over ``model``'s head, so use the returned module from then on."""
    from drdfl.models.naive import NaiveForecaster

    if isinstance(model, RevINForecaster):
        return model
    if not isinstance(model, Forecaster) or isinstance(model, NaiveForecaster):
        raise ModelError(
            f"{type(model).__name__} is not a trainable drdfl forecaster; cannot wrap it"
        )
    return RevINForecaster(model)


def forecaster_spec(model: nn.Module) -> dict[str, Any]:
    """The JSON-serialisable architecture of ``model`` (name and constructor arguments)."""
    if isinstance(model, RevINForecaster):  # the inner spec may have changed since wrapping
        return {**forecaster_spec(model.inner), "revin": True}
    if not isinstance(model, Forecaster):
        raise ModelError(f"{type(model).__name__} is not a drdfl forecaster; it has no spec")
    return copy.deepcopy(model.spec)


def forecaster_from_spec(spec: dict[str, Any]) -> Forecaster:
    """A new (untrained) forecaster with the architecture ``spec`` describes."""
    if "name" not in spec:
        raise ModelError("forecaster spec lacks 'name'")
    options = {k: v for k, v in spec.items() if k != "name"}
    try:
        return build_forecaster(spec["name"], **options)
    except ConfigError as exc:
        raise ModelError(f"cannot rebuild forecaster from spec: {exc}") from None
