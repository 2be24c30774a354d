"""Study: how far apart are two honest samples of a workload, as the quality gate sees them?

For each profile's training series, split as the gate splits it, this measures the
statistics of the held-out blocks and of the fitted part, how much the level spread of
as many blocks as are held out varies when they are drawn from the fitted part instead,
and the verdict of each gate band on crops of the fitted part itself (a perfect model of
the data it is fitted on). Real data only: no model is fitted. Writes
``benchmarks/results/study_gate_band/results.json`` (a study, not one of the benchmarks
BENCHMARKS.md is written from).

    python benchmarks/study_gate_band.py [--profiles quick,honest,paper] [--draws 400]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _common import RESULTS_DIR, data_dir, machine

from drdfl._io import write_json

COMMAND = "python benchmarks/study_gate_band.py"
BANDS = ("range", "heldout")


def measure(profile: str, draws: int, seed: int = 0) -> dict[str, Any]:
    """The gate's real-data figures on ``profile``'s training series (see the module doc)."""
    import torch

    from drdfl.config import resolve_config
    from drdfl.data.windows import Scaler
    from drdfl.diffusion.model import get_preset
    from drdfl.diffusion.quality import QualityGate, gate_split, random_crops
    from drdfl.diffusion.verdict import GateConfig
    from drdfl.runner.steps import build_suite

    cfg = resolve_config(profile, overrides=[f"data.data_dir={data_dir()}"])
    data = build_suite(cfg.data).data
    raw = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
    scaler = Scaler.fit(raw)
    values = scaler.transform(raw)
    preset = get_preset(cfg.diffusion.preset)
    length = preset.model.segment_length
    base = preset.train.gate or GateConfig()
    split = gate_split(values, length, base)
    row: dict[str, Any] = {"profile": profile, "segment_length": length}
    if split.reason is not None:
        return {**row, "reason": split.reason}
    rng = np.random.default_rng(seed)
    block = base.block_segments * length
    fit = split.fit_values
    blocks = [fit[i : i + block] for i in range(0, len(fit) - block + 1, block)]
    held = len(split.heldout)
    spreads = []
    for _ in range(draws):
        picked = [blocks[i] for i in rng.choice(len(blocks), held, replace=False)]
        spreads.append(random_crops(picked, length, base.n_crops, rng).mean(axis=1).std())
    percentiles = np.percentile(spreads, [5, 50, 95])
    row.update(
        heldout_blocks=held,
        fit_blocks=len(blocks),
        block_level_spread_pct_5_50_95=[round(float(q), 4) for q in percentiles],
    )

    class _FitCrops:
        """Samples crops of the fitted part: a perfect model of the data it is fitted on."""

        segment_length = length

        def sample(self, n: int, sampler: str, steps: int | None, generator: Any) -> Any:
            from drdfl.diffusion.model import SampleResult

            draw = int(torch.randint(0, 2**31, (1,), generator=generator))
            crops = random_crops(split.fit, length, n, np.random.default_rng(draw))
            return SampleResult(torch.as_tensor(crops))

    gate = QualityGate(
        split, length, float(scaler.transform(0.0)), base, torch.Generator().manual_seed(seed)
    )
    row["real"] = gate.real
    for band in BANDS:
        # The band decides only the verdict: the real figures and the discriminator's
        # reference are computed once, and every call draws the same noise.
        gate.config = base.model_copy(update={"band": band})
        verdict = gate(_FitCrops())  # type: ignore[arg-type]
        row[band] = {
            "status": verdict.status,
            "criteria": {
                c.name: {"value": c.value, "low": c.low, "high": c.high, "passed": c.passed}
                for c in verdict.criteria
            },
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="quick,honest,paper")
    parser.add_argument("--draws", type=int, default=400)
    args = parser.parse_args()
    info = machine(1)
    rows = [measure(p, args.draws) for p in args.profiles.split(",")]
    write_json(
        RESULTS_DIR / "study_gate_band" / "results.json",
        {"command": COMMAND, "machine": info, "rows": rows},
    )
    for r in rows:
        if "reason" in r:
            print(f"{r['profile']}: the gate cannot judge ({r['reason']})")
            continue
        ls = {k: round(v["level_spread"], 4) for k, v in r["real"].items()}
        print(
            f"{r['profile']}: level spread held out {ls['heldout']} ({r['heldout_blocks']} "
            f"blocks), fitted {ls['fit']}; {r['heldout_blocks']} fitted blocks give "
            f"{r['block_level_spread_pct_5_50_95']} (5/50/95 %)"
        )
        for band in BANDS:
            c = r[band]["criteria"]["level_spread"]
            print(
                f"    fitted part's own crops, band={band}: {r[band]['status']}; level spread "
                f"{c['value']:.4f}, accepted {c['low']:.4f} to {c['high']:.4f}"
            )


if __name__ == "__main__":
    main()
