"""Benchmark: read and bin a large Azure-format per-request trace with the chunked reader.

Writes a synthetic trace (``--rows`` requests, 2023-style timestamps with 7 fractional
digits) into a temporary directory, then reads and bins it at 5 s in a fresh subprocess,
which reports its wall time and peak resident memory. A smaller trace is measured the same
way to show that peak memory does not grow with the file. Results go to
``benchmarks/results/readers.json``.

    python benchmarks/bench_readers.py [--rows 5000000] [--chunksize 500000]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from drdfl._io import write_json
from drdfl.data.readers._common import DEFAULT_CHUNKSIZE

RESULTS = Path(__file__).resolve().parent / "results" / "readers.json"

# Runs in a fresh interpreter so that its peak RSS is the reader's alone.
# Peak RSS is VmHWM of /proc/self/status: unlike getrusage's ru_maxrss it is not inherited
# from the (large) parent across fork.
_CHILD = """
import json, re, sys, time
from pathlib import Path
from drdfl.data.readers import azure
def hwm_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
baseline = hwm_kib()
t0 = time.perf_counter()
series = azure.read(sys.argv[1], "5s", tokens="total", chunksize=int(sys.argv[2]))
seconds = time.perf_counter() - t0
peak = hwm_kib()
print(json.dumps({"seconds": seconds, "peak_rss_kib": peak, "baseline_rss_kib": baseline,
                  "bins": len(series), "requests": series.meta["requests"],
                  "token_sum": float(series.values.sum())}))
"""


def write_trace(path: Path, rows: int, seed: int = 0, block: int = 1_000_000) -> float:
    """An Azure 2023-style trace of ``rows`` requests (~30 requests/s); returns the token sum."""
    rng = np.random.default_rng(seed)
    t = np.datetime64("2023-11-16T18:00:00", "ns").astype(np.int64)
    total = 0.0
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for start in range(0, rows, block):
            n = min(block, rows - start)
            times = t + np.cumsum(rng.exponential(1 / 30, n) * 1e9).astype(np.int64)
            t = int(times[-1])
            # 'YYYY-MM-DDTHH:MM:SS.fffffff' (7 digits, as the 2023 files) with a space for T
            stamps = np.datetime_as_string(times.astype("datetime64[ns]"), unit="ns")
            stamps = pd.Series(stamps.astype("U27")).str.replace("T", " ", n=1, regex=False)
            context = rng.lognormal(7.0, 1.2, n).astype(np.int64) + 1
            generated = rng.lognormal(5.0, 1.0, n).astype(np.int64)
            total += float(context.sum() + generated.sum())
            frame = pd.DataFrame(
                {"TIMESTAMP": stamps, "ContextTokens": context, "GeneratedTokens": generated}
            )
            frame.to_csv(handle, header=False, index=False)
    return total


def measure(path: Path, chunksize: int) -> dict[str, float]:
    """Read + bin ``path`` in a subprocess; its time, peak RSS and result."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(chunksize)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000)
    parser.add_argument("--chunksize", type=int, default=DEFAULT_CHUNKSIZE)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (args.small_rows, args.rows):
            path = Path(tmp) / f"trace_{rows}.csv"
            t0 = time.perf_counter()
            expected_sum = write_trace(path, rows)
            write_s = time.perf_counter() - t0
            result = measure(path, args.chunksize)
            assert result["requests"] == rows and result["token_sum"] == expected_sum
            run = {
                "rows": rows,
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "chunksize": args.chunksize,
                "interval": "5s",
                "bins": result["bins"],
                "seconds": round(result["seconds"], 2),
                "rows_per_s": round(rows / result["seconds"]),
                "peak_rss_mb": round(result["peak_rss_kib"] / 1024, 1),
                "rss_after_imports_mb": round(result["baseline_rss_kib"] / 1024, 1),
                "generate_seconds": round(write_s, 1),
            }
            runs.append(run)
            print(json.dumps(run))
            path.unlink()
    write_json(
        args.output,
        {
            "benchmark": "chunked Azure reader: read + bin at 5 s, tokens=total",
            "command": "python benchmarks/bench_readers.py",
            "machine": {
                "python": platform.python_version(),
                "pandas": pd.__version__,
                "numpy": np.__version__,
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
            },
            "runs": runs,
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
