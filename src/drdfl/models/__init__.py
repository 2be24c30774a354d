"""Neural models: demand forecasters (and, later, diffusion denoisers)."""

from drdfl.models.forecasters import (
    FORECASTERS,
    Forecaster,
    LinearForecaster,
    LSTMForecaster,
    MLPForecaster,
    build_forecaster,
    forecaster_from_spec,
    forecaster_spec,
)

__all__ = [
    "FORECASTERS",
    "Forecaster",
    "LSTMForecaster",
    "LinearForecaster",
    "MLPForecaster",
    "build_forecaster",
    "forecaster_from_spec",
    "forecaster_spec",
]
