"""Benchmark: start-up, evaluation before/after scoring each distinct window once, and how
each stage's wall time and peak memory grow with the training series and the test windows.

* **start-up**: ``python -c "import drdfl"`` and ``python -m drdfl --help`` in fresh
  processes (median of several), ``import torch`` alone for reference; peak RSS of each
  child from the kernel's accounting;
* **evaluation**: every test set one unit of the ``paper`` profile is scored on (the main
  suite and its corruptions) by the scoring loop as it was before (every window, batches
  of 16,384, ``no_grad``; kept below as :func:`score_before`) and by drdfl's (each distinct
  window once, fixed batches, ``inference_mode``), alternating in one process so that load
  hits both alike; the summaries of both are checked to agree;
* **scaling with the training series**: the synthetic workload at ×1, ×4 and ×16 its
  base length: building the suite, diffusion pre-training (fixed iterations), one DFL
  epoch, 3D-Learning (setup and one reduced outer epoch on a given θ₀) and scoring the
  suite's test sets; wall time and peak RSS (``VmHWM``, reset per stage) of each;
* **scaling with the test windows**: scoring ×1, ×4 and ×16 windows, all distinct (the
  worst case for deduplication) and tiled like the paper's files, before and after.

Results go to ``benchmarks/results/speed.json``.

    python benchmarks/bench_speed.py [--threads 1] [--quick] [--only startup,evaluation,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS_DIR, ROOT, Stage, data_dir, machine

COMMAND = "python benchmarks/bench_speed.py"
PARTS = ("startup", "evaluation", "scaling_length", "scaling_windows")
#: the start-up targets
TARGET_IMPORT_S = 1.5
TARGET_HELP_S = 1.0


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much is measured (full mode vs. the quick smoke check)."""

    startup_repeats: int
    eval_repeats: int
    eval_corruptions: bool
    base_days: float
    diffusion_preset: str
    diffusion_iterations: int
    threed: dict[str, int]
    base_windows: int


FULL = Sizes(
    startup_repeats=5,
    eval_repeats=2,
    eval_corruptions=True,
    base_days=1 / 16,
    diffusion_preset="fast",
    diffusion_iterations=20,
    threed={"pool": 16, "minibatch": 16, "adversarial_samples": 16},
    base_windows=4096,
)
QUICK = Sizes(
    startup_repeats=2,
    eval_repeats=1,
    eval_corruptions=False,
    base_days=1 / 128,
    diffusion_preset="tiny",
    diffusion_iterations=3,
    threed={"pool": 4, "minibatch": 4, "adversarial_samples": 4},
    base_windows=512,
)


# ------------------------------------------------------------------------- start-up
#: run in the child before its code: report the child's own peak RSS at exit (the kernel's
#: ``ru_maxrss`` of a child also counts the parent's memory copied at fork, before exec)
_PEAK_AT_EXIT = (
    "import atexit, re, sys\n"
    "atexit.register(lambda: sys.stderr.write('VmHWM ' + re.search("
    "r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1] + '\\n'))\n"
)


def _child(code: str) -> tuple[float, float | None]:
    """Wall seconds and peak RSS (MiB) of a fresh Python process running ``code``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_AT_EXIT + code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {done.stderr[-500:]}")
    found = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("VmHWM ")]
    return seconds, (round(int(found[-1]) / 1024, 1) if found else None)


def startup(sizes: Sizes) -> dict[str, Any]:
    """Median wall time and peak RSS of starting the package, the CLI, and torch alone."""
    help_code = "import sys\nsys.argv = ['drdfl', '--help']\nfrom drdfl.cli import main\nmain()"
    cases = {
        "import drdfl": ("import drdfl", TARGET_IMPORT_S),
        "drdfl --help": (help_code, TARGET_HELP_S),
        "import torch (reference)": ("import torch", None),
    }
    _child("import drdfl, torch")  # warm the file cache for every case alike
    out = {}
    for name, (code, target) in cases.items():
        runs = [_child(code) for _ in range(sizes.startup_repeats)]
        seconds = statistics.median(r[0] for r in runs)
        out[name] = {
            "median_s": round(seconds, 3),
            "runs_s": [round(r[0], 3) for r in runs],
            "peak_rss_mib": max((r[1] for r in runs if r[1] is not None), default=None),
            "target_s": target,
            "met": None if target is None else seconds <= target,
        }
    return out


# ------------------------------------------------------------------------- evaluation
def score_before(forecaster: Any, windows: Any, scaler: Any, task: Any) -> Any:
    """The scoring loop as it was before deduplication: every window, batches of 16,384."""
    import torch

    from drdfl.evaluation.metrics import WindowScores

    chunk = 16384
    with torch.no_grad():
        forecaster.eval()
        x, y = windows.tensors("cpu")
        preds, decisions, regrets, optimal = [], [], [], []
        for i in range(0, x.shape[0], chunk):
            pred = forecaster(x[i : i + chunk])
            y_true = scaler.inverse_transform(y[i : i + chunk])
            dec = task.decide(scaler.inverse_transform(pred))
            opt = task.optimal_cost(y_true)
            preds.append(pred)
            decisions.append(dec)
            regrets.append(task.cost(dec, y_true) - opt)
            optimal.append(opt)
        pred = torch.cat(preds)

        def host(t: torch.Tensor) -> np.ndarray:
            return t.cpu().numpy().astype(np.float64)

        return WindowScores(
            start=np.asarray(windows.start),
            prediction=host(scaler.inverse_transform(pred)),
            truth=host(scaler.inverse_transform(y)),
            decision=host(torch.cat(decisions)),
            regret=host(torch.cat(regrets)),
            optimal_cost=host(torch.cat(optimal)),
            sq_err=host((pred - y).pow(2).mean(dim=-1)),
        )


def _score_sets(tests: list[Any], forecaster: Any, task: Any, side: str, boot: int) -> Any:
    """Score and summarise every test set one way; the seconds and the summaries."""
    from drdfl.evaluation.metrics import score_windows, summarize
    from drdfl.evaluation.suites import score_tests

    started = time.perf_counter()
    if side == "after":  # drdfl's: one pass over the distinct windows of every set
        scored = score_tests(forecaster, tests, task)
    else:
        scored = []
        for t in tests:
            if side == "before":
                scored.append(score_before(forecaster, t.windows, t.scaler, task))
            else:
                dedupe = side == "sets"
                scored.append(score_windows(forecaster, t.windows, t.scaler, task, dedupe=dedupe))
    scoring = time.perf_counter() - started
    summaries = {
        f"{i}:{t.name}": summarize(s, n_boot=boot, seed=0)
        for i, (t, s) in enumerate(zip(tests, scored, strict=True))
    }
    return time.perf_counter() - started, scoring, summaries


def evaluation(sizes: Sizes) -> dict[str, Any]:
    """Before/after deduplication on one unit's test sets of the ``paper`` profile."""
    from drdfl.config import resolve_config
    from drdfl.data.suites import TestSet, corruption_tests
    from drdfl.evaluation.metrics import unique_windows
    from drdfl.models.forecasters import build_forecaster
    from drdfl.runner.steps import build_suite
    from drdfl.runner.unit import RunData
    from drdfl.tasks import get_task

    cfg = resolve_config("paper", overrides=[f"data.data_dir={data_dir()}"])
    suite = build_suite(cfg.data)
    tests = list(suite.tests)
    if sizes.eval_corruptions:
        tests += corruption_tests(suite, cfg.evaluation.corruption_severities, seed=0)
        # the skyline's scoring parts of the main sets, as a unit scores them
        tests += [
            TestSet(name, score, t.scaler, t.series, t.w_distance, t.note)
            for name, (_, score, t) in RunData(cfg.data, cfg.evaluation).skyline_parts.items()
        ]
    window, horizon = suite.data.train.window, suite.data.train.horizon
    forecaster = build_forecaster(cfg.forecaster, window, horizon, seed=0)
    task = get_task(cfg.task)
    boot = cfg.evaluation.bootstrap
    # "batches": drdfl's fixed batches without deduplication, to attribute the gain
    # "sets": each set's distinct windows once (the previous step), "after": drdfl's, the
    # distinct windows of all sets in one pass
    runs: dict[str, list[tuple[float, float]]] = {
        "before": [],
        "batches": [],
        "sets": [],
        "after": [],
    }
    summaries: dict[str, Any] = {}
    for _ in range(sizes.eval_repeats):
        for side in runs:
            total, scoring, summaries[side] = _score_sets(tests, forecaster, task, side, boot)
            runs[side].append((total, scoring))
    worst = 0.0
    for name, before in summaries["before"].items():
        after = summaries["after"][name]
        for key in ("regret", "normalized_regret", "mse"):
            scale = max(abs(before[key]), 1e-12)
            worst = max(worst, abs(after[key] - before[key]) / scale)
    n_windows = [len(t.windows) for t in tests]
    n_distinct = [len(unique_windows(t.windows)[0]) for t in tests]
    from drdfl.data.windows import Windows

    n_global = len(unique_windows(Windows.concat([t.windows for t in tests]))[0])

    def med(side: str, i: int) -> float:
        return round(statistics.median(r[i] for r in runs[side]), 3)

    return {
        "test_sets": len(tests),
        "windows": int(sum(n_windows)),
        "distinct_windows": int(sum(n_distinct)),
        "distinct_windows_across_sets": int(n_global),
        "by_set": [
            {"test_set": t.name, "windows": n, "distinct": d}
            for t, n, d in zip(tests, n_windows, n_distinct, strict=True)
        ],
        "bootstrap": boot,
        "forecaster": cfg.forecaster,
        "before_s": med("before", 0),
        "after_s": med("after", 0),
        "before_scoring_s": med("before", 1),
        "after_scoring_s": med("after", 1),
        "batches_only_s": med("batches", 0),
        "batches_only_scoring_s": med("batches", 1),
        "per_set_s": med("sets", 0),
        "per_set_scoring_s": med("sets", 1),
        "runs": {k: [[round(a, 3), round(b, 3)] for a, b in v] for k, v in runs.items()},
        "speedup": round(med("before", 0) / med("after", 0), 2),
        "scoring_speedup": round(med("before", 1) / med("after", 1), 2),
        "summary_max_rel_diff": worst,
    }


# ------------------------------------------------------------------------- scaling
def scaling_length(sizes: Sizes) -> list[dict[str, Any]]:
    """Every stage at ×1, ×4, ×16 the base training length (synthetic workload)."""
    from drdfl.data.suites import synthetic_suite
    from drdfl.diffusion.model import get_preset
    from drdfl.diffusion.train import fit_series
    from drdfl.evaluation.suites import evaluate_tests
    from drdfl.methods.settings import TrainConfig
    from drdfl.runner.steps import train_model
    from drdfl.tasks import get_task

    preset = get_preset(sizes.diffusion_preset)
    train = TrainConfig(epochs=1, batch_size=64, patience=None)
    task = "provisioning:paper-code"
    rows: list[dict[str, Any]] = []
    warmed = False
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 1, 4, 16):  # the first pass warms up and is not kept
            stages: dict[str, Any] = {}
            with Stage() as s:
                suite = synthetic_suite(sizes.base_days * factor, seed=0)
            stages["suite"] = s.record()
            real = suite.data.scaler.inverse_transform(suite.data.series)
            iterations = {"iterations": sizes.diffusion_iterations, "checkpoint_every": 10**6}
            ref_dir = Path(tmp) / f"ref-{factor}-{warmed}"
            with Stage() as s:
                fit_series(
                    real,
                    preset.model,
                    preset.train.model_copy(update=iterations),
                    ref_dir,
                    None,
                    progress=False,
                )
            stages["diffusion"] = s.record(iterations=sizes.diffusion_iterations)
            with Stage() as s:
                model, _ = train_model("dfl", suite, task=task, forecaster="lstm", train=train)
            stages["dfl_epoch"] = s.record()
            params = {
                "diffusion": str(ref_dir),
                "t_prime": min(10, preset.model.T),
                **sizes.threed,
            }
            with Stage() as s:
                train_model(
                    "threed",
                    suite,
                    task=task,
                    forecaster="lstm",
                    train=train,
                    method_params=params,
                )
            stages["threed_setup_and_epoch"] = s.record()
            with Stage() as s:
                evaluate_tests(model.forecaster, suite.tests, get_task(task), n_boot=200)
            stages["evaluation"] = s.record(windows=sum(len(t.windows) for t in suite.tests))
            if not warmed:
                warmed = True
                continue
            rows.append(
                {
                    "factor": factor,
                    "train_slots": len(suite.data.series),
                    "train_windows": len(suite.data.train),
                    "stages": stages,
                }
            )
    return rows


def scaling_windows(sizes: Sizes) -> list[dict[str, Any]]:
    """Scoring ×1, ×4, ×16 test windows: all distinct, and tiled (233-slot period)."""
    from drdfl.data.windows import Scaler, make_windows
    from drdfl.evaluation.metrics import score_windows
    from drdfl.models.forecasters import build_forecaster
    from drdfl.tasks import get_task

    rng = np.random.default_rng(0)
    forecaster = build_forecaster("lstm", 7, 1, seed=0)
    task = get_task("provisioning:paper-code")
    period = rng.gamma(2.0, 500.0, 233)
    rows = []
    for factor in (1, 4, 16):
        n = sizes.base_windows * factor
        for layout in ("distinct", "tiled"):
            values = (
                rng.gamma(2.0, 500.0, n + 7) if layout == "distinct" else np.resize(period, n + 7)
            )
            scaler = Scaler.fit(values)
            windows = make_windows(scaler.transform(values), 7, 1)
            row: dict[str, Any] = {"factor": factor, "windows": len(windows), "layout": layout}
            for side in ("before", "after"):
                with Stage() as s:
                    if side == "before":
                        score_before(forecaster, windows, scaler, task)
                    else:
                        score_windows(forecaster, windows, scaler, task)
                row[side] = s.record()
            rows.append(row)
    return rows


# ------------------------------------------------------------------------- main
def run(threads: int, sizes: Sizes, parts: tuple[str, ...]) -> dict[str, Any]:
    info = machine(threads)
    out: dict[str, Any] = {
        "benchmark": "start-up, evaluation before/after deduplication, scaling per stage",
        "command": COMMAND,
        "machine": info,
    }
    for part in parts:
        started = time.perf_counter()
        out[part] = globals()[part](sizes)
        print(f"{part}: {time.perf_counter() - started:.1f} s", flush=True)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


def main() -> None:
    from drdfl._io import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="tiny measurement (smoke check)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "speed.json")
    args = parser.parse_args()
    parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
    if bad := sorted(set(parts) - set(PARTS)):
        parser.error(f"--only: unknown part(s) {', '.join(bad)}; valid: {', '.join(PARTS)}")
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    result = run(args.threads, sizes, parts)
    result["quick"] = args.quick
    result["sizes"] = dataclasses.asdict(sizes)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
