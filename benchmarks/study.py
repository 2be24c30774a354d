"""The controlled study: does learning beat not learning, and does 3D-Learning's adversary
add anything?

For each real suite, ``drdfl run`` itself trains every method of the comparison on every
seed with the same cuts, twice: with a plain forecaster and with one anchored on ETS (α
chosen by training regret), every model also scored with online recalibration. One θ₀
per suite and seed (the profile's preset, gated) serves every generative method of both
runs (the runner's cache). The headline table compares, per test set, the best untrained
rule, the best trained configuration and 3D-Learning, with paired differences by seed.

Cuts, the same for every method and chosen for the time budget (none on a test set): an
MLP forecaster, 6 epochs, Adam lr 1e-3, batch 256, no early stopping, 20,000 rows per
test set, 50 bootstrap draws per window interval, no skyline or corruption sets.

    python benchmarks/study.py                         # 3 seeds, both suites
    python benchmarks/study.py --seeds 0 --suites honest --epochs 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import RESULTS_DIR, data_dir, machine

METRIC = "normalized_regret"
#: the comparison (the runner adds threed-off, 3D-Learning with its adversary off)
METHODS = (
    "naive-last",
    "naive-mean",
    "naive-ets",
    "naive-scaled",
    "dfl",
    "augment-level",
    "revin-dfl",
    "diffusion-augment",
    "threed",
)
#: forecaster anchors, each one run of every method; the label suffix of its rows
ANCHORS = {"none": "", "ets": "[ets]"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default="honest,paper")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--test-rows", type=int, default=20000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "study")
    return ap.parse_args()


def overrides(args: argparse.Namespace, anchor: str) -> list[str]:
    """The ``--set`` options of one run: the study's cuts, the same for every method."""
    return [
        f"seeds={args.seeds}",
        f"methods={','.join(METHODS)}",
        "forecaster=mlp",
        f"anchor={anchor}",
        f"train.epochs={args.epochs}",
        "train.batch_size=256",
        "train.lr=1e-3",
        "train.patience=none",
        f"data.test_max_rows={args.test_rows}",
        "evaluation.online=true",
        "evaluation.skyline=false",
        "evaluation.corruptions=false",
        "evaluation.bootstrap=50",
        "report.mse_ablation=false",
        "report.adversary_ablation=true",
    ]


def run(suite: str, anchor: str, args: argparse.Namespace, cache: Path) -> Path:
    """``drdfl run`` of one suite and anchor into ``args.out/runs``; resumed if started."""
    out = args.out / "runs" / f"{suite}-{anchor}"
    command = [
        sys.executable,
        "-m",
        "drdfl",
        "run",
        "--profile",
        suite,
        "--out",
        str(out),
        "--jobs",
        str(args.jobs),
        "--no-progress",
    ]
    for item in overrides(args, anchor):
        command += ["--set", item]
    if (out / "config.toml").is_file():
        command.append("--resume")
    env = {"DRDFL_DATA_DIR": str(data_dir()), "DRDFL_CACHE_DIR": str(cache)}
    print("+", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, env={**os.environ, **env})
    return out


def relabel(label: str, suffix: str) -> str:
    """``dfl+online`` with suffix ``[ets]`` → ``dfl[ets]+online``; rules keep their name."""
    if label.startswith("naive-") or not suffix:
        return label
    base, plus, online = label.partition("+")
    return f"{base}{suffix}{plus}{online}"


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    values = values[np.isfinite(values)]
    if values.size < 2:
        return (float(values.mean()) if values.size else math.nan), math.nan
    half = stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def untrained(label: str) -> bool:
    return label.startswith("naive-") and "+" not in label


def trained(label: str) -> bool:
    return not label.startswith("naive-")


def headline(res: pd.DataFrame, suite: str, in_dist: str) -> tuple[list[str], dict[str, Any]]:
    """The headline rows of one suite and the goal's numbers."""
    r = res[(res["suite"] == suite) & (res["metric"] == METRIC)]
    wide = r.pivot_table(index=["method", "seed"], columns="test_set", values="value")
    tests = list(dict.fromkeys(r["test_set"]))
    means = wide.groupby(level="method").mean()
    rows, goal = [], {"sets": {}}
    for test in tests:
        col = means[test]
        rule = col[[m for m in col.index if untrained(m)]].idxmin()
        best = col[[m for m in col.index if trained(m)]].idxmin()
        ours = col[[m for m in col.index if m.startswith("threed") and "-off" not in m]].idxmin()
        cells = []
        for label in (best, ours):
            diff = wide.xs(label, level="method")[test] - wide.xs(rule, level="method")[test]
            mu, half = mean_ci(diff.to_numpy(dtype=float))
            cells.append(f"{mu:+.4f} ± {half:.4f}" + (" ✓" if mu + half < 0 else ""))
        b_mu, b_half = mean_ci(wide.xs(best, level="method")[test].to_numpy(dtype=float))
        o_mu, o_half = mean_ci(wide.xs(ours, level="method")[test].to_numpy(dtype=float))
        name = f"{test} (ID)" if test == in_dist else test
        rows.append(
            f"| {name} | {col[rule]:.4f} `{rule}` | {b_mu:.4f} ± {b_half:.4f} `{best}` | "
            f"{cells[0]} | {b_mu / col[rule]:.3f} | {o_mu:.4f} ± {o_half:.4f} `{ours}` | "
            f"{cells[1]} |"
        )
        goal["sets"][test] = {
            "untrained": float(col[rule]),
            "rule": rule,
            "trained": b_mu,
            "best": best,
            "ratio": b_mu / float(col[rule]),
        }
    ood = [t for t in tests if t != in_dist]
    worst = max(ood, key=lambda t: goal["sets"][t]["untrained"])
    id_best = float(means[in_dist][[m for m in means.index if trained(m)]].min())
    goal.update(
        worst=worst,
        every_ood_at_most_untrained=all(goal["sets"][t]["ratio"] <= 1 for t in ood),
        worst_at_most_0_9=goal["sets"][worst]["ratio"] <= 0.9,
        in_distribution_best_trained=id_best,
    )
    return rows, goal


def adversary_rows(res: pd.DataFrame, suite: str) -> list[str]:
    """3D-Learning minus its own run without the adversary, paired by seed, per test set."""
    r = res[(res["suite"] == suite) & (res["metric"] == METRIC)]
    wide = r.pivot_table(index=["method", "seed"], columns="test_set", values="value")
    methods = set(wide.index.get_level_values("method"))
    rows = []
    for suffix in ANCHORS.values():
        for online in ("", "+online"):
            on, off = f"threed{suffix}{online}", f"threed-off{suffix}{online}"
            if on not in methods or off not in methods:
                continue
            cells = []
            for test in dict.fromkeys(r["test_set"]):
                diff = wide.xs(on, level="method")[test] - wide.xs(off, level="method")[test]
                mu, half = mean_ci(diff.to_numpy(dtype=float))
                mark = " ✓" if mu + half < 0 else (" ✗" if mu - half > 0 else "")
                cells.append(f"{mu:+.4f} ± {half:.4f}{mark}")
            rows.append(f"| `{on}` − `{off}` | " + " | ".join(cells) + " |")
    return rows


def full_table(res: pd.DataFrame, suite: str, in_dist: str) -> list[str]:
    r = res[(res["suite"] == suite) & (res["metric"] == METRIC)]
    tests = list(dict.fromkeys(r["test_set"]))
    wide = r.pivot_table(index=["method", "seed"], columns="test_set", values="value")
    order = list(dict.fromkeys(r["method"]))
    head = "| method | " + " | ".join(f"{t} (ID)" if t == in_dist else t for t in tests) + " |"
    lines = [head, "|---" * (len(tests) + 1) + "|"]
    best = {t: wide[t].groupby(level="method").mean().min() for t in tests}
    for method in order:
        cells = []
        for t in tests:
            mu, half = mean_ci(wide.xs(method, level="method")[t].to_numpy(dtype=float))
            text = f"{mu:.4f}" + (f" ± {half:.4f}" if np.isfinite(half) and half > 0 else "")
            cells.append(f"**{text}**" if abs(mu - best[t]) < 1e-12 else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cache"
    env = machine(1)
    start = time.perf_counter()
    frames, in_dist, gates = [], {}, {}
    for suite in args.suites.split(","):
        for anchor, suffix in ANCHORS.items():
            out = run(suite, anchor, args, cache)
            res = pd.read_csv(out / "results.csv")
            res = res[res["suite"] == suite]
            if suffix:  # the rules are the same in both runs: keep the first run's
                res = res[~res["method"].str.startswith("naive-")]
            res = res.assign(method=res["method"].map(lambda m, s=suffix: relabel(m, s)))
            frames.append(res)
            meta = json.loads((out / "results.json").read_text(encoding="utf-8"))
            in_dist[suite] = meta["in_distribution"]
            for path in sorted((out / "reference").glob("s*/quality.json")):
                q = json.loads(path.read_text(encoding="utf-8"))
                gates[f"{suite} seed {path.parent.name[1:]}"] = q.get("status")
    minutes = (time.perf_counter() - start) / 60
    res = pd.concat(frames, ignore_index=True)
    res = res[res["metric"].isin([METRIC, "regret"])]  # the runs keep every metric
    res.to_csv(args.out / "results.csv", index=False)
    commit = env["commit"] + (" (uncommitted changes)" if env["dirty"] else "")
    md = [
        f"### The controlled study (commit `{commit}`, {env['date']})",
        "",
        f"`python benchmarks/study.py {' '.join(sys.argv[1:])}`: seeds {args.seeds}, "
        f"{minutes:.0f} min on {env['cpus']} CPUs. Normalized regret, mean ± 95 % CI over "
        "seeds. Δ: the configuration minus the best untrained rule, paired by seed (✓: the "
        "interval lies below 0); ratio: best trained / best untrained. `[ets]`: forecaster "
        "anchored on ETS; `+online`: online recalibration; the best per test set is chosen "
        "on that test set.",
        "",
        "θ₀ quality gate: " + ", ".join(f"{k}: {v}" for k, v in gates.items()) + ".",
        "",
    ]
    goals = {}
    for suite in args.suites.split(","):
        rows, goal = headline(res, suite, in_dist[suite])
        goals[suite] = goal
        md += [
            f"**{suite} suite**",
            "",
            "| test set | best untrained | best trained | Δ trained | ratio | 3D-Learning | "
            "Δ 3D-Learning |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"3D-Learning against its own run with the adversary off (`{suite}`; ✓ lower, ✗ "
            "higher, with intervals that exclude 0):",
            "",
            "| pair | "
            + " | ".join(dict.fromkeys(res.loc[res["suite"] == suite, "test_set"]))
            + " |",
            "|---" * (1 + res.loc[res["suite"] == suite, "test_set"].nunique()) + "|",
            *adversary_rows(res, suite),
            "",
        ]
    for suite in args.suites.split(","):
        md += [
            f"**Every configuration, {suite} suite**",
            "",
            *full_table(res, suite, in_dist[suite]),
            "",
        ]
    text = "\n".join(md)
    (args.out / "RESULTS_block.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                "commit": commit,
                "minutes": minutes,
                "machine": env,
                "goals": goals,
                "gates": gates,
                "command": sys.argv[1:],
            },
            indent=2,
            default=float,
        ),
        encoding="utf-8",
    )
    print(text)


if __name__ == "__main__":
    main()
