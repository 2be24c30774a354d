"""The training loop every method shares.

A method is a :class:`TrainedMethod` that overrides only what makes it different — the
windows it trains against each epoch, a per-batch perturbation (adversarial attacks) or the
aggregation of per-sample losses (DRO duals). Optimiser, scheduler, early stopping on
validation regret, NaN handling, checkpoints and seeding are the same for all, so that no
baseline is trained worse than our own method.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from drdfl.data.training import TrainingData
from drdfl.device import resolve_device
from drdfl.errors import TrainingError
from drdfl.methods.base import FitResult, Method
from drdfl.methods.losses import sample_losses
from drdfl.methods.naive import calibrate_anchor
from drdfl.methods.settings import TrainConfig
from drdfl.schema import StrictModel
from drdfl.seeding import seeded, torch_generator
from drdfl.tasks.base import DecisionTask


class NoParams(StrictModel):
    """A method without hyperparameters of its own."""


class TrainedMethod(Method):
    """Gradient training of a forecaster on per-sample losses (PTO/DFL and all robust variants).

    Every method has the same constructor: the shared training settings, an optional
    checkpoint file, a progress flag and the method's own hyperparameters as keywords,
    validated by its :attr:`Params` model into :attr:`params` (errors name the key as
    ``method_params.<name>.<key>``). Subclasses override the hooks :meth:`configure`,
    :meth:`prepare`, :meth:`epoch_windows`, :meth:`perturb`, :meth:`aggregate`,
    :meth:`extra_parameters` and :meth:`epoch_record`.
    """

    name = "trained"
    #: objective used when the config does not force one (``mse`` overrides it)
    default_objective: str | None = None
    #: the pydantic model of the method's hyperparameters
    Params: ClassVar[type[StrictModel]] = NoParams

    def __init__(
        self,
        train: TrainConfig | None = None,
        checkpoint: str | Path | None = None,
        progress: bool = False,
        params: StrictModel | None = None,
        **kwargs: Any,
    ) -> None:
        self.train = train or TrainConfig()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.progress = progress
        self.params: Any = self.parse_params(params, kwargs)
        self.configure()

    # ------------------------------------------------------------------ hooks
    def configure(self) -> None:
        """Check :attr:`params` beyond what their model checks and set what follows from
        them (called once, at the end of the constructor)."""

    def prepare(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        generator: torch.Generator,
    ) -> None:
        """Build whatever the method trains against (augmented copies, generative models)."""

    def epoch_windows(
        self, epoch: int, forecaster: nn.Module, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized ``(x [N, w], y [N, h])`` to train on in ``epoch``: the real windows."""
        return self._x, self._y

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, forecaster: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-batch change of the inputs (adversarial attacks); identity by default."""
        return x, y

    def aggregate(self, losses: torch.Tensor) -> torch.Tensor:
        """Scalar training objective from per-sample losses ``[B]``: their mean."""
        return losses.mean()

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters optimised jointly with the forecaster (e.g. a DRO dual variable)."""
        return []

    def epoch_record(self) -> dict[str, float]:
        """Method-specific numbers to add to the epoch's history row."""
        return {}

    def final_record(self, forecaster: nn.Module) -> dict[str, float]:
        """Method-specific numbers measured once training is over, added to the last
        epoch's history row (e.g. a costly diagnostic judged only at the end)."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Method-specific outputs kept in the fit result (e.g. worst-case samples)."""
        return {}

    #: what :meth:`selection_score` measures (recorded in the fit result's artifacts)
    selection: str = "validation regret"

    def selection_score(self, forecaster: nn.Module, validation: float | None) -> float | None:
        """Score (lower is better) that early stopping and model selection use: the
        validation regret (``None`` without validation windows: no selection, the last
        epoch's model is kept) unless a method selects on something else."""
        return validation

    # ------------------------------------------------------------------ helpers
    @property
    def objective(self) -> str:
        return self.default_objective or self.train.objective

    def losses(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample loss of normalized predictions under this method's objective."""
        return sample_losses(pred, y, self._task, self._scaler, self.objective)

    def _batches(self, n: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        perm = torch.randperm(n, generator=generator)
        bs = self.train.batch_size
        for i in range(0, n, bs):
            yield perm[i : i + bs]

    @torch.no_grad()
    def validation_regret(self, forecaster: nn.Module) -> float:
        """Mean decision regret on (up to ``max_val_windows``) validation windows."""
        if self._xv is None:
            return math.nan
        was_training = forecaster.training
        forecaster.eval()
        chunk = 8192
        total = 0.0
        for i in range(0, self._xv.shape[0], chunk):
            pred = forecaster(self._xv[i : i + chunk])
            y = self._yv[i : i + chunk]
            total += float(sample_losses(pred, y, self._task, self._scaler, "regret").sum().item())
        forecaster.train(was_training)
        return total / self._xv.shape[0]

    def _save_checkpoint(self, forecaster: nn.Module, epoch: int) -> None:
        if self.checkpoint is None:
            return
        from drdfl._io import atomic_open

        with atomic_open(self.checkpoint, "wb") as handle:
            torch.save({"epoch": epoch, "state_dict": forecaster.state_dict()}, handle)

    # ------------------------------------------------------------------ fit
    def fit(self, data: TrainingData, task: DecisionTask, forecaster: nn.Module) -> FitResult:
        """Train ``forecaster`` with the shared loop; the caller's global RNG is untouched.

        Dropout masks draw from the global generator (``nn.Dropout`` takes no generator),
        so training runs on forked copies of the CPU's and the training device's, seeded
        with the training seed.
        """
        device = resolve_device(self.train.device)
        with seeded(self.train.seed, device):
            return self._fit(data, task, forecaster, device)

    def _fit(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        device: torch.device,
    ) -> FitResult:
        cfg = self.train
        gen = torch_generator(cfg.seed)
        self._setup(data, task, forecaster, device)
        self.prepare(data, task, forecaster, gen)
        params = list(forecaster.parameters()) + self.extra_parameters()
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched: torch.optim.lr_scheduler.LRScheduler | None = None
        if cfg.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        elif cfg.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        history: list[dict[str, float]] = []
        best = _Best(cfg.patience)
        start = time.perf_counter()
        bar = tqdm(range(cfg.epochs), desc=self.name, disable=not self.progress, leave=False)
        for epoch in bar:
            train_loss = self._train_epoch(epoch, forecaster, gen, opt, params)
            if sched is not None:
                sched.step()
            val = self.validation_regret(forecaster)
            score = self.selection_score(forecaster, None if self._xv is None else val)
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_regret": val,
                "lr": opt.param_groups[0]["lr"],
                "time_s": time.perf_counter() - start,
                **self.epoch_record(),
            }
            history.append(row)
            bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{val:.4g}")
            self._save_checkpoint(forecaster, epoch)
            if score is not None and math.isnan(score):
                raise TrainingError(
                    f"{self.name}: the {self.selection} is not a number at epoch {epoch}: "
                    "the forecasts or the decisions they cause are not finite"
                )
            if score is not None and best.stop(score, epoch, forecaster):
                break
        if history:
            history[-1].update(self.final_record(forecaster))
        if best.state is not None:
            forecaster.load_state_dict(best.state)
        forecaster.eval()
        arts = self.artifacts()
        arts["best_epoch"] = best.epoch
        arts["selection"] = self.selection
        return FitResult(forecaster, history, time.perf_counter() - start, arts)

    def _setup(
        self, data: TrainingData, task: DecisionTask, forecaster: nn.Module, device: torch.device
    ) -> None:
        """The task, scaler and windows on ``device``; the anchor's constant chosen."""
        cfg = self.train
        self._task, self._scaler = task, data.scaler
        forecaster.to(device)
        self._x, self._y = data.train.tensors(device)
        self._xv = self._yv = None
        if data.val is not None and len(data.val):
            val = data.val
            if len(val) > cfg.max_val_windows:
                keep = torch.linspace(0, len(val) - 1, cfg.max_val_windows).long().numpy()
                val = val.subset(keep)
            self._xv, self._yv = val.tensors(device)
        calibrate_anchor(forecaster, self._x, self._y, task, data.scaler)

    def _train_epoch(
        self,
        epoch: int,
        forecaster: nn.Module,
        gen: torch.Generator,
        opt: torch.optim.Optimizer,
        params: list[nn.Parameter],
    ) -> float:
        """One pass over the epoch's windows; the mean training objective."""
        forecaster.train()
        x_all, y_all = self.epoch_windows(epoch, forecaster, gen)
        total, count = 0.0, 0
        for b, idx in enumerate(self._batches(x_all.shape[0], gen)):
            xb, yb = self.perturb(x_all[idx], y_all[idx], forecaster)
            loss = self.aggregate(self.losses(forecaster(xb), yb))
            if not torch.isfinite(loss):
                kept = f"; the last good model (epoch {epoch - 1}) is in {self.checkpoint}"
                raise TrainingError(
                    f"{self.name}: non-finite loss at epoch {epoch}, batch {b}"
                    + (kept if self.checkpoint is not None and epoch > 0 else "")
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.train.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, self.train.grad_clip)
            opt.step()
            total += float(loss.detach()) * idx.numel()
            count += idx.numel()
        return total / max(count, 1)


class _Best:
    """Model selection and early stopping: the best score so far, its epoch and weights."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.score, self.epoch, self.stale = math.inf, -1, 0
        self.state: dict[str, Any] | None = None

    def stop(self, score: float, epoch: int, forecaster: nn.Module) -> bool:
        """Record ``score`` of ``epoch``; whether training should stop."""
        if score < self.score - 1e-12:
            self.score, self.epoch, self.stale = score, epoch, 0
            self.state = copy.deepcopy(forecaster.state_dict())
            return False
        self.stale += 1
        return self.patience is not None and self.stale >= self.patience
