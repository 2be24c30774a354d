"""Study: which reverse-step variance and denoiser let θ₀ pass the quality gate?

For each profile and seed, the profile's diffusion preset is fitted with the quality gate
once per variant from the same seed, on the profile's own training series, exactly as
``drdfl run`` fits θ₀. A variant names the reverse-step variance (``posterior`` β̃_t,
``forward`` β_t or their ``geometric`` mean), with ``+attention`` to give the denoiser
self-attention at its lowest resolution (otherwise the preset's denoiser). Training does
not depend on the reverse variance (the loss is the ε-prediction error), so variants that
differ only in it see the same weights at every gate check; only the samples the gate
judges differ. Writes the verdicts, the iterations at which the gate passed (or the cap)
and every criterion to ``benchmarks/results/study_variance/results.json`` (a study, not
one of the benchmarks BENCHMARKS.md is written from).

    python benchmarks/study_variance.py [--cases quick:0,quick:1,honest:0] \
        [--variants posterior,forward] [--jobs 2]
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


def model_update(variant: str) -> dict[str, Any]:
    """The preset fields a variant (``geometric+attention``, say) sets."""
    variance, *switches = variant.split("+")
    update: dict[str, Any] = {"variance": variance}
    for switch in switches:
        if switch != "attention":
            raise SystemExit(f"unknown variant switch {switch!r} in {variant!r}")
        update["attention"] = True
    return update


def fit_case(profile: str, seed: int, variant: str) -> dict[str, Any]:
    """The gated fit of ``profile``'s preset on its training series as ``variant``."""
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
    model_cfg = preset.model.model_validate({**preset.model.model_dump(), **model_update(variant)})
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
        "variant": variant,
        "variance": model_cfg.variance,
        "attention": model_cfg.attention,
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
    parser.add_argument("--variants", default="posterior,forward")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "study_variance" / "results.json"
    )
    args = parser.parse_args()
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    info = machine(1)
    variants = args.variants.split(",")
    for variant in variants:
        model_update(variant)
    jobs = [(p, s, v) for p, s in cases for v in variants]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(fit_case, *zip(*jobs, strict=True)))
    write_json(args.output, {"command": COMMAND, "machine": info, "fits": rows})
    for r in rows:
        failed = [c["name"] for c in r["criteria"] if not c["passed"]]
        print(
            f"{r['profile']}:{r['seed']} {r['variant']:20s} {r['status']:7s} at "
            f"{r['iterations']}/{r['cap']} it, {r['seconds']} s; failed: {failed or '-'}"
        )
        for c in r["criteria"]:
            print(
                f"    {c['name']:14s} {c['value']:.4f} (held out {c['reference']:.4f}), "
                f"accepted {c['low']:.4f} to {c['high']:.4f} {'ok' if c['passed'] else 'FAIL'}"
            )


if __name__ == "__main__":
    main()
