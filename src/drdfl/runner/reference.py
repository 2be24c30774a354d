"""The cache of reference diffusion models θ₀, shared by runs and sweeps.

An entry is keyed by everything that decides its weights: the preset's *contents* (not
only its name), the iteration override, the training data, the seed and the code
version. Each entry stores those inputs in ``entry.json``; loading checks them and the
model's configuration, so a changed preset or a foreign directory is never reused. A
corrupt entry is an error that names the directory to delete.

Training is deterministic for a seed: a run killed while θ₀ trains and resumed gets the
same weights as an uninterrupted one. An entry is written to ``<key>.partial`` (its
``entry.json`` first, as fitting starts) and moved into place when complete.

The reference-model quality gate's verdict is saved with the model's weights;
:attr:`ReferenceEntry.gate` returns it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drdfl._io import write_json
from drdfl._version import __version__
from drdfl.config import DiffusionConfig
from drdfl.errors import ModelError

#: what an entry was trained from (checked on load)
ENTRY_FILE = "entry.json"


@dataclass(frozen=True)
class ReferenceEntry:
    """A reference model in the cache and the seconds spent training it now (0: cached)."""

    path: Path
    seconds: float = 0.0

    @property
    def gate(self) -> dict[str, Any] | None:
        """The quality gate's verdict saved with the entry (``None``: fitted ungated)."""
        from drdfl.diffusion.model import read_quality

        verdict = read_quality(self.path)
        return None if verdict is None else verdict.to_dict()


def _inputs(diffusion: DiffusionConfig, series: np.ndarray, seed: int) -> dict[str, Any]:
    """Everything that decides an entry's weights, as JSON."""
    from drdfl.diffusion.model import get_preset
    from drdfl.diffusion.train import data_fingerprint

    preset = get_preset(diffusion.preset)
    train = preset.train.model_copy(update=_train_update(diffusion, seed))
    return {
        "preset": diffusion.preset,
        "model": preset.model.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
        "data": data_fingerprint(series),
        "seed": seed,
        "version": __version__,
    }


def _train_update(diffusion: DiffusionConfig, seed: int) -> dict[str, Any]:
    update: dict[str, Any] = {"seed": seed}
    if diffusion.iterations is not None:
        update["iterations"] = diffusion.iterations
    return update


class ReferenceCache:
    """Reference models under ``root``, one directory per key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, diffusion: DiffusionConfig, series: np.ndarray, seed: int) -> Path:
        """The entry directory for these inputs (whether or not it exists yet)."""
        text = json.dumps(_inputs(diffusion, series, seed), sort_keys=True)
        return self.root / hashlib.sha256(text.encode()).hexdigest()[:16]

    def lookup(
        self, diffusion: DiffusionConfig, series: np.ndarray, seed: int
    ) -> ReferenceEntry | None:
        """The checked entry for these inputs, or ``None`` when there is none yet."""
        path = self.path(diffusion, series, seed)
        if not (path / ENTRY_FILE).is_file():
            return None
        self._check(path, _inputs(diffusion, series, seed))
        return ReferenceEntry(path)

    def get(
        self,
        diffusion: DiffusionConfig,
        series: np.ndarray,
        scaler: Any,
        seed: int,
        progress: bool = False,
        device: str = "cpu",
    ) -> ReferenceEntry:
        """The entry for these inputs, trained now (deterministically, on ``device``) when
        missing. ``series`` is the normalized training series and ``scaler`` maps it to
        demand.
        """
        from drdfl.diffusion.model import get_preset
        from drdfl.diffusion.train import fit_series
        from drdfl.seeding import seeded

        found = self.lookup(diffusion, series, seed)
        if found is not None:
            return found
        path = self.path(diffusion, series, seed)
        inputs = _inputs(diffusion, series, seed)
        preset = get_preset(diffusion.preset)
        train = preset.train.model_copy(update=_train_update(diffusion, seed))
        real = scaler.inverse_transform(np.asarray(series, dtype=np.float64))
        tmp = path.with_name(path.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)  # left by a killed run: start it over
        tmp.mkdir(parents=True)  # present from the start: a run in progress is visible
        # What the entry is fitted from, written as fitting starts: it moves into place
        # with the weights, and until then it tells a fit that started from one that did not.
        write_json(tmp / ENTRY_FILE, inputs)
        start = time.perf_counter()
        # Seeded here (without touching the caller's generator state) so that the initial
        # weights never depend on what ran before in the process.
        with seeded(seed, device):
            fit_series(real, preset.model, train, tmp, progress=progress, device=device)
        if path.exists():
            shutil.rmtree(path)  # an entry without entry.json: left by a crash
        tmp.replace(path)
        return ReferenceEntry(path, time.perf_counter() - start)

    def _check(self, path: Path, inputs: dict[str, Any]) -> None:
        """Insist that the entry at ``path`` was trained from ``inputs`` and loads."""
        from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig

        hint = (
            f"delete {path} and run the command again, with --resume if it stopped a run "
            "(the entry is retrained)"
        )
        try:
            stored = json.loads((path / ENTRY_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path / ENTRY_FILE}: corrupt cache entry ({exc}); {hint}") from None
        differs = sorted(k for k in inputs if stored.get(k) != inputs[k])
        if differs:
            raise ModelError(f"{path}: cache entry trained with other {', '.join(differs)}; {hint}")
        try:
            DiffusionModel.load(path, expect=DiffusionModelConfig(**inputs["model"]))
        except ModelError as exc:
            raise ModelError(f"{exc}; corrupt reference-model cache entry: {hint}") from None
        except Exception as exc:  # torch's unpickling errors carry no file name
            raise ModelError(
                f"{path}: corrupt reference-model cache entry ({type(exc).__name__}); {hint}"
            ) from None


__all__ = ["ENTRY_FILE", "ReferenceCache", "ReferenceEntry"]
