"""Benchmark: one DFL epoch on the paper's training split, vectorised vs. a per-window loop.

The *vectorised* path is drdfl's own :class:`~drdfl.methods.pto.DFLMethod` (the shared
training loop: one forecaster call, one batched ``decide`` and regret per batch of 64). The
*per-window loop* is written here: the same batches, optimiser and gradient clipping, but
the forecaster, the decision and the regret are evaluated one window at a time and the
64 losses averaged before each step — the straightforward way to write DFL.

Both run on the ``paper`` suite's training windows (9,408 windows in 147 batches of 64,
validation excluded from both) with the ``paper`` profile's training settings, in one
process, one after the other:

* the vectorised epoch over the whole split, ``--repeats`` times (median reported);
* both paths over the same first ``--loop-batches`` batches (vectorised before *and* after
  the loop, averaged, so drift of a shared machine's load hits both alike); the ratio is
  taken there, and the loop's full-epoch time is extrapolated from it when the prefix is
  shorter than the epoch (the results say so).

A check on one batch (dropout off) confirms that both paths compute the same loss and
gradient. Results go to ``benchmarks/results/training.json``.

    python benchmarks/bench_training.py [--threads 1] [--loop-batches 49] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS_DIR, Stage, data_dir, machine, repeat
from torch import nn

from drdfl._io import write_json
from drdfl.config import DataConfig, resolve_config
from drdfl.data.training import TrainingData
from drdfl.data.windows import Scaler
from drdfl.methods.losses import sample_losses
from drdfl.methods.pto import DFLMethod
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.runner.steps import build_suite
from drdfl.seeding import torch_generator
from drdfl.tasks import get_task
from drdfl.tasks.base import DecisionTask

COMMAND = "python benchmarks/bench_training.py"


def paper_train_config() -> TrainConfig:
    """The ``paper`` profile's training settings, for a single epoch."""
    return resolve_config("paper").train.model_copy(update={"epochs": 1})


def vectorised_epoch(
    data: TrainingData, task: DecisionTask, cfg: TrainConfig, forecaster: str
) -> float:
    """Seconds of one epoch of drdfl's DFL training loop on ``data`` (setup excluded)."""
    model = build_forecaster(forecaster, data.train.window, data.train.horizon, seed=cfg.seed)
    return DFLMethod(train=cfg).fit(data, task, model).wall_time_s


def loop_epoch(data: TrainingData, task: DecisionTask, cfg: TrainConfig, forecaster: str) -> float:
    """Seconds of one DFL epoch written window by window (same batches, optimiser, clipping)."""
    model = build_forecaster(forecaster, data.train.window, data.train.horizon, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    x, y = data.train.tensors("cpu")
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch_generator(cfg.seed)
    model.train()
    started = time.perf_counter()
    perm = torch.randperm(x.shape[0], generator=gen)
    for b in range(0, x.shape[0], cfg.batch_size):
        losses = []
        for i in perm[b : b + cfg.batch_size].tolist():
            pred = model(x[i : i + 1])
            losses.append(sample_losses(pred, y[i : i + 1], task, data.scaler, cfg.objective))
        loss = torch.cat(losses).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
    return time.perf_counter() - started


def equivalence(
    x: torch.Tensor, y: torch.Tensor, scaler: Scaler, task: DecisionTask, forecaster: str
) -> dict[str, float]:
    """Loss and gradient of one batch, batched vs. window by window (dropout off)."""
    model = build_forecaster(forecaster, x.shape[1], y.shape[1], seed=0)
    model.eval()
    batched = sample_losses(model(x), y, task, scaler).mean()
    grads = torch.autograd.grad(batched, list(model.parameters()))
    looped = torch.cat(
        [sample_losses(model(x[i : i + 1]), y[i : i + 1], task, scaler) for i in range(len(x))]
    ).mean()
    loop_grads = torch.autograd.grad(looped, list(model.parameters()))
    scale = max(float(g.abs().max()) for g in grads)
    diff = max(float((a - b).abs().max()) for a, b in zip(grads, loop_grads, strict=True))
    return {
        "batch_windows": int(x.shape[0]),
        "loss_vectorised": float(batched.detach()),
        "loss_loop": float(looped.detach()),
        "loss_rel_diff": abs(float((batched - looped).detach()))
        / max(abs(float(batched.detach())), 1e-30),
        "grad_max_abs_diff_rel": diff / max(scale, 1e-30),
    }


def run(threads: int, loop_batches: int, repeats: int, full_epoch: bool) -> dict[str, Any]:
    """Every measurement of this benchmark as a JSON-ready dict."""
    info = machine(threads)
    with Stage() as built:
        suite = build_suite(DataConfig(suite="paper", data_dir=str(data_dir())))
    cfg = paper_train_config()
    forecaster = resolve_config("paper").forecaster
    task = get_task(resolve_config("paper").task)
    d = suite.data
    train = TrainingData(d.train, None, d.scaler, d.series, d.interval_s)
    n = len(d.train)
    n_batches = math.ceil(n / cfg.batch_size)
    prefix_batches = n_batches if loop_batches <= 0 else min(loop_batches, n_batches)
    prefix = min(n, prefix_batches * cfg.batch_size)
    part = TrainingData(d.train.subset(np.arange(prefix)), None, d.scaler, d.series, d.interval_s)

    x, y = d.train.tensors("cpu")
    check = equivalence(x[: cfg.batch_size], y[: cfg.batch_size], d.scaler, task, forecaster)
    vectorised_epoch(part, task, cfg, forecaster)  # warm-up: first calls allocate and dispatch

    out: dict[str, Any] = {"machine": info}
    if full_epoch:
        full = repeat(lambda: vectorised_epoch(train, task, cfg, forecaster), repeats)
        out["vectorised_full_epoch"] = full
    before = vectorised_epoch(part, task, cfg, forecaster)
    loop_s = loop_epoch(part, task, cfg, forecaster)
    after = vectorised_epoch(part, task, cfg, forecaster)
    vec_s = (before + after) / 2
    scale = n / prefix
    vec_epoch = out["vectorised_full_epoch"]["median_s"] if full_epoch else vec_s * scale
    loop_epoch_s = loop_s * scale
    out.update(
        {
            "benchmark": "one DFL epoch on the paper training split: vectorised vs per-window loop",
            "command": COMMAND,
            "data": {
                "suite": "paper",
                "train_windows": n,
                "batches": n_batches,
                "batch_size": cfg.batch_size,
                "window": d.train.window,
                "horizon": d.train.horizon,
                "forecaster": forecaster,
                "task": resolve_config("paper").task,
                "validation": "excluded from both paths",
                "suite_build_s": round(built.seconds, 2),
            },
            "equivalence": check,
            "prefix": {
                "batches": prefix_batches,
                "windows": prefix,
                "vectorised_s": round(vec_s, 3),
                "vectorised_runs_s": [round(before, 3), round(after, 3)],
                "loop_s": round(loop_s, 3),
            },
            "vectorised_epoch_s": round(vec_epoch, 3),
            "vectorised_epoch_measured": full_epoch,
            "loop_epoch_s": round(loop_epoch_s, 3),
            "loop_epoch_measured": prefix == n,
            "vectorised_ms_per_window": round(1000 * vec_s / prefix, 4),
            "loop_ms_per_window": round(1000 * loop_s / prefix, 4),
            "speedup": round(loop_s / vec_s, 2),
            "note": "speedup = loop time / vectorised time on the same batches; "
            + (
                "the loop's epoch time is measured"
                if prefix == n
                else f"the loop's epoch time is extrapolated from {prefix_batches} of "
                f"{n_batches} batches (x{scale:.2f})"
            ),
        }
    )
    out["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--loop-batches", type=int, default=49, help="batches timed in both paths (0: all)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="full vectorised epochs timed")
    parser.add_argument("--quick", action="store_true", help="tiny measurement (smoke check)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "training.json")
    args = parser.parse_args()
    if args.quick:
        args.loop_batches, args.repeats = 3, 1
    started = time.perf_counter()
    result = run(args.threads, args.loop_batches, args.repeats, full_epoch=not args.quick)
    result["quick"] = args.quick
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.output, result)
    print(
        f"DFL epoch ({result['data']['train_windows']} windows): vectorised "
        f"{result['vectorised_epoch_s']:.2f} s, per-window loop {result['loop_epoch_s']:.2f} s "
        f"-> {result['speedup']:.1f}x; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
