"""Run every benchmark, then write ``BENCHMARKS.md`` from ``benchmarks/results/*.json``.

Each benchmark script runs in its own subprocess, so its peak memory is its own (taken
from the kernel's accounting of that child). ``--quick`` runs small versions of them as
a smoke check (numbers not representative) into a temporary directory unless ``--out``
is given; ``--out DIR`` writes the results to ``DIR/results/`` and the markdown to
``DIR/BENCHMARKS.md``. ``--render-only`` rewrites the markdown from existing results.

    python benchmarks/run.py [--quick] [--out DIR] [--only NAME,...] [--render-only]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import data_dir
from benchmarks_md import render

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_RESULTS = HERE / "results"
DEFAULT_MARKDOWN = ROOT / "BENCHMARKS.md"
RUN_LOG = "run.json"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark script and how to call it."""

    name: str
    script: str
    quick_args: tuple[str, ...] | None  # None: not run in quick mode
    #: flag naming the results file; None: the script always writes benchmarks/results/
    output_flag: str | None = "--output"
    why_not_quick: str = ""


BENCHMARKS = (
    Benchmark("readers", "bench_readers.py", ("--rows", "200000", "--small-rows", "50000")),
    Benchmark(
        "diffusion",
        "bench_diffusion.py",
        None,
        output_flag=None,
        why_not_quick="its shortest run takes minutes (fixed wall-time budget)",
    ),
    Benchmark("training", "bench_training.py", ("--quick",)),
    Benchmark("pipeline", "bench_pipeline.py", ("--quick",)),
    Benchmark(
        "quick",
        "bench_quick.py",
        None,
        why_not_quick="it is the quick profile itself, two minutes by its target",
    ),
    Benchmark("speed", "bench_speed.py", ("--quick",)),
    Benchmark("operate", "bench_operate.py", ("--quick",)),
)


def run_one(bench: Benchmark, results: Path, quick: bool) -> dict[str, Any]:
    """Run ``bench`` in a subprocess; its wall time, peak RSS and exit status."""
    args = list(bench.quick_args or ()) if quick else []
    if bench.output_flag is not None:
        target = results / f"{bench.name}.json"
        with contextlib.suppress(ValueError):  # shown relative to the repository if inside
            target = target.resolve().relative_to(ROOT)
        args += [bench.output_flag, str(target)]
    command = [sys.executable, f"benchmarks/{bench.script}", *args]
    print(f"== {bench.name}: {' '.join(command[1:])}", flush=True)
    # Scripts that read traces through the library find them where the benchmarks do.
    env = {**os.environ, "DRDFL_DATA_DIR": str(data_dir())}
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return {
        "benchmark": bench.name,
        "command": " ".join(["python", f"benchmarks/{bench.script}", *args]),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "returncode": child.returncode,
    }


def run_all(results: Path, quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    """Every benchmark (of ``only``, if given) that can run in this mode and place; the log
    of what ran."""
    results.mkdir(parents=True, exist_ok=True)
    ran, skipped = [], []
    for bench in BENCHMARKS:
        if only is not None and bench.name not in only:
            skipped.append({"benchmark": bench.name, "reason": "not selected (--only)"})
        elif quick and bench.quick_args is None:
            reason = f"quick mode: {bench.why_not_quick}"
            skipped.append({"benchmark": bench.name, "reason": reason})
        elif bench.output_flag is None and results.resolve() != DEFAULT_RESULTS.resolve():
            skipped.append({"benchmark": bench.name, "reason": f"writes only to {DEFAULT_RESULTS}"})
        else:
            ran.append(run_one(bench, results, quick))
    flags = (" --quick" if quick else "") + (f" --only {','.join(only)}" if only else "")
    return {
        "command": "python benchmarks/run.py" + flags,
        "quick": quick,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "ran": ran,
        "skipped": skipped,
    }


def load_results(results: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` in ``results``, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def main() -> None:
    names = [b.name for b in BENCHMARKS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs (smoke check)")
    parser.add_argument("--out", type=Path, default=None, help="DIR/results/ and DIR/BENCHMARKS.md")
    parser.add_argument("--render-only", action="store_true", help="only rewrite the markdown")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated subset of: {', '.join(names)}"
    )
    args = parser.parse_args()
    only = None if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    if only is not None and (bad := sorted(set(only) - set(names))):
        parser.error(f"--only: unknown benchmark(s) {', '.join(bad)}; valid: {', '.join(names)}")
    out = args.out
    if out is None and args.quick:
        out = Path(tempfile.gettempdir()) / "drdfl-benchmarks-quick"
    results = DEFAULT_RESULTS if out is None else out / "results"
    markdown = DEFAULT_MARKDOWN if out is None else out / "BENCHMARKS.md"
    from drdfl._io import write_json, write_text

    if not args.render_only:
        log = run_all(results, args.quick, only)
        write_json(results / RUN_LOG, log)
    write_text(markdown, render(load_results(results)))
    print(f"wrote {markdown}")
    failed = [r for r in load_results(results).get("run", {}).get("ran", []) if r["returncode"]]
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
