"""The controlled study of 3D-Learning against the methods a user would pick instead.

For every suite and seed: one reference diffusion model θ₀ (fitted once, passed to every
generative method), one DFL model (the warm start of every method the registry marks as
warm-started), then every method of the comparison trained with the same settings and
scored on every test set of the suite. Writes the tidy results, the 3D-Learning
diagnostics and a Markdown block (mean ± 95 % CI over seeds, best per row in bold, the
commit) under ``benchmarks/results/``.

Settings are cut alike for every method to fit the time budget, and printed; none was
chosen on a test set (the θ₀ iterations and epochs are the profile's cut to the budget,
the 3D-Learning settings are the method's defaults).

    python benchmarks/study_threed.py                      # the study (3 seeds, 2 suites)
    python benchmarks/study_threed.py --seeds 0 --suites honest --epochs 2 --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, data_dir, machine

#: run label -> (registered method, its parameters); "θ₀" is filled in per seed
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dfl": ("dfl", {}),
    "mse": ("mse", {}),
    "kldro": ("kldro", {}),
    "augment-level": ("augment-level", {}),
    "augment-burst": ("augment-burst", {}),
    "revin-dfl": ("revin-dfl", {}),
    "diffusion-augment": ("diffusion-augment", {}),
    "threed": ("threed", {}),
    "threed-paper": ("threed", {"ambiguity": "paper"}),
    "threed-off": ("threed", {"adversary_steps": 0}),
    # τ fixed a priori (a ±20 % level spread), not chosen on any test set
    "threed-level": ("threed", {"level_scale": 0.2}),
}


def budget_label(budget: float) -> str:
    """The run label of 3D-Learning at an extra ``budget``."""
    return f"threed-b{budget:g}"


def variants(cfg: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The study's variants: the fixed ones and 3D-Learning at each extra budget."""
    extra = {budget_label(b): ("threed", {"budget": b}) for b in cfg.get("budgets", [])}
    return {**VARIANTS, **extra}


#: the headline metric (the paper's Table I number)
METRIC = "normalized_regret"
DIAGNOSTICS = (
    "path_kl",
    "kl_budget",
    "regret_raise",
    "disc_acc",
    "ref_disc_acc",
    "w1",
    "level_std",
    "floor_frac",
    "level_shift",
)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default="honest,paper")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--methods", default=",".join(VARIANTS), help="variants run (threed-b<B> added too)"
    )
    ap.add_argument(
        "--budgets",
        default="",
        help="extra path-KL budgets (nats per slot), each run as variant threed-b<B>",
    )
    ap.add_argument("--epochs", type=int, default=6, help="outer epochs of every method")
    ap.add_argument("--forecaster", default="mlp")
    ap.add_argument(
        "--preset", default=None, help="diffusion preset of θ₀ (None: the suite's profile's)"
    )
    ap.add_argument(
        "--diffusion-iterations",
        type=int,
        default=None,
        help="cap on θ₀'s gated fit (None: the preset's)",
    )
    ap.add_argument("--test-rows", type=int, default=20000, help="rows per test set")
    ap.add_argument("--jobs", type=int, default=2, help="(suite, seed) jobs side by side")
    ap.add_argument("--quick", action="store_true", help="smoke settings (not evidence)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "study_threed")
    return ap.parse_args()


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of the study, the same for all methods."""
    train = {"epochs": args.epochs, "batch_size": 256, "lr": 1e-3, "patience": None}
    threed: dict[str, Any] = {}
    paper: dict[str, Any] = {"inner_epochs": 2}
    budgets = [float(b) for b in args.budgets.split(",") if b]
    if args.quick:
        threed = {"pool": 32, "adversarial_samples": 16, "adversary_steps": 1}
        paper = {**threed, "inner_epochs": 1, "trajectories": 16}
    return {
        "suites": args.suites.split(","),
        "seeds": [int(s) for s in args.seeds.split(",")],
        "methods": args.methods.split(",") + [budget_label(b) for b in budgets],
        "budgets": budgets,
        "forecaster": args.forecaster,
        "task": "provisioning:paper-code",
        "train": train,
        "diffusion": {"preset": args.preset, "iterations": args.diffusion_iterations},
        "test_rows": args.test_rows,
        "threed_params": threed,
        "threed_paper_params": paper,
        "diffusion_augment_params": {"samples": 16} if args.quick else {},
    }


def run_job(suite_name: str, seed: int, cfg: dict[str, Any], out: Path) -> Path:
    """One suite and seed: θ₀, DFL, then every method; results written to ``out``."""
    import torch

    from drdfl.config import DataConfig, TrainConfig
    from drdfl.diffusion.model import get_preset
    from drdfl.diffusion.train import fit_series
    from drdfl.evaluation.suites import evaluate_tests
    from drdfl.methods.registry import METHODS
    from drdfl.runner.steps import build_suite, train_model

    torch.set_num_threads(1)
    done = out / f"{suite_name}-{seed}.json"
    # A finished job is reused only when it ran the same settings at the same commit.
    if done.is_file() and json.loads(done.read_text()).get("settings") == cfg:
        return done
    suite = build_suite(
        DataConfig(suite=suite_name, test_max_rows=cfg["test_rows"], data_dir=str(data_dir())), seed
    )
    data = suite.data
    from drdfl.config import resolve_config

    preset_name = cfg["diffusion"]["preset"] or resolve_config(suite_name).diffusion.preset
    preset = get_preset(preset_name)
    real = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
    start = time.perf_counter()
    update: dict[str, Any] = {"seed": seed}
    if cfg["diffusion"]["iterations"] is not None:
        update["iterations"] = cfg["diffusion"]["iterations"]
    # Seeded as the runner's reference cache seeds θ₀: the weights depend on the seed only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reference, fit = fit_series(
            real, preset.model, preset.train.model_copy(update=update), progress=False
        )
    reference_s = time.perf_counter() - start
    quality = reference.meta.get("quality") or {}
    gate = {
        "status": quality.get("status", "ungated"),
        "iterations": fit.iterations,
        "failed": [c["name"] for c in quality.get("criteria", []) if not c["passed"]],
    }
    print(f"[{suite_name}/{seed}] θ₀: gate {gate['status']} at {fit.iterations} it", flush=True)
    train = TrainConfig(**cfg["train"])
    rows: list[dict[str, Any]] = []
    diag: list[dict[str, Any]] = []
    timing: dict[str, float] = {"reference": reference_s}
    warm = None
    order = ["dfl"] + [m for m in cfg["methods"] if m != "dfl"]
    known = variants(cfg)
    for label in order:
        method, params = known[label]
        if method not in METHODS:
            print(f"[{suite_name}/{seed}] {label}: not registered in this checkout, skipped")
            continue
        spec = METHODS[method]
        # The study's cuts first, the variant's own parameters over them.
        base: dict[str, Any] = {}
        if method == "threed":
            base = cfg["threed_paper_params"] if label == "threed-paper" else cfg["threed_params"]
        elif method == "diffusion-augment":
            base = cfg["diffusion_augment_params"]
        params = {**base, **params}
        if spec.needs_reference:
            params["diffusion"] = reference.clone()
        start = time.perf_counter()
        model, result = train_model(
            method,
            suite,
            task=cfg["task"],
            forecaster=cfg["forecaster"],
            train=train,
            seed=seed,
            method_params=params,
            warm_start=copy.deepcopy(warm) if spec.warm_start and warm is not None else None,
        )
        timing[label] = time.perf_counter() - start
        if label == "dfl":
            warm = model
        table, _ = evaluate_tests(model.forecaster, suite.tests, model.task, n_boot=20, seed=seed)
        table = table[table["metric"].isin([METRIC, "regret"])]
        rows += [
            {"suite": suite_name, "seed": seed, "method": label, **r}
            for r in table.to_dict("records")
        ]
        if method == "threed":
            for row in result.history:
                diag.append({"suite": suite_name, "seed": seed, "method": label, **row})
            timing[f"{label}:adversary"] = float(result.artifacts.get("adversary_s", 0.0))
        print(f"[{suite_name}/{seed}] {label}: {timing[label]:.0f} s", flush=True)
    payload = {
        "suite": suite_name,
        "seed": seed,
        "in_distribution": suite.in_distribution,
        "results": rows,
        "diagnostics": diag,
        "timing_s": timing,
        "reference_gate": {"preset": preset_name, **gate},
        "settings": cfg,
    }
    done.write_text(json.dumps(payload, default=float))
    return done


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval over seeds (0 with one seed)."""
    from scipy import stats

    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    if values.size < 2:
        return float(values.mean()), 0.0
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def suite_table(res: pd.DataFrame, in_dist: str, order: list[str]) -> str:
    """Markdown table: test sets (and the worst OOD set per seed) × methods in ``order``."""
    res = res[res["metric"] == METRIC]
    methods = [m for m in order if m in set(res["method"])]
    wide = res.pivot_table(index=["test_set", "seed"], columns="method", values="value")
    ood = [t for t in dict.fromkeys(res["test_set"]) if t != in_dist]
    worst = wide.loc[ood].groupby(level="seed").max()
    blocks = [(t, wide.xs(t, level="test_set")) for t in dict.fromkeys(res["test_set"])]
    blocks.append(("worst OOD set", worst))
    lines = ["| test set | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name, frame in blocks:
        stats_ = {m: mean_ci(frame[m].to_numpy(dtype=float)) for m in methods if m in frame}
        best = min(stats_, key=lambda m: stats_[m][0] if np.isfinite(stats_[m][0]) else np.inf)
        cells = []
        for m in methods:
            mu, ci = stats_.get(m, (math.nan, math.nan))
            cell = f"{mu:.4f} ± {ci:.4f}"
            cells.append(f"**{cell}**" if m == best else cell)
        label = f"{name} (ID)" if name == in_dist else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diagnostics_table(diag: pd.DataFrame, timing: pd.DataFrame) -> str:
    """Diagnostics of each 3D-Learning variant: mean over its last three epochs and the
    seeds (one epoch's crop discriminator judges only a few dozen segments)."""
    last = diag.sort_values("epoch").groupby(["suite", "seed", "method"]).tail(3)
    cols = [c for c in DIAGNOSTICS if c in last]
    agg = last.groupby(["suite", "method"])[cols].mean()
    head = "| suite | variant | " + " | ".join(cols) + " | train s / DFL train s |"
    lines = [head, "|---" * (len(cols) + 3) + "|"]
    for (suite, method), row in agg.iterrows():
        t = timing[timing["suite"] == suite]
        ratio = (t[method] / t["dfl"]).mean() if method in t else math.nan
        vals = " | ".join(f"{row[c]:.3g}" for c in cols)
        lines.append(f"| {suite} | {method} | {vals} | {ratio:.1f} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    cfg = settings(args)
    args.out.mkdir(parents=True, exist_ok=True)
    env = machine(1)
    # The commit measured is the one checked out when the study starts.
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True)
    if dirty.stdout.strip():
        commit += " + uncommitted changes under src/"
    cfg["commit"] = commit
    print("settings (the same for every method):")
    print(json.dumps(cfg, indent=2))
    start = time.perf_counter()
    jobs = [(s, seed) for s in cfg["suites"] for seed in cfg["seeds"]]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        suites, seeds = [s for s, _ in jobs], [seed for _, seed in jobs]
        files = list(pool.map(run_job, suites, seeds, [cfg] * len(jobs), [args.out] * len(jobs)))
    payloads = [json.loads(Path(f).read_text()) for f in files]
    res = pd.DataFrame([r for p in payloads for r in p["results"]])
    diag = pd.DataFrame([r for p in payloads for r in p["diagnostics"]])
    timing = pd.DataFrame(
        [{"suite": p["suite"], "seed": p["seed"], **p["timing_s"]} for p in payloads]
    )
    res.to_csv(args.out / "results.csv", index=False)
    diag.to_csv(args.out / "diagnostics.csv", index=False)
    timing.to_csv(args.out / "timing.csv", index=False)
    md = [
        f"### 3D-Learning controlled study (commit {commit}, {env['date']})",
        "",
        f"`python benchmarks/study_threed.py {' '.join(sys.argv[1:])}` — {len(cfg['seeds'])} "
        f"seed(s), {cfg['forecaster']} forecaster, {cfg['train']['epochs']} epochs for every "
        "method, θ₀ = "
        + (
            f"the `{cfg['diffusion']['preset']}` preset"
            if cfg["diffusion"]["preset"]
            else "the preset of the suite's profile"
        )
        + ", gated fit capped at "
        + (
            f"{cfg['diffusion']['iterations']} iterations"
            if cfg["diffusion"]["iterations"]
            else "the preset's iterations"
        )
        + " (one per suite and seed, shared by every generative method; verdicts below), "
        "DFL warm start shared, "
        f"{cfg['test_rows']} rows per test set. "
        f"Cells: {METRIC}, mean ± 95 % CI over seeds; best per row in bold. "
        f"Wall time {(time.perf_counter() - start) / 60:.0f} min on {env['cpus']} CPUs "
        f"(load at start {env['load_average_at_start']}).",
        "",
    ]
    md += ["θ₀ quality gate per suite and seed:", ""]
    md += [
        f"- {p['suite']} seed {p['seed']}, `{p['reference_gate']['preset']}`: "
        f"{p['reference_gate']['status']} at "
        f"{p['reference_gate']['iterations']} iterations"
        + (
            f" (failed: {', '.join(p['reference_gate']['failed'])})"
            if p["reference_gate"]["failed"]
            else ""
        )
        for p in payloads
    ]
    md += [""]
    order = list(variants(cfg))
    for suite in cfg["suites"]:
        in_dist = next(p["in_distribution"] for p in payloads if p["suite"] == suite)
        table = suite_table(res[res["suite"] == suite], in_dist, order)
        md += [f"**{suite} suite**", "", table, ""]
    if not diag.empty:
        title = "**3D-Learning diagnostics (mean of the last three epochs)**"
        md += [title, "", diagnostics_table(diag, timing), ""]
    text = "\n".join(md)
    (args.out / "RESULTS_block.md").write_text(text + "\n")
    (args.out / "settings.json").write_text(
        json.dumps({**cfg, "machine": env, "commit": commit}, indent=2)
    )
    print(text)


if __name__ == "__main__":
    main()
