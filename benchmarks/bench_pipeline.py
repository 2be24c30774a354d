"""Benchmark: the ``paper`` profile end to end on this machine, and 3D-Learning's robustness
overhead on it.

* **End to end**: ``drdfl run --profile paper --set seeds=0 --jobs N`` (every method and
  the skyline) in a child process with an empty reference-model cache, so that θ₀'s gated
  fit is included. Measured: the wall time, the peak RSS of the largest process, and each
  stage's time summed from the run's own records (θ₀'s fit from its cache entry, every
  unit's training and evaluation from ``timings.csv``, epochs from ``histories.csv``).
  With units side by side the stage times add up to more than the wall time.
* **Robustness overhead**: ``dfl`` and ``threed`` trained for the same number of epochs
  (early stopping off) with the profile's settings on its training data, against the θ₀
  the end-to-end run fitted, one after the other in this process; 3D-Learning's inner
  maximisation is its own record of the time spent moving θ.

``--quick`` runs the ``quick`` profile (built-in synthetic data) instead, as a smoke check.
Results go to ``benchmarks/results/pipeline.json``.

    python benchmarks/bench_pipeline.py [--jobs 2] [--epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import RESULTS_DIR, Stage, data_dir, machine

from drdfl._io import write_json

COMMAND = "python benchmarks/bench_pipeline.py"
#: the speed targets on 2 cores
TARGET_TOTAL_S = 15 * 60
TARGET_OVERHEAD = 3.0


def end_to_end(
    profile: str,
    jobs: int,
    work: Path,
    seeds: str | None = "0",
    target_s: float = TARGET_TOTAL_S,
) -> dict[str, Any]:
    """``profile`` through ``drdfl run`` in a child process, from an empty cache, with
    ``seeds`` (None: the profile's own)."""
    out, cache = work / "run", work / "cache"
    chosen = ["--set", f"seeds={seeds}"] if seeds is not None else []
    command = [
        sys.executable,
        "-m",
        "drdfl",
        "run",
        "--profile",
        profile,
        *chosen,
        "--jobs",
        str(jobs),
        "--out",
        str(out),
    ]
    env = {
        **os.environ,
        "DRDFL_DATA_DIR": str(data_dir()),
        "DRDFL_CACHE_DIR": str(cache),
        "MPLBACKEND": "Agg",
    }
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # RUSAGE of this child's process tree: ru_maxrss is the largest single process's peak.
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"drdfl run failed:\n{err[-3000:]}")
    timings = pd.read_csv(out / "timings.csv")
    histories = pd.read_csv(out / "histories.csv")
    epochs = histories.groupby("method")["epoch"].max().add(1).astype(int).to_dict()
    units = []
    for method, rows in timings.groupby("method", sort=False):
        by_stage = rows.groupby("stage")["seconds"].sum()
        units.append(
            {
                "method": method,
                "train_s": round(float(by_stage.get("train", 0.0)), 2),
                "evaluate_s": round(float(by_stage.get("evaluate", 0.0)), 2),
                "epochs": epochs.get(method),
            }
        )
    reference = []
    for entry in sorted((cache / "diffusion").glob("*/config.json")):
        meta = json.loads(entry.read_text())["meta"]
        quality = meta.get("quality") or {}
        reference.append(
            {
                "iterations": meta["iterations"],
                "fit_s": round(float(meta["seconds"]), 1),
                "gate": quality.get("status", "ungated"),
            }
        )
    stages = {
        "reference model θ₀ (gated fit)": sum(r["fit_s"] for r in reference),
        "training (every unit)": sum(u["train_s"] for u in units),
        "evaluation (every unit)": sum(u["evaluate_s"] for u in units),
    }
    report = out / "report.html"
    return {
        "command": " ".join(["drdfl run --profile", profile, *chosen, f"--jobs {jobs}"])
        + " (empty cache)",
        "jobs": jobs,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "reference": reference,
        "units": units,
        "stages_s": {k: round(v, 1) for k, v in stages.items()},
        "report_written": report.is_file(),
        # the report is the run's last step: from the newest unit record to the HTML
        "report_s": round(report.stat().st_mtime - _last_unit_done(out), 1)
        if report.is_file()
        else None,
        "target_s": target_s,
        "met": wall <= target_s,
    }


def _last_unit_done(out: Path) -> float:
    """When the last unit of the run at ``out`` finished (its newest file's mtime)."""
    return max(f.stat().st_mtime for f in (out / "units").rglob("*") if f.is_file())


def overhead(profile: str, epochs: int, cache: Path) -> dict[str, Any]:
    """``dfl`` and ``threed`` for ``epochs`` epochs each (no early stopping) against the
    cached θ₀ of seed 0, one after the other."""
    from drdfl.config import resolve_config
    from drdfl.runner.reference import ReferenceCache
    from drdfl.runner.steps import build_suite, train_model

    cfg = resolve_config(profile, overrides=[f"data.data_dir={data_dir()}"])
    suite = build_suite(cfg.data)
    entry = ReferenceCache(cache / "diffusion").lookup(cfg.diffusion, suite.data.series, seed=0)
    if entry is None:
        raise SystemExit("overhead: the end-to-end run left no reference model in its cache")
    train = cfg.train.model_copy(update={"epochs": epochs, "patience": None})
    out: dict[str, Any] = {"epochs": epochs}
    for method in ("dfl", "threed"):
        params = dict(cfg.method_params.get(method, {}))
        if method == "threed":
            params["diffusion"] = str(entry.path)
        with Stage() as stage:
            _, result = train_model(
                method,
                suite,
                task=cfg.task,
                forecaster=cfg.forecaster,
                train=train,
                seed=0,
                method_params=params,
            )
        out[method] = stage.record(train_s=round(result.wall_time_s, 2))
        if method == "threed":
            out["threed_adversary_s"] = round(float(result.artifacts["adversary_s"]), 2)
    ratio = out["threed"]["train_s"] / out["dfl"]["train_s"]
    out["ratio"] = round(ratio, 2)
    out["adversary_share"] = round(out["threed_adversary_s"] / out["threed"]["train_s"], 3)
    out["target"] = TARGET_OVERHEAD
    out["met"] = ratio <= TARGET_OVERHEAD
    return out


def run(profile: str, jobs: int, epochs: int, threads: int) -> dict[str, Any]:
    """Both measurements, as a JSON-ready dict."""
    info = machine(threads)
    with tempfile.TemporaryDirectory(prefix="drdfl-bench-pipeline-") as tmp:
        work = Path(tmp)
        e2e = end_to_end(profile, jobs, work)
        info["load_average_after_run"] = [round(v, 2) for v in os.getloadavg()]
        over = overhead(profile, epochs, work / "cache")
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return {
        "benchmark": f"the {profile} profile end to end, and 3D-Learning's overhead",
        "command": COMMAND,
        "profile": profile,
        "machine": info,
        "end_to_end": e2e,
        "overhead": over,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="units side by side")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the overhead runs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="the quick profile (smoke check)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "pipeline.json")
    args = parser.parse_args()
    profile = "quick" if args.quick else "paper"
    started = time.perf_counter()
    result = run(profile, args.jobs, 1 if args.quick else args.epochs, args.threads)
    result["quick"] = args.quick
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.output, result)
    e2e, over = result["end_to_end"], result["overhead"]
    print(
        f"{profile} profile, one seed, end to end: {e2e['wall_s'] / 60:.1f} min "
        f"(peak RSS {e2e['peak_rss_mib']:.0f} MiB); 3D-Learning / DFL training "
        f"{over['ratio']:.1f}x over {over['epochs']} epochs; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
