"""Benchmark: the whole ``quick`` profile — its seeds, every method, the report — on the
built-in synthetic data from an empty reference-model cache, against its target of two
minutes on two cores.

Measured: the wall time, CPU time and peak RSS of ``drdfl run --profile quick``, θ₀'s
gated fit per seed, every unit's training and evaluation time, and the time from the last
unit to the written report. Results go to ``benchmarks/results/quick.json``.

    python benchmarks/bench_quick.py [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import RESULTS_DIR, machine
from bench_pipeline import end_to_end

from drdfl._io import write_json

COMMAND = "python benchmarks/bench_quick.py"
#: the quick profile's target on 2 cores
TARGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="units side by side")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "quick.json")
    args = parser.parse_args()
    info = machine(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="drdfl-bench-quick-") as tmp:
        e2e = end_to_end("quick", args.jobs, Path(tmp), seeds=None, target_s=TARGET_S)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {
        "benchmark": "the quick profile end to end",
        "command": COMMAND,
        "profile": "quick",
        "machine": info,
        "end_to_end": e2e,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.output, result)
    print(
        f"quick profile end to end: {e2e['wall_s']:.0f} s (target {TARGET_S:.0f} s), report "
        f"{e2e['report_s']} s, peak RSS {e2e['peak_rss_mib']:.0f} MiB; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
