"""Saved models: a directory with the forecaster, its scaler, task, config and training curve.

Layout of a model directory::

    model.pt      forecaster state_dict
    model.json    format version, forecaster spec, scaler, task, windowing (window, horizon,
                  lead, interval), provenance
    config.toml   the resolved training configuration, with the data settings ([data]) the
                  suite was built from, so that evaluation rebuilds that suite
    history.csv   one row per epoch
"""

from __future__ import annotations

import json
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w
import torch
from torch import nn

from drdfl._io import atomic_open, write_json, write_text
from drdfl._version import __version__
from drdfl.config import DataConfig
from drdfl.data.windows import Scaler
from drdfl.errors import ConfigError, DrdflError, ModelError
from drdfl.schema import parse_model
from drdfl.tasks.base import DecisionTask

MODEL_FORMAT = "drdfl-model"
MODEL_FORMAT_VERSION = 1
# Fields every model.json holds; the others have defaults.
_REQUIRED_FIELDS = ("forecaster", "scaler", "task", "window", "horizon")


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
    #: slots between the last input and the first forecast slot (0: the next slot)
    lead: int = 0


def _toml_safe(obj: Any) -> Any:
    """TOML has no null: drop ``None`` values recursively."""
    if isinstance(obj, dict):
        return {k: _toml_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_toml_safe(v) for v in obj if v is not None]
    return obj


def ensure_new_model_dir(directory: str | Path) -> Path:
    """``directory`` if a model may be written there: new, empty, or holding only the
    checkpoint of an interrupted training; anything else (a run's output, another model)
    is refused before any work, so nothing a user has is replaced or mixed in."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise ModelError(f"{path} is a file; expected a new directory for the model")
    held = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    held = [name for name in held if name != "checkpoint.pt"]
    if held:
        shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
        raise ModelError(
            f"{path} already holds {shown}; a model is written only into a new or empty "
            "directory (choose another one, or delete this one first)"
        )
    return path


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
            "lead": model.lead,
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
    """Read a model directory written by :func:`save_model`; a one-line :class:`ModelError`
    naming the file when it is not one or a file in it is damaged."""
    from drdfl.models.forecasters import forecaster_from_spec
    from drdfl.tasks import task_from_dict

    path = Path(directory)
    meta_path = path / "model.json"
    if not path.is_dir():
        raise ModelError(f"{path}: model directory not found")
    if not meta_path.is_file() or not (path / "model.pt").is_file():
        raise ModelError(f"{path}: not a drdfl model directory (expected model.json and model.pt)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path}: corrupt model metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{meta_path}: not a drdfl model (format {found!r})")
    version = meta.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format version {version} (drdfl {meta.get('drdfl_version')}) is "
            f"incompatible with this drdfl {__version__} (reads version "
            f"{MODEL_FORMAT_VERSION}); retrain the model"
        )
    missing = [key for key in _REQUIRED_FIELDS if key not in meta]
    if missing:
        raise ModelError(
            f"{meta_path}: no field {missing[0]!r}; a model's metadata has "
            f"{', '.join(_REQUIRED_FIELDS)}"
        )
    try:
        forecaster = forecaster_from_spec(meta["forecaster"])
        scaler = Scaler.from_dict(meta["scaler"])
        task = task_from_dict(meta["task"])
        window, horizon = int(meta["window"]), int(meta["horizon"])
        lead = int(meta.get("lead", 0))
        if lead < 0:
            raise ValueError(f"lead {lead} is negative")
    except (DrdflError, KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelError(f"{meta_path}: bad model metadata ({what})") from None
    weights = path / "model.pt"
    try:
        with warnings.catch_warnings():  # torch's notes on a damaged file's pickle protocol
            warnings.simplefilter("ignore")
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types here, with advice that does not apply
        raise ModelError(
            f"{weights}: not a readable model state (damaged or not written by drdfl); "
            "restore it or retrain the model"
        ) from None
    try:
        forecaster.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"{weights}: the weights do not fit the forecaster {meta['forecaster'].get('name')!r} "
            f"described in model.json ({str(exc).splitlines()[0]})"
        ) from None
    forecaster.eval()
    config = _read_config(path / "config.toml")
    history: list[dict[str, float]] = []
    history_path = path / "history.csv"
    if history_path.is_file() and history_path.stat().st_size > 1:
        try:
            history = pd.read_csv(history_path).to_dict("records")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"{history_path}: not a readable training history ({exc})") from None
    return TrainedModel(
        forecaster=forecaster,
        scaler=scaler,
        task=task,
        window=window,
        horizon=horizon,
        interval_s=float(meta.get("interval_s", 5.0)),
        method=meta.get("method", ""),
        seed=int(meta.get("seed", 0)),
        config=config,
        history=history,
        meta=meta.get("meta", {}),
        lead=lead,
    )


def data_config(model: TrainedModel, source: str | Path = "config.toml") -> DataConfig | None:
    """The data settings the model was trained on (None for a model saved without them)."""
    data = model.config.get("data")
    if data is None:
        return None
    try:
        return parse_model(DataConfig, data, root="data")  # type: ignore[return-value]
    except ConfigError as exc:
        raise ModelError(f"{source}: {exc}") from None


def load_array(path: str | Path) -> np.ndarray:
    """A numeric array saved with ``np.save``; a one-line error naming the file if damaged."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(
            f"{path}: not a readable array file ({exc}); delete it to have it rebuilt"
        ) from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise ModelError(f"{path}: expected a numeric array, found {type(array).__name__}")
    return array


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a readable TOML configuration ({exc})") from None
