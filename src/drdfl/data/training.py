"""What a training method receives: windows, the normalized series and the scaler."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drdfl.data.windows import Scaler, Windows


@dataclass
class TrainingData:
    """What a method may train on.

    ``train``/``val`` are windows in normalized units; ``series`` is the normalized training
    series itself (for generative models and augmentations that act on the series);
    ``scaler`` maps normalized units back to the task's real units.
    """

    train: Windows
    val: Windows | None
    scaler: Scaler
    series: np.ndarray
    interval_s: float = 5.0
