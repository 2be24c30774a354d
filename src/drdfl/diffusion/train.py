"""Fitting a diffusion model to a demand series: Adam, EMA of weights, checkpoints, seeds.

Each iteration draws ``batch_size`` overlapping random crops of the normalized training
series (seeded) and takes one Adam step on the denoising loss. The returned model holds
the exponential moving average of the weights, which samples better than the last iterate.
A checkpoint (raw and EMA weights, optimizer, random states, losses) is written every
``checkpoint_every`` iterations; training resumes from it when the configuration matches.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from drdfl._io import atomic_open, write_text
from drdfl.data.series import Series
from drdfl.data.windows import Scaler
from drdfl.device import resolve_device
from drdfl.diffusion.ddpm import check_t_range, denoising_loss
from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig, DiffusionTrainConfig
from drdfl.diffusion.model import check_config as check_model_config
from drdfl.diffusion.quality import QualityGate, gate_split, model_floor
from drdfl.diffusion.segments import check_series
from drdfl.errors import ModelError, TrainingError
from drdfl.records import GateResult
from drdfl.schema import parse_model
from drdfl.seeding import numpy_rng, torch_generator

CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_VALUES_FILE = "train_values.npy"
HISTORY_FILE = "history.csv"
# Training settings that change what a resumed run would compute; `iterations` may grow.
_RESUME_FIELDS = ("batch_size", "lr", "ema_decay", "t_range", "grad_clip", "seed")


@dataclass(frozen=True)
class TrainResult:
    """What a training run did."""

    losses: np.ndarray
    """Loss of every iteration so far (including those before a resume)."""
    iterations: int
    """Iterations completed."""
    seconds: float
    """Wall time of this call."""
    resumed_from: int = 0
    """Iteration the run resumed from (0: fresh start)."""
    stopped_by_budget: bool = False
    """Whether the wall-time budget ended the run before ``iterations``."""
    quality: GateResult | None = None
    """The last quality-gate verdict (``None``: trained without a gate)."""
    checks: tuple[GateResult, ...] = ()
    """Every gate check of this call, in order."""


def data_fingerprint(values: np.ndarray | Sequence[np.ndarray]) -> str:
    """A short hash identifying the (normalized) training data (a series or its pieces)."""
    if isinstance(values, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()[
            :16
        ]
    digest = hashlib.sha256()
    for piece in values:
        digest.update(np.int64(len(piece)).tobytes())
        digest.update(np.ascontiguousarray(piece, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


Gate = Callable[[DiffusionModel, int], GateResult]
"""Judges a snapshot of the model (EMA weights) after the given number of iterations."""


def train_diffusion(
    model: DiffusionModel,
    values: np.ndarray | Sequence[np.ndarray],
    config: DiffusionTrainConfig,
    checkpoint_dir: str | Path | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
    name: str = "training series",
    gate: Gate | None = None,
) -> TrainResult:
    """Fit ``model`` in place to the normalized series ``values`` and return the record.

    ``values`` may be a list of pieces of a series; training crops never span two pieces.
    With ``gate``, the EMA weights are judged every ``config.gate_every`` iterations from
    ``config.gate_after`` on and at the end; training stops at the first pass (so
    ``config.iterations`` is the most it takes). With ``checkpoint_dir``, checkpoints go
    there and a matching checkpoint found there is resumed (a checkpoint of another
    configuration or other data is an error). With ``time_budget_s``, training stops
    after that much wall time.
    """
    started = time.perf_counter()
    pieces = [values] if isinstance(values, np.ndarray) else list(values)
    pieces = [check_series(p, model.segment_length, name) for p in pieces]
    fit = _Fit(model, config, pieces, checkpoint_dir, gate)
    model.train()
    end = fit.start if fit.passed and gate is not None else config.iterations
    bar = tqdm(
        range(fit.start, end),
        initial=fit.start,
        total=config.iterations,
        desc="diffusion training",
        disable=not progress,
    )
    stopped = False
    for it in bar:
        fit.step(it)
        if fit.done % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(fit.losses[-50:]):.4f}")
        if fit.done % config.checkpoint_every == 0:
            fit.checkpoint()
        if gate is not None and fit.due() and fit.judge(bar):
            fit.passed = True
            break
        if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            stopped = fit.done < config.iterations
            break
    if gate is not None and (not fit.checks or fit.checks[-1].iteration != fit.done):
        fit.judge(bar)
    bar.close()
    if fit.done % config.checkpoint_every or fit.passed:
        fit.checkpoint()
    if config.ema_decay > 0:
        model.denoiser.load_state_dict(fit.ema.state_dict())
    model.eval()
    return TrainResult(
        np.asarray(fit.losses),
        fit.done,
        time.perf_counter() - started,
        fit.start,
        stopped,
        fit.checks[-1] if fit.checks else None,
        tuple(fit.checks),
    )


class _Fit:
    """The state of one :func:`train_diffusion` call: crops, optimiser, EMA, random
    streams, losses, gate checks, and the checkpoint that saves and restores them."""

    def __init__(
        self,
        model: DiffusionModel,
        config: DiffusionTrainConfig,
        pieces: list[np.ndarray],
        checkpoint_dir: str | Path | None,
        gate: Gate | None,
    ) -> None:
        self.model, self.config, self.gate = model, config, gate
        self.t_range = check_t_range(config.t_range, model.T)
        self.crops = torch.cat(
            [
                model.to_model_space(torch.as_tensor(p, dtype=torch.float32)).unfold(
                    0, model.segment_length, 1
                )
                for p in pieces
            ]
        )
        self.rng = numpy_rng(config.seed)
        self.gen = torch_generator(config.seed)
        self.optimizer = torch.optim.Adam(model.denoiser.parameters(), lr=config.lr)
        self.ema = copy.deepcopy(model.denoiser).requires_grad_(False)
        self.losses: list[float] = []
        self.checks: list[GateResult] = []
        self.fingerprint = data_fingerprint(pieces[0] if len(pieces) == 1 else pieces)
        self.path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
        self.start = 0
        #: whether the gate passed: a resumed run then trains no further
        self.passed = False
        if self.path is not None and self.path.is_file():
            self._resume(_read_checkpoint(self.path, model.config, config, self.fingerprint))
        self.done = self.start

    def _resume(self, state: dict[str, Any]) -> None:
        self.model.denoiser.load_state_dict(state["weights"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.gen.set_state(state["torch_rng"])
        self.losses = list(state["losses"])
        self.start = int(state["iteration"])
        self.passed = bool(state.get("passed_gate", False))

    def step(self, it: int) -> None:
        """Iteration ``it``: one Adam step on the denoising loss of a batch of crops."""
        model, config = self.model, self.config
        index = torch.as_tensor(self.rng.integers(0, self.crops.shape[0], size=config.batch_size))
        batch = self.crops[index].to(model.device)
        loss = denoising_loss(model.eps, model.schedule, batch, self.t_range, self.gen)
        if not torch.isfinite(loss):
            raise TrainingError(f"diffusion loss became {loss.item()} at iteration {it + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.denoiser.parameters(), config.grad_clip)
        self.optimizer.step()
        _update_ema(self.ema, model.denoiser, config.ema_decay, it)
        self.losses.append(float(loss.item()))
        self.done = it + 1

    def due(self) -> bool:
        """Whether the gate judges after this iteration."""
        config = self.config
        return self.done >= config.gate_after and self.done % config.gate_every == 0

    def judge(self, bar: Any) -> bool:
        """The gate's verdict on a snapshot with the EMA weights (recorded in ``checks``)."""
        assert self.gate is not None
        snapshot = self.model.clone()
        if self.config.ema_decay > 0:
            snapshot.denoiser.load_state_dict(self.ema.state_dict())
        snapshot.eval()
        self.checks.append(self.gate(snapshot, self.done))
        bar.set_postfix_str(self.checks[-1].summary(), refresh=False)
        return self.checks[-1].passed

    def checkpoint(self) -> None:
        """Save everything a resumed run needs (atomically), if there is a directory."""
        if self.path is None:
            return
        state = {
            "model_config": self.model.config.model_dump(mode="json"),
            "train_config": self.config.model_dump(mode="json"),
            "data": self.fingerprint,
            "iteration": self.done,
            "weights": self.model.denoiser.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": self.gen.get_state(),
            "losses": self.losses,
            "passed_gate": self.passed,
        }
        with atomic_open(self.path, "wb") as handle:
            torch.save(state, handle)


def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float, iteration: int) -> None:
    # Early on the average would be dominated by the random initialisation; the usual
    # warm-up (1 + i) / (10 + i) lets it follow the weights until it has history.
    d = min(decay, (1 + iteration) / (10 + iteration))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - d)


def _read_checkpoint(
    path: Path,
    model_config: DiffusionModelConfig,
    train_config: DiffusionTrainConfig,
    fingerprint: str,
) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: unreadable training checkpoint ({exc})") from None
    found = cast(
        DiffusionModelConfig, parse_model(DiffusionModelConfig, state["model_config"], "config")
    )
    check_model_config(found, model_config, path)
    saved_train = cast(
        DiffusionTrainConfig, parse_model(DiffusionTrainConfig, state["train_config"], "train")
    )
    for field in _RESUME_FIELDS:
        got, want = getattr(saved_train, field), getattr(train_config, field)
        if got != want:
            raise ModelError(
                f"{path}: checkpoint from another configuration: {field} is {got!r} there, "
                f"{want!r} here"
            )
    if state["data"] != fingerprint:
        raise ModelError(f"{path}: checkpoint was trained on other data; use a fresh directory")
    if int(state["iteration"]) > train_config.iterations:
        raise ModelError(
            f"{path}: checkpoint is at iteration {state['iteration']}, past the requested "
            f"{train_config.iterations}"
        )
    return state


def fit_series(
    series: Series | np.ndarray,
    model_config: DiffusionModelConfig,
    train_config: DiffusionTrainConfig,
    out_dir: str | Path | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[DiffusionModel, TrainResult]:
    """Fit a :class:`Scaler` and a new diffusion model to a training series (real units).

    With a gate in ``train_config``, the series is split by :func:`gate_split` (within one
    period when it is tiled), the model is fitted on the fitting part only and training
    ends once the gate passes on the held-out part; when the split cannot be judged, the
    model is fitted on the whole series for ``iterations`` and its verdict says why.
    With ``out_dir`` the run checkpoints there and the trained model is saved there along
    with the normalized training series (for later evaluation), the loss history and the
    gate's verdict (in the model's meta, see :attr:`DiffusionModel.quality`). The model is
    trained on ``device`` and returned there.
    """
    name = series.name if isinstance(series, Series) else "training series"
    raw = series.values if isinstance(series, Series) else series
    raw = check_series(raw, model_config.segment_length, name)
    scaler = Scaler.fit(raw)
    values = scaler.transform(raw)
    model = DiffusionModel(model_config, scaler, seed=train_config.seed).to(resolve_device(device))
    gate_cfg = train_config.gate
    quality = None
    if gate_cfg is None:
        result = train_diffusion(
            model, values, train_config, out_dir, time_budget_s, progress, name
        )
    else:
        split = gate_split(values, model_config.segment_length, gate_cfg)
        judge = QualityGate(
            split,
            model_config.segment_length,
            model_floor(model),
            gate_cfg,
            torch_generator(train_config.seed),
        )
        if split.reason is None:
            result = train_diffusion(
                model, split.fit, train_config, out_dir, time_budget_s, progress, name, judge
            )
        else:
            result = train_diffusion(
                model, values, train_config, out_dir, time_budget_s, progress, name
            )
            result = replace(result, quality=judge(model, result.iterations))
        quality = result.quality
    tail = result.losses[-100:]
    model.meta = {
        "train_series": name,
        "train_rows": int(raw.shape[0]),
        "train_config": train_config.model_dump(mode="json"),
        "iterations": result.iterations,
        "final_loss": float(tail.mean()) if tail.size else None,
        "seconds": result.seconds,
        "quality": None if quality is None else quality.to_dict(),
        "gate_checks": [
            {"iteration": c.iteration, "status": c.status, "failed": c.failures}
            for c in result.checks
        ],
    }
    if out_dir is not None:
        out = Path(out_dir)
        with atomic_open(out / TRAIN_VALUES_FILE, "wb") as handle:
            np.save(handle, values)
        history = pd.DataFrame(
            {"iteration": np.arange(1, len(result.losses) + 1), "loss": result.losses}
        )
        write_text(out / HISTORY_FILE, history.to_csv(index=False))
        model.save(out)
    return model, result
