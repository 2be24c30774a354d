"""Study: does the reverse-step variance decide whether θ₀ passes the quality gate?

For each profile and seed, the profile's diffusion preset is fitted with the quality gate
twice from the same seed — reverse steps with the posterior variance β̃_t (the presets'
setting until now) and with the forward variance β_t — on the profile's own training
series, exactly as ``drdfl run`` fits θ₀. Training does not depend on the reverse variance
(the loss is the ε-prediction error), so both fits see the same weights at every gate
check; only the samples the gate judges differ. Writes the verdicts, the iterations at
which the gate passed (or the cap) and every criterion to
``benchmarks/results/study_variance/results.json`` (a study, not one of the benchmarks
BENCHMARKS.md is written from).

    python benchmarks/study_variance.py [--cases quick:0,quick:1,honest:0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS_DIR, data_dir, machine

from drdfl._io import write_json

COMMAND = "python benchmarks/study_variance.py"
VARIANCES = ("posterior", "forward")


def fit_case(profile: str, seed: int, variance: str) -> dict[str, Any]:
    """The gated fit of ``profile``'s preset on its training series with ``variance``."""
    import torch

    from drdfl.config import resolve_config
    from drdfl.diffusion.model import get_preset
    from drdfl.diffusion.train import fit_series
    from drdfl.runner.steps import build_suite

    torch.set_num_threads(1)
    cfg = resolve_config(profile, overrides=[f"data.data_dir={data_dir()}"])
    suite = build_suite(cfg.data)
    real = suite.data.scaler.inverse_transform(np.asarray(suite.data.series, dtype=np.float64))
    preset = get_preset(cfg.diffusion.preset)
    model_cfg = preset.model.model_copy(update={"variance": variance})
    train = preset.train.model_copy(update={"seed": seed})
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, result = fit_series(real, model_cfg, train, progress=False)
    quality = model.meta["quality"] or {}
    return {
        "profile": profile,
        "preset": cfg.diffusion.preset,
        "seed": seed,
        "variance": variance,
        "status": quality.get("status", "ungated"),
        "iterations": result.iterations,
        "cap": train.iterations,
        "seconds": round(time.perf_counter() - started, 1),
        "criteria": quality.get("criteria", []),
        "checks": model.meta.get("gate_checks", []),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="quick:0,quick:1,honest:0")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "study_variance" / "results.json"
    )
    args = parser.parse_args()
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    info = machine(1)
    jobs = [(p, s, v) for p, s in cases for v in VARIANCES]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(fit_case, *zip(*jobs, strict=True)))
    write_json(args.output, {"command": COMMAND, "machine": info, "fits": rows})
    for r in rows:
        failed = [c["name"] for c in r["criteria"] if not c["passed"]]
        print(
            f"{r['profile']}:{r['seed']} {r['variance']:9s} {r['status']:7s} at "
            f"{r['iterations']}/{r['cap']} it, {r['seconds']} s; failed: {failed or '-'}"
        )
        for c in r["criteria"]:
            print(
                f"    {c['name']:14s} {c['value']:.4f} vs {c['reference']:.4f} "
                f"± {c['tolerance']:.4f} {'ok' if c['passed'] else 'FAIL'}"
            )


if __name__ == "__main__":
    main()
