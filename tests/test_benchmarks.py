"""The benchmark runner: a quick run through ``benchmarks/run.py`` on the real paper data,
the full-run estimate's arithmetic, and the markdown it renders.

A quick run of every benchmark takes minutes on a shared 2-core machine (each process
imports torch, and the reader benchmark starts two more), so the end-to-end test runs the
DFL-epoch benchmark alone through ``run.py --quick --only training``; the estimate and the
rendering of the pipeline sections are tested on small measurement dicts.
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

from drdfl.config import resolve_config
from drdfl.methods.registry import METHOD_NAMES

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench_modules():
    """``run`` and ``bench_pipeline`` from ``benchmarks/`` (not a package)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("run"), importlib.import_module("bench_pipeline")
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
    assert speedup and float(speedup[1]) == pytest.approx(result["speedup"], abs=0.05)
    assert "| torch threads | 1 |" in md
    assert "Quick mode" in md
    assert "skipped: not selected (--only)" in md


def measurements(dfl_epoch: float, outer: float, diffusion_s: float) -> dict:
    """Stage measurements where only DFL/3D-Learning epochs and diffusion cost anything."""
    return {
        "suite": {"seconds": 0.0, "peak_rss_mib": 400.0, "window": 7, "horizon": 1},
        "diffusion_pretraining": {
            "preset": "paper",
            "measured_iterations": 3,
            "s_per_1000_iterations": diffusion_s / 7,
            "preset_iterations": 7000,
            "preset_total_s": diffusion_s,
            "peak_rss_mib": 800.0,
        },
        "sampling": {
            "s_per_segment": 0.0,
            "s_per_1000_segments": 0.0,
            "segment_length": 784,
            "steps": 500,
            "measured_segments": 2,
            "peak_rss_mib": 800.0,
        },
        "dfl_epoch": {
            "epoch_s": dfl_epoch,
            "train_windows": 9408,
            "validation_windows": 1344,
            "measured_windows": 9408,
            "extrapolated": False,
            "peak_rss_mib": 500.0,
        },
        "method_epochs": {
            "ratio_to_dfl": {m: 1.0 for m in ("dfl", "mse", "kldro", "cvar", "chi2", "wdro")}
            | {f"augment-{k}": 1.0 for k in ("gaussian", "perlin", "cutout", "level", "burst")}
            | {"revin-dfl": 1.0}
        },
        "threed": {
            "setup_paper_s": 0.0,
            "outer_epoch_paper_s": outer,
            "measured_outer_epoch_s": outer,
            "measured_inner_epochs": 1,
            "paper_inner_epochs": 10,
            "paper_pool": 256,
            "preset_unet": "paper",
            "reference_T": 10,
            "inner_epoch_s": outer / 10,
            "dfl_pass_s": dfl_epoch,
            "peak_rss_mib": 900.0,
            "params": {"trajectories": 64},
        },
        "evaluation": {
            "bootstrap": 500,
            "sets": [
                {"test_set": "23V(Test)", "windows": 4032, "seconds": 1.0, "peak_rss_mib": 1.0}
            ],
            "fit": {"a_s": 0.0, "b_s_per_window": 0.0},
        },
        "test_windows": {"main": 4032, "corruptions": 0, "skyline_score": 0, "skyline_fit": 9408},
    }


WINDOWS = {"main": [4032], "corruptions": [], "skyline_score": [0], "skyline_fit": [9408]}


def test_estimate_sums_every_unit_and_names_the_dominant_stage(bench_modules) -> None:
    _, bp = bench_modules
    cfg = resolve_config("paper")
    est = bp.estimate(measurements(10.0, 30.0, 0.0), cfg, WINDOWS)
    # one seed: every registered method, threed's MSE ablation and the skyline
    assert len(est["units"]) == len(METHOD_NAMES) + 2 and est["units"].count("skyline") == 1
    lo, hi = est["low"], est["high"]
    assert (lo["epochs"], hi["epochs"]) == (cfg.train.patience + 1, cfg.train.epochs)
    # per epoch: 12 simple units x 10 s + diffusion-augment 10 s + skyline (9,408 windows)
    # 10 s + threed and threed-mse 2 x 30 s = 200 s
    assert lo["total_s"] == pytest.approx(200.0 * lo["epochs"])
    assert hi["total_s"] == pytest.approx(200.0 * hi["epochs"])
    assert lo["dominant_stage"] == "other methods training"
    assert lo["overhead_ratio"] == pytest.approx(3.0) and est["targets"]["overhead_met"]
    assert not est["targets"]["total_met"]  # 7 x 170 s > 15 min

    slow = bp.estimate(measurements(1.0, 4.0, 5000.0), cfg, WINDOWS)
    assert slow["low"]["dominant_stage"] == "diffusion pre-training"
    assert slow["low"]["overhead_ratio"] == pytest.approx(4.0)
    assert not slow["targets"]["overhead_met"]

    fast = bp.estimate(measurements(1.0, 2.0, 100.0), cfg, WINDOWS)
    assert fast["targets"]["total_met"] and fast["targets"]["overhead_met"]


def test_markdown_reports_targets_stages_and_scaling(bench_modules) -> None:
    run, bp = bench_modules
    m = measurements(10.0, 300.0, 13000.0)
    m["estimate"] = bp.estimate(m, resolve_config("paper"), WINDOWS)
    m["scaling"] = [
        {
            "factor": f,
            "train_slots": 756 * f,
            "train_windows": 739 * f,
            "dfl_epoch_s": 0.8 * f,
            "threed_outer_epoch_s": 5.0 + 0.8 * f,
            "threed_peak_rss_mib": 700.0,
        }
        for f in (1, 4, 16)
    ]
    pipeline = {
        "machine": {
            "cpus": 2,
            "cpu_model": "test CPU",
            "torch_threads": 1,
            "torch": "x",
            "platform": "p",
            "load_average_at_start": [1.0, 1.0, 1.0],
            "date": "d",
        },
        "stages": m,
        "sizes": {
            "scaling_base_days": 1 / 16,
            "scaling_preset": "fast",
            "scaling_threed": {"trajectories": 16},
        },
    }
    md = run.render({"pipeline": pipeline})
    targets = md.split("## Speed targets")[1].split("## Stages")[0]
    row = next(line for line in targets.splitlines() if line.startswith("| `paper` profile"))
    assert "**missed**" in row and "diffusion pre-training" in row and "(estimate)" in row
    overhead = next(line for line in targets.splitlines() if line.startswith("| 3D-Learning"))
    assert "30×" in overhead and "**missed**" in overhead
    assert "| diffusion pre-training | 3.6 h |" in targets
    scaling = md.split("## Scaling with training-series length")[1].split("## DFL epoch")[0]
    assert "| ×16 | 12,096 | 11,824 | 12.8 s | 16.0× | 17.8 s | 3.1× | 700 MiB |" in scaling
    assert "## DFL epoch: vectorised vs. per-window loop\n\nNot measured." in md


def test_speed_benchmark_scales_the_test_windows(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_speed.py"),
            "--quick",
            "--only",
            "scaling_windows",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["scaling_windows"]
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
    run, _ = bench_modules
    md = run.render({"speed": _speed_results()})
    startup = md.split("## Start-up")[1].split("## Evaluation")[0]
    assert "| `import drdfl` | 0.12 s | 10 MiB | ≤ 1.50 s | met |" in startup
    assert "| `drdfl --help` | 1.20 s | 25 MiB | ≤ 1.00 s | **missed** |" in startup
    evaluation = md.split("## Evaluation: each distinct window scored once")[1]
    assert "| **ratio before / after** | 2.0× | 2.1× |" in evaluation
    batches = "| fixed batches of 2,048 and `inference_mode`, every window | 106.0 s | 100.0 s |"
    assert batches in evaluation
    assert "287,616 windows of which 252,079 distinct" in evaluation
    scaling = md.split("## Scaling per stage")[1]
    assert "| dfl_epoch | 0.10 s (1.0×), 700 MiB | 1.60 s (16.0×), 700 MiB |" in scaling
    assert "| ×16 | 8,192 | tiled | 2.17 s, 700 MiB | 0.42 s, 700 MiB |" in scaling
