"""The forecaster contract: a ``torch.nn.Module`` from windows ``[B, w]`` to ``[B, h]`` that
records its constructor arguments (``spec``) so that its architecture can be rebuilt."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from drdfl.errors import ConfigError

OUTPUTS = ("linear", "softplus", "relu")
_SOFTPLUS_BETA = 10.0


def output_layer(output: str) -> nn.Module:
    """The head a forecast passes through last (``OUTPUTS``)."""
    if output == "linear":
        return nn.Identity()
    if output == "softplus":
        return nn.Softplus(beta=_SOFTPLUS_BETA)
    if output == "relu":
        return nn.ReLU()
    raise ConfigError(f"unknown forecaster output {output!r}; valid outputs: {', '.join(OUTPUTS)}")


def positive_int(value: Any, what: str) -> int:
    """``value`` if it is a positive integer; a :class:`ConfigError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"forecaster {what} must be a positive integer, got {value!r}")
    return value


class Forecaster(nn.Module):
    """Base: checks input windows and keeps the constructor arguments in ``spec``."""

    name: ClassVar[str] = "forecaster"

    def __init__(self, window: int, horizon: int, output: str, **options: Any) -> None:
        super().__init__()
        self.window = positive_int(window, "window")
        self.horizon = positive_int(horizon, "horizon")
        self.output = output_layer(output)
        self.spec: dict[str, Any] = {
            "name": self.name,
            "window": self.window,
            "horizon": self.horizon,
            "output": output,
            **options,
        }

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.window:
            raise ConfigError(
                f"{self.name} forecaster expects windows of shape [B, {self.window}], "
                f"got {list(x.shape)}"
            )
