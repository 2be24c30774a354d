"""Saved models: a directory with the forecaster, its scaler, task, config and training curve.

Layout of a model directory::

    model.pt      forecaster state_dict
    model.json    format version, forecaster spec, scaler, task, windowing, provenance
    config.toml   the resolved training configuration
    history.csv   one row per epoch
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import tomli_w
import torch
from torch import nn

from drdfl._io import atomic_open, write_json, write_text
from drdfl._version import __version__
from drdfl.data.windows import Scaler
from drdfl.errors import ModelError
from drdfl.tasks.base import DecisionTask

MODEL_FORMAT = "drdfl-model"
MODEL_FORMAT_VERSION = 1


@dataclass
class TrainedModel:
    """A forecaster with everything needed to use and judge it."""

    forecaster: nn.Module
    scaler: Scaler
    task: DecisionTask
    window: int
    horizon: int
    interval_s: float = 5.0
    method: str = ""
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def _toml_safe(obj: Any) -> Any:
    """TOML has no null: drop ``None`` values recursively."""
    if isinstance(obj, dict):
        return {k: _toml_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_toml_safe(v) for v in obj if v is not None]
    return obj


def save_model(model: TrainedModel, directory: str | Path) -> Path:
    """Write ``model`` to ``directory`` (created if needed); every file atomically."""
    from drdfl.models.forecasters import forecaster_spec

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "model.pt", "wb") as handle:
        torch.save(model.forecaster.state_dict(), handle)
    write_json(
        out / "model.json",
        {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "drdfl_version": __version__,
            "forecaster": forecaster_spec(model.forecaster),
            "scaler": model.scaler.to_dict(),
            "task": model.task.to_dict(),
            "window": model.window,
            "horizon": model.horizon,
            "interval_s": model.interval_s,
            "method": model.method,
            "seed": model.seed,
            "meta": model.meta,
        },
    )
    write_text(out / "config.toml", tomli_w.dumps(_toml_safe(model.config)))
    with atomic_open(out / "history.csv", "w", newline="") as handle:
        pd.DataFrame(model.history).to_csv(handle, index=False)
    return out


def load_model(directory: str | Path) -> TrainedModel:
    """Read a model directory written by :func:`save_model`; clear errors when it is not one."""
    import json
    import tomllib

    from drdfl.models.forecasters import forecaster_from_spec
    from drdfl.tasks import task_from_dict

    path = Path(directory)
    meta_path = path / "model.json"
    if not path.is_dir():
        raise ModelError(f"{path}: model directory not found")
    if not meta_path.is_file() or not (path / "model.pt").is_file():
        raise ModelError(f"{path}: not a drdfl model directory (expected model.json and model.pt)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path}: corrupt model metadata ({exc})") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{meta_path}: not a drdfl model (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format version {version} (drdfl {meta.get('drdfl_version')}) is "
            f"incompatible with this drdfl {__version__} (reads version "
            f"{MODEL_FORMAT_VERSION}); retrain the model"
        )
    forecaster = forecaster_from_spec(meta["forecaster"])
    try:
        state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        forecaster.load_state_dict(state)
    except (RuntimeError, OSError, EOFError) as exc:
        raise ModelError(f"{path / 'model.pt'}: cannot load weights ({exc})") from None
    forecaster.eval()
    config: dict[str, Any] = {}
    if (path / "config.toml").is_file():
        config = tomllib.loads((path / "config.toml").read_text())
    history: list[dict[str, float]] = []
    if (path / "history.csv").is_file() and (path / "history.csv").stat().st_size > 1:
        history = pd.read_csv(path / "history.csv").to_dict("records")
    return TrainedModel(
        forecaster=forecaster,
        scaler=Scaler.from_dict(meta["scaler"]),
        task=task_from_dict(meta["task"]),
        window=int(meta["window"]),
        horizon=int(meta["horizon"]),
        interval_s=float(meta.get("interval_s", 5.0)),
        method=meta.get("method", ""),
        seed=int(meta.get("seed", 0)),
        config=config,
        history=history,
        meta=meta.get("meta", {}),
    )
