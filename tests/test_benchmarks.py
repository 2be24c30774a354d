"""The benchmark runner: a quick run through ``benchmarks/run.py`` on the real paper data,
and the markdown it renders.

A quick run of every benchmark takes minutes on a shared 2-core machine (each process
imports torch, and the reader benchmark starts two more), so the end-to-end test runs the
DFL-epoch benchmark alone through ``run.py --quick --only training``; the rendering of the
pipeline sections is tested on small measurement dicts.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench_modules():
    """``benchmarks_md`` (the markdown) and ``bench_pipeline`` from ``benchmarks/`` (not a
    package)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("benchmarks_md"), importlib.import_module("bench_pipeline")
    finally:
        sys.path.remove(str(BENCH))


def test_quick_training_run_writes_results_and_markdown(tmp_path: Path, data_dir: Path) -> None:
    env = {**os.environ, "DRDFL_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--only",
            "training",
            "--out",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "results" / "training.json").read_text())
    assert result["data"]["train_windows"] == 9408  # the paper training split, last batch held out
    assert result["machine"]["torch_threads"] == 1
    # the vectorised path is faster than the per-window loop and computes the same thing
    assert result["speedup"] > 2
    assert result["equivalence"]["loss_rel_diff"] < 1e-4
    assert result["equivalence"]["grad_max_abs_diff_rel"] < 1e-3
    log = json.loads((tmp_path / "results" / "run.json").read_text())
    assert [r["benchmark"] for r in log["ran"]] == ["training"]
    assert log["ran"][0]["returncode"] == 0 and log["ran"][0]["peak_rss_mib"] > 50

    md = (tmp_path / "BENCHMARKS.md").read_text()
    for heading in (
        "# Benchmarks",
        "## Machine and run",
        "## Speed targets",
        "## DFL epoch: vectorised vs. per-window loop",
        "## Benchmark processes",
    ):
        assert heading in md
    speedup = re.search(r"\*\*Speed-up: ([\d.]+)×\*\*", md)
    assert speedup and speedup[1] == f"{result['speedup']:.1f}"
    assert "| torch threads | 1 |" in md
    assert "Quick mode" in md
    assert "skipped: not selected (--only)" in md


def pipeline_result(wall_s: float, dfl_s: float, threed_s: float) -> dict:
    """A pipeline benchmark result with the given end-to-end and overhead times."""
    return {
        "profile": "paper",
        "machine": {
            "cpus": 2,
            "cpu_model": "test CPU",
            "torch_threads": 1,
            "torch": "x",
            "platform": "p",
            "load_average_at_start": [1.0, 1.0, 1.0],
            "date": "d",
            "commit": "abc1234",
        },
        "end_to_end": {
            "command": "drdfl run --profile paper --set seeds=0 --jobs 2 (empty cache)",
            "jobs": 2,
            "wall_s": wall_s,
            "cpu_s": 2 * wall_s,
            "peak_rss_mib": 900.0,
            "reference": [{"iterations": 250, "fit_s": 10.0, "gate": "passed"}],
            "units": [
                {"method": "dfl", "train_s": 40.0, "evaluate_s": 20.0, "epochs": 19},
                {"method": "skyline", "train_s": 300.0, "evaluate_s": 5.0, "epochs": None},
            ],
            "stages_s": {
                "reference model θ₀ (gated fit)": 10.0,
                "training (every unit)": 340.0,
                "evaluation (every unit)": 25.0,
            },
            "report_written": True,
            "target_s": 900,
            "met": wall_s <= 900,
        },
        "overhead": {
            "epochs": 3,
            "dfl": {"train_s": dfl_s, "peak_rss_mib": 500.0},
            "threed": {"train_s": threed_s, "peak_rss_mib": 700.0},
            "threed_adversary_s": threed_s / 2,
            "ratio": round(threed_s / dfl_s, 2),
            "adversary_share": 0.5,
            "target": 3.0,
            "met": threed_s / dfl_s <= 3.0,
        },
    }


def test_markdown_reports_the_measured_targets_and_stages(bench_modules) -> None:
    markdown, _ = bench_modules
    md = markdown.render({"pipeline": pipeline_result(1200.0, 6.0, 30.0)})
    targets = md.split("## Speed targets")[1].split("## The `paper` profile end to end")[0]
    row = next(line for line in targets.splitlines() if line.startswith("| `paper` profile"))
    assert "20.0 min (measured)" in row and "**missed**" in row
    overhead = next(line for line in targets.splitlines() if line.startswith("| 3D-Learning"))
    assert "5.0×" in overhead and "**missed**" in overhead and "50%" in overhead
    stages = md.split("## The `paper` profile end to end")[1].split("## ")[0]
    assert "| training (every unit) | 5.7 min | 91% |" in stages
    assert "| skyline | – | 5.0 min | 5.00 s |" in stages
    assert "quality gate passed" in stages
    assert "estimate" not in targets + stages  # measured, not assembled from stages
    assert "## Against the official code\n\nNot measured" in md

    fast = markdown.render({"pipeline": pipeline_result(600.0, 10.0, 25.0)})
    targets = fast.split("## Speed targets")[1].split("## The")[0]
    assert "**missed**" not in targets and targets.count("| met |") == 2


def test_speed_benchmark_scales_with_series_length_and_test_windows(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_speed.py"),
            "--quick",
            "--only",
            "scaling_windows,scaling_length",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    lengths = result["scaling_length"]
    assert [r["factor"] for r in lengths] == [1, 4, 16]
    assert lengths[2]["train_slots"] > lengths[0]["train_slots"]
    assert all(stage["seconds"] > 0 for r in lengths for stage in r["stages"].values())
    rows = result["scaling_windows"]
    assert [(r["factor"], r["layout"]) for r in rows] == [
        (f, layout) for f in (1, 4, 16) for layout in ("distinct", "tiled")
    ]
    assert [r["windows"] for r in rows[::2]] == [512, 2048, 8192]
    assert all(r[side]["seconds"] > 0 for r in rows for side in ("before", "after"))


def _speed_results() -> dict:
    def stage(seconds: float) -> dict:
        return {"seconds": seconds, "peak_rss_mib": 700.0, "rss_start_mib": 690.0}

    return {
        "startup": {
            "import drdfl": {
                "median_s": 0.12,
                "runs_s": [0.12, 0.13],
                "peak_rss_mib": 10.4,
                "target_s": 1.5,
                "met": True,
            },
            "drdfl --help": {
                "median_s": 1.2,
                "runs_s": [1.2, 1.1],
                "peak_rss_mib": 25.0,
                "target_s": 1.0,
                "met": False,
            },
        },
        "evaluation": {
            "test_sets": 7,
            "batches_only_s": 106.0,
            "batches_only_scoring_s": 100.0,
            "windows": 287616,
            "distinct_windows": 252079,
            "distinct_windows_across_sets": 150000,
            "per_set_s": 80.0,
            "per_set_scoring_s": 74.0,
            "bootstrap": 500,
            "forecaster": "lstm",
            "before_s": 145.5,
            "after_s": 72.2,
            "before_scoring_s": 139.8,
            "after_scoring_s": 65.7,
            "runs": {"before": [[145.5, 139.8]], "after": [[72.2, 65.7]]},
            "speedup": 2.02,
            "scoring_speedup": 2.13,
            "summary_max_rel_diff": 0.0,
        },
        "scaling_length": [
            {
                "factor": f,
                "train_slots": 84 * f,
                "train_windows": 60 * f,
                "stages": {"suite": stage(0.01 * f), "dfl_epoch": stage(0.1 * f * f)},
            }
            for f in (1, 4, 16)
        ],
        "scaling_windows": [
            {
                "factor": 16,
                "windows": 8192,
                "layout": "tiled",
                "before": stage(2.17),
                "after": stage(0.42),
            }
        ],
    }


def test_markdown_reports_startup_evaluation_and_scaling_per_stage(bench_modules) -> None:
    markdown, _ = bench_modules
    md = markdown.render({"speed": _speed_results()})
    startup = md.split("## Start-up")[1].split("## Evaluation")[0]
    assert "| `import drdfl` | 0.12 s | 10 MiB | ≤ 1.50 s | met |" in startup
    assert "| `drdfl --help` | 1.20 s | 25 MiB | ≤ 1.00 s | **missed** |" in startup
    evaluation = md.split("## Evaluation: each distinct window scored once")[1]
    assert "| **ratio before / after** | 2.0× | 2.1× |" in evaluation
    batches = "| fixed batches of 2,048 and `inference_mode`, every window | 106.0 s | 100.0 s |"
    assert batches in evaluation
    assert "287,616 windows of which 252,079 distinct within their sets and 150,000" in evaluation
    assert "| each set's distinct windows once, fixed batches, `inference_mode` | 80.0 s |" in (
        evaluation
    )
    scaling = md.split("## Scaling per stage")[1]
    assert "| dfl_epoch | 0.10 s (1.0×), 700 MiB | 1.60 s (16.0×), 700 MiB |" in scaling
    assert "| ×16 | 8,192 | tiled | 2.17 s, 700 MiB | 0.42 s, 700 MiB |" in scaling


def test_markdown_reports_the_operate_targets(bench_modules) -> None:
    markdown, _ = bench_modules
    result = {
        "model": {"method": "dfl", "forecaster": "lstm", "lead": 24, "horizon": 3},
        "plan": {
            "history_slots": 17_280,
            "plan": {"median_s": 0.02},
            "load_and_plan": {"median_s": 0.03},
            "target_s": 0.5,
        },
        "backtest": {
            "decisions": 17_280,
            "policies": ["model", "model+online", "reactive"],
            "backtest": {"median_s": 12.5},
            "target_s": 10.0,
        },
        "serve": {
            "payload_slots": 720,
            "rate_per_s": 50.0,
            "seconds": 30.0,
            "cores": 2,
            "requests": 1500,
            "answered": 1500,
            "errors": 0,
            "achieved_rate_per_s": 50.0,
            "p50_ms": 7.5,
            "p99_ms": 17.0,
            "max_ms": 42.0,
            "target_p99_ms": 50.0,
        },
        "targets": {"plan": True, "backtest": False, "serve": True},
    }
    md = markdown.render({"operate": result})
    md = md.split("## Operating a model: plan, backtest, serve")[1]
    assert "| ≤ 0.50 s | 0.02 s (model loading included: 0.03 s) | met |" in md
    assert "17,280 decisions, 3 policies" in md and "| ≤ 10.0 s | 12.5 s | **missed** |" in md
    assert "| ≤ 50 ms | 17.0 ms (p50 7.5 ms, max 42.0 ms; 1500/1500 answered" in md
