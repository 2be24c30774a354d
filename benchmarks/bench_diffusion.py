"""Benchmark: diffusion training and sampling speed, peak memory, quality, the quality gate.

1. Speed, for the ``fast``, ``paper`` (1-D) and ``paper-2d`` presets: seconds per 1,000
   training iterations and per 1,000 sampled segments with each sampler. Both are
   *extrapolated* from a short run (a few iterations, one small batch of segments) after
   a warm-up, and the sampling figure assumes the cost is linear in the number of
   segments (CPU batches gain little).
2. Quality: the ``fast`` preset trained for a fixed wall-time budget on the first 70 % of
   the 2024 conversation series at 5 s (``azure-2024-conv-5s``, 60,480 slots), then judged
   against the training part and the held-out last 30 %. That series is used rather than
   the paper's 2023 conversation file because the latter is one hour tiled 30 times, so a
   70/30 split of it holds out copies of the training data (its W-distance is ~6e-5).
   Target: the generated data's W-distance to held-out data is no worse than the held-out
   data's own distance to the training data + 0.02.
3. The quality gate: each preset fitted, as the runner fits it, on the training series of
   the profile that uses it (``tiny``: the quick profile's synthetic day; ``fast``: the
   honest suite's first 70 % of the 2024 conversation trace; ``paper``: the paper
   suite's training rows, a tiled hour), ending on its gate: fit seconds, iterations and
   the gate's figures and verdict.

Peak memory is the peak resident set size of each stage (``VmHWM``, reset per stage).
The machine may be shared: the load average at start is recorded. Results go to
``benchmarks/results/diffusion.json`` (a run of some ``--parts`` replaces only those
parts there, with the machine it ran on under ``machine_by_part``).

    python benchmarks/bench_diffusion.py [--budget 180] [--threads 1] [--data-dir DIR]
        [--parts speed,quality,gate] [--gate-presets tiny,fast,paper]
"""

from __future__ import annotations

import argparse
import contextlib
import json
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


#: preset → the suite whose training series the profile using it fits θ₀ on
GATE_SUITES = {"tiny": "synthetic", "fast": "honest", "paper": "paper"}


def gate_fit(preset_name: str, data_dir: str | None, seed: int) -> dict:
    """Fit ``preset_name`` on its profile's training series until its gate passes."""
    from drdfl.data.suites import honest_suite, paper_suite, synthetic_suite

    suite_name = GATE_SUITES[preset_name]
    if suite_name == "synthetic":
        suite = synthetic_suite(1.0, seed=seed)
    elif suite_name == "honest":
        suite = honest_suite(data_dir)
    else:
        suite = paper_suite(data_dir)
    data = suite.data
    real = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
    preset = get_preset(preset_name)
    reset_peak_rss()
    _, result = fit_series(
        real, preset.model, preset.train.model_copy(update={"seed": seed}), progress=False
    )
    assert result.quality is not None
    return {
        "suite": suite_name,
        "train_slots": len(real),
        "seconds": result.seconds,
        "iterations": result.iterations,
        "max_iterations": preset.train.iterations,
        "peak_rss_mib": peak_rss_mib(),
        "checks": [
            {"iteration": c.iteration, "status": c.status, "failed": c.failures}
            for c in result.checks
        ],
        "quality": result.quality.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds (quality)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--data-dir", default=None, help="trace directory ($DRDFL_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="speed,quality,gate", help="which parts to run")
    parser.add_argument("--gate-presets", default=",".join(GATE_SUITES), help="gate part")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    started = time.perf_counter()
    from drdfl.runner.store import git_state

    code = git_state(Path(__file__).resolve().parents[1] / "src", Path(__file__).resolve())
    results = {
        "machine": {
            "commit": code["commit"],
            "dirty": code["dirty"],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "load_average_at_start": load,
        },
        "method": "speed extrapolated from short runs after warm-up; quality after a "
        "wall-time budget; peak RSS per stage (VmHWM)",
    }
    if "speed" in parts:
        results["speed"] = {
            "fast": speed("fast", 20, {"ddpm": 32, "ddim": 32}),
            "paper": speed("paper", 20, {"ddpm": 32, "ddim": 32}),
            "paper-2d": speed("paper-2d", 5, {"ddpm": 4, "ddim": 16}),
        }
    if "quality" in parts:
        results["quality"] = quality(args.budget, args.data_dir, args.seed)
    if "gate" in parts:
        results["gate"] = {
            name: gate_fit(name, args.data_dir, args.seed) for name in args.gate_presets.split(",")
        }
    results["total_seconds"] = time.perf_counter() - started
    if RESULTS.is_file() and parts != {"speed", "quality", "gate"}:
        # The parts kept from an earlier run keep their machine; these say where they ran.
        old = json.loads(RESULTS.read_text())
        by_part = old.get("machine_by_part", {})
        by_part.update({part: results["machine"] for part in parts})
        results = {**old, **results, "machine": old.get("machine"), "machine_by_part": by_part}
    write_json(RESULTS, results)
    print(f"wrote {RESULTS}")
    for name, g in results.get("gate", {}).items():
        q = g["quality"]
        print(
            f"gate {name} on {g['suite']}: {q['status']} after {g['iterations']} iterations "
            f"in {g['seconds']:.0f} s"
            + (
                f" (failed: {', '.join(g['checks'][-1]['failed'])})"
                if q["status"] == "failed"
                else ""
            )
        )
    for name, s in results.get("speed", {}).items():
        samp = ", ".join(
            f"{k} {v['s_per_1000_segments']:.0f} s/1k segments" for k, v in s["sampling"].items()
        )
        print(f"{name}: {s['train_s_per_1000_iterations']:.0f} s/1k iterations; {samp}")
    q = results.get("quality", {"by_sampler": {}})
    for sampler, r in q["by_sampler"].items():
        t = r["target"]
        print(
            f"quality ({sampler}, {q['iterations_reached']} iterations in {q['budget_s']:.0f} s): "
            f"W(gen, held-out) {t['generated_vs_heldout_wasserstein']:.4f} vs bound "
            f"{t['bound']:.4f} -> {'met' if t['met'] else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
