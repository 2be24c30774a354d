"""Neural models: demand forecasters (and, later, diffusion denoisers)."""

from drdfl.models.forecasters import (
    FORECASTERS,
    Forecaster,
    LinearForecaster,
    LSTMForecaster,
    MLPForecaster,
    RevINForecaster,
    build_forecaster,
    forecaster_from_spec,
    forecaster_spec,
    with_revin,
)

__all__ = [
    "FORECASTERS",
    "Forecaster",
    "LSTMForecaster",
    "LinearForecaster",
    "MLPForecaster",
    "RevINForecaster",
    "build_forecaster",
    "forecaster_from_spec",
    "forecaster_spec",
    "with_revin",
]
