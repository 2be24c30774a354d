"""Benchmark: diffusion training and sampling speed, peak memory, quality after a time budget.

1. Speed, for the ``fast`` and ``paper`` presets: seconds per 1,000 training iterations and
   per 1,000 sampled segments with each sampler. Both are *extrapolated* from a short run
   (a few iterations, one small batch of segments) after a warm-up, and the sampling
   figure assumes the cost is linear in the number of segments (CPU batches gain little).
2. Quality: the ``fast`` preset trained for a fixed wall-time budget on the first 70 % of
   the 2024 conversation series at 5 s (``azure-2024-conv-5s``, 60,480 slots), then judged
   against the training part and the held-out last 30 %. That series is used rather than
   the paper's 2023 conversation file because the latter is one hour tiled 30 times, so a
   70/30 split of it holds out copies of the training data (its W-distance is ~6e-5).
   Target: the generated data's W-distance to held-out data is no worse than the held-out
   data's own distance to the training data + 0.02.

Peak memory is the peak resident set size of each stage (``VmHWM``, reset per stage).
The machine may be shared: the load average at start is recorded. Results go to
``benchmarks/results/diffusion.json``.

    python benchmarks/bench_diffusion.py [--budget 180] [--threads 1] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drdfl._io import write_json
from drdfl.data.loading import load_series
from drdfl.data.windows import split_series
from drdfl.diffusion.model import DiffusionModel, get_preset
from drdfl.diffusion.quality import quality_report
from drdfl.diffusion.train import fit_series, train_diffusion

RESULTS = Path(__file__).resolve().parent / "results" / "diffusion.json"
TARGET_MARGIN = 0.02


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux; ignored elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


def speed(preset_name: str, train_iterations: int, sample_counts: dict[str, int]) -> dict:
    """Extrapolated seconds per 1,000 iterations / segments for one preset."""
    preset = get_preset(preset_name)
    values = np.random.default_rng(0).random(4 * preset.model.segment_length)
    train_cfg = preset.train.model_copy(update={"iterations": 2})
    torch.manual_seed(0)
    train_diffusion(DiffusionModel(preset.model), values, train_cfg, progress=False)  # warm-up
    reset_peak_rss()
    model = DiffusionModel(preset.model)
    run_cfg = preset.train.model_copy(update={"iterations": train_iterations})
    result = train_diffusion(model, values, run_cfg, progress=False)
    out: dict[str, Any] = {
        "config": preset.model.model_dump(mode="json"),
        "batch_size": preset.train.batch_size,
        "measured_iterations": train_iterations,
        "train_s_per_1000_iterations": 1000 * result.seconds / train_iterations,
        "train_peak_rss_mib": peak_rss_mib(),
        "sampling": {},
    }
    for sampler, n in sample_counts.items():
        reset_peak_rss()
        started = time.perf_counter()
        model.sample(n, sampler, seed=0, batch_size=n)
        seconds = time.perf_counter() - started
        steps = model.T if sampler == "ddpm" else min(50, model.T)
        out["sampling"][sampler] = {
            "steps": steps,
            "measured_segments": n,
            "s_per_1000_segments": 1000 * seconds / n,
            "peak_rss_mib": peak_rss_mib(),
        }
    return out


def quality(budget_s: float, data_dir: str | None, seed: int) -> dict:
    """Train ``fast`` for ``budget_s`` seconds on 70 % of the 2024 conversation series."""
    series = load_series("azure-2024-conv-5s", data_dir=data_dir)
    train, heldout = split_series(series, (0.7, 0.3))
    preset = get_preset("fast")
    # Iterations far beyond the budget: the wall-time budget is what stops training.
    train_cfg = preset.train.model_copy(update={"iterations": 1_000_000, "seed": seed})
    reset_peak_rss()
    model, result = fit_series(train, preset.model, train_cfg, None, budget_s, progress=False)
    train_peak = peak_rss_mib()
    assert model.scaler is not None
    u_train = model.scaler.transform(train.values)
    u_heldout = model.scaler.transform(heldout.values)
    reports = {}
    for sampler, steps in (("ddpm", None), ("ddim", 50)):
        started = time.perf_counter()
        report = quality_report(model, u_train, u_heldout, None, sampler, steps, seed)
        report["seconds"] = time.perf_counter() - started
        gen = report["generated_vs_heldout"]["wasserstein"]
        cal = report["heldout_vs_train"]["wasserstein"]
        report["target"] = {
            "generated_vs_heldout_wasserstein": gen,
            "bound": cal + TARGET_MARGIN,
            "met": bool(gen <= cal + TARGET_MARGIN),
        }
        reports[sampler] = report
    return {
        "series": series.name,
        "train_slots": len(train),
        "heldout_slots": len(heldout),
        "budget_s": budget_s,
        "iterations_reached": result.iterations,
        "train_seconds": result.seconds,
        "final_loss_last_100": float(result.losses[-100:].mean()),
        "train_peak_rss_mib": train_peak,
        "by_sampler": reports,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds (quality)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--data-dir", default=None, help="trace directory ($DRDFL_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    started = time.perf_counter()
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "load_average_at_start": load,
        },
        "method": "speed extrapolated from short runs after warm-up; quality after a "
        "wall-time budget; peak RSS per stage (VmHWM)",
        "speed": {
            "fast": speed("fast", 20, {"ddpm": 32, "ddim": 32}),
            "paper": speed("paper", 5, {"ddpm": 4, "ddim": 16}),
        },
        "quality": quality(args.budget, args.data_dir, args.seed),
    }
    results["total_seconds"] = time.perf_counter() - started
    write_json(RESULTS, results)
    q = results["quality"]
    print(f"wrote {RESULTS}")
    for name, s in results["speed"].items():
        samp = ", ".join(
            f"{k} {v['s_per_1000_segments']:.0f} s/1k segments" for k, v in s["sampling"].items()
        )
        print(f"{name}: {s['train_s_per_1000_iterations']:.0f} s/1k iterations; {samp}")
    for sampler, r in q["by_sampler"].items():
        t = r["target"]
        print(
            f"quality ({sampler}, {q['iterations_reached']} iterations in {q['budget_s']:.0f} s): "
            f"W(gen, held-out) {t['generated_vs_heldout_wasserstein']:.4f} vs bound "
            f"{t['bound']:.4f} -> {'met' if t['met'] else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
