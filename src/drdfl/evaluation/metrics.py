"""Metrics of forecasts and of the decisions they cause.

All per-window numbers come from one vectorised pass (:func:`score_windows`); the summary
metrics are functions of those arrays, so reports, benchmarks and ``--per-window`` output
agree by construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from drdfl.data.windows import Scaler, Windows
from drdfl.evaluation.intervals import block_bootstrap_ci
from drdfl.tasks.base import DecisionTask


@dataclass(frozen=True)
class WindowScores:
    """Per-window results on one test set (real units except ``sq_err``, normalized)."""

    start: np.ndarray  # [N] index of the window's first input slot
    prediction: np.ndarray  # [N, h]
    truth: np.ndarray  # [N, h]
    decision: np.ndarray  # [N, d]
    regret: np.ndarray  # [N]
    optimal_cost: np.ndarray  # [N] cost of the perfect-foresight decision
    sq_err: np.ndarray  # [N] mean squared error in normalized units

    def __len__(self) -> int:
        return int(self.regret.shape[0])

    def part(self, rows: slice) -> WindowScores:
        """The scores of the windows in ``rows``."""
        return WindowScores(
            **{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)}
        )

    def frame(self, test_set: str = "") -> pd.DataFrame:
        """One row per window (first horizon step shown for multi-step forecasts)."""
        return pd.DataFrame(
            {
                "test_set": test_set,
                "window_start": self.start,
                "prediction": self.prediction[:, 0],
                "truth": self.truth[:, 0],
                "decision": self.decision[:, 0],
                "regret": self.regret,
                "optimal_cost": self.optimal_cost,
            }
        )


def unique_windows(windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the index of the first occurrence of each distinct window
    (inputs and targets alike, in order of appearance) and, for every window, the position
    of its distinct copy in ``first``.

    Tiled test files repeat the same windows many times; scoring each distinct one once
    and broadcasting the results gives the same numbers for a fraction of the work.
    """
    rows = np.ascontiguousarray(np.concatenate([windows.x, windows.y], axis=1))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # keep the windows' own order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    return first[order], rank[inverse.reshape(-1)]


def forecaster_device(forecaster: nn.Module) -> torch.device:
    """The device of the forecaster's parameters (the CPU for one without parameters)."""
    param = next(forecaster.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.inference_mode()
def score_windows(
    forecaster: nn.Module,
    windows: Windows,
    scaler: Scaler,
    task: DecisionTask,
    chunk: int = 2048,
    device: str | torch.device | None = None,
    dedupe: bool = True,
) -> WindowScores:
    """Forecast every window, decide, and price the decision against the truth.

    Runs on ``device`` (default: where the forecaster is); with ``dedupe`` each distinct
    window is scored once (see :func:`unique_windows`). The forecaster sees batches of
    exactly ``chunk`` windows (the last one padded): matrix kernels round differently for
    different batch sizes, and a fixed size keeps a window's numbers independent of which
    other windows are scored with it, so deduplication changes no number.
    """
    device = forecaster_device(forecaster) if device is None else torch.device(device)
    forecaster.eval()
    scored = windows
    inverse: np.ndarray | None = None
    if dedupe and len(windows):
        first, inverse = unique_windows(windows)
        if first.shape[0] < len(windows):
            scored = windows.subset(first)
        else:
            inverse = None
    x, y = scored.tensors(device)
    preds, decisions, regrets, optimal = [], [], [], []
    for i in range(0, x.shape[0], chunk):
        batch = x[i : i + chunk]
        rows = batch.shape[0]
        if rows < chunk:
            batch = torch.cat([batch, batch[:1].expand(chunk - rows, -1)])
        pred = forecaster(batch)[:rows]
        y_hat = scaler.inverse_transform(pred)
        y_true = scaler.inverse_transform(y[i : i + chunk])
        dec = task.decide(y_hat)
        opt = task.optimal_cost(y_true)
        preds.append(pred)
        decisions.append(dec)
        regrets.append(task.cost(dec, y_true) - opt)
        optimal.append(opt)
    pred = torch.cat(preds)

    def host(t: torch.Tensor) -> np.ndarray:
        values = t.cpu().numpy().astype(np.float64)
        return values if inverse is None else values[inverse]

    return WindowScores(
        start=np.asarray(windows.start),
        prediction=host(scaler.inverse_transform(pred)),
        truth=host(scaler.inverse_transform(y)),
        decision=host(torch.cat(decisions)),
        regret=host(torch.cat(regrets)),
        optimal_cost=host(torch.cat(optimal)),
        sq_err=host((pred - y).pow(2).mean(dim=-1)),
    )


class NormalizedRegret(NamedTuple):
    """The paper's normalized regret with how many blocks it rests on."""

    value: float
    #: complete blocks of ``batch`` windows
    blocks: int
    #: complete blocks left out because their perfect decisions earn nothing
    dropped: int


def paper_normalized_regret(
    regret: np.ndarray, optimal_cost: np.ndarray, batch: int = 64
) -> NormalizedRegret:
    """Normalized regret as the paper's code computes it, with the blocks it dropped.

    Windows are taken in consecutive blocks of ``batch`` (one optimiser step of the paper's
    loaders; an incomplete last block is left out, as its ``drop_last`` does); per block
    ``mean(regret) / -mean(optimal_cost)``; then the mean over blocks. Blocks whose
    perfect decisions earn nothing (``mean(optimal_cost) >= 0``: demand below the task's
    minimum capacity) have no meaningful ratio: they are left out and counted in
    ``dropped``. The value is NaN when no block is left or any window's regret or
    optimal cost is not finite. For the ``paper`` suite the windows come in the paper's
    order, so the blocks are exactly its steps.
    """
    n = (regret.shape[0] // batch) * batch
    blocks = n // batch
    if n == 0 or not (np.isfinite(regret[:n]).all() and np.isfinite(optimal_cost[:n]).all()):
        return NormalizedRegret(float("nan"), blocks, 0)
    r = regret[:n].reshape(-1, batch).mean(axis=1)
    value = -optimal_cost[:n].reshape(-1, batch).mean(axis=1)
    valid = value > 0
    dropped = int(blocks - valid.sum())
    if not valid.any():
        return NormalizedRegret(float("nan"), blocks, dropped)
    return NormalizedRegret(float(np.mean(r[valid] / value[valid])), blocks, dropped)


def ratio_normalized_regret(regret: np.ndarray, optimal_cost: np.ndarray) -> float:
    """Total regret over the total value of perfect decisions: ``Σ regret / Σ -optimal``."""
    denom = float(-optimal_cost.sum())
    return float(regret.sum() / denom) if denom > 0 else float("nan")


def cvar(values: np.ndarray, alpha: float = 0.9) -> float:
    """Mean of the worst ``1 - alpha`` fraction of ``values`` (upper tail; CVaR at level alpha)."""
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    v = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    k = max(1, int(np.ceil((1 - alpha) * v.shape[0])))
    return float(v[:k].mean())


def summarize(
    scores: WindowScores, alpha: float = 0.9, batch: int = 64, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """The standard metrics of one test set, as ``metric -> value``.

    ``regret_ci_low``/``regret_ci_high`` bound the mean regret over this test set's
    windows (moving-block bootstrap, :func:`~drdfl.evaluation.intervals.block_bootstrap_ci`);
    they say how much the finite, autocorrelated test set moves the mean, not how much
    training varies.
    """
    lo, hi, block = block_bootstrap_ci(scores.regret, n_boot=n_boot, seed=seed)
    normalized = paper_normalized_regret(scores.regret, scores.optimal_cost, batch)
    finite = np.isfinite(scores.regret) & np.isfinite(scores.optimal_cost)
    return {
        "mse": float(scores.sq_err.mean()),
        "regret": float(scores.regret.mean()),
        "regret_ci_low": lo,
        "regret_ci_high": hi,
        "regret_ci_block": float(block),
        "normalized_regret": normalized.value,
        "normalized_regret_blocks": float(normalized.blocks),
        "normalized_regret_dropped": float(normalized.dropped),
        "normalized_regret_ratio": ratio_normalized_regret(scores.regret, scores.optimal_cost),
        f"regret_cvar{round(alpha * 100)}": cvar(scores.regret, alpha),
        "windows": float(len(scores)),
        "nonfinite_windows": float((~finite).sum()),
    }
