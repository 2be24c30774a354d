"""The report's main tables: normalized regret per suite (offline and online), mean regret
with its intervals over seeds and over test windows, and the skyline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drdfl.methods.labels import ONLINE_SUFFIX, read_label
from drdfl.methods.registry import SKYLINE
from drdfl.report.blocks import GATE_FLAG, UNTRAINED_MARK, flagged, table_block
from drdfl.report.outputs import RunOutputs
from drdfl.report.render import Block, Bullets, Heading, Para, Table, skipped
from drdfl.report.tables import (
    MAIN_METRIC,
    NA,
    column_decimals,
    is_untrained,
    main_suites,
    number,
    plot_methods,
    seed_table,
)

_TABLE_NOTE = (
    "Normalized regret (the paper's: per block of 64 windows, regret over the value of "
    "perfect decisions; lower is better). Cells: mean ± half-width of the 95 % Student-t "
    "interval **over seeds** (training randomness); **bold**: the lowest mean of the column "
    "when its whole interval lies below every other row's mean (a best its seeds separate "
    "from the rest; with one seed nothing is bold). `average` and "
    "`maximum` are over test sets per seed, then over seeds. (n=k): only k seeds have a "
    "number. n/a: no number, reason below. "
    f"{UNTRAINED_MARK}: worse than the best untrained rule of the column (`naive-*`, last row); "
    "a `+online` row is its method with online recalibration."
)


def main_tables(run: RunOutputs) -> list[Block]:
    """Normalized regret per main suite (Table I), offline and with online recalibration, with
    why a cell has no number."""
    blocks: list[Block] = []
    suites = main_suites(run.results)
    if not suites:
        return [Heading("Normalized regret"), skipped("Main table", "no main-suite results")]
    for suite in suites:
        in_suite = run.results[run.results["suite"] == suite]
        methods = plot_methods(in_suite)
        offline = [m for m in methods if not m.endswith(ONLINE_SUFFIX)]
        table = seed_table(run.results, suite, offline)
        blocks += [
            Heading(f"Normalized regret on the `{suite}` suite (Table I)"),
            Para(_TABLE_NOTE),
        ]
        blocks.append(table_block(table, run))
        online = [m for m in methods if m.endswith(ONLINE_SUFFIX)]
        if online:
            rules = [m for m in offline if is_untrained(m)]
            blocks += [
                Para(
                    "With **online recalibration** (`evaluation.online`): each test set walked "
                    "in time order, every decision corrected by the multiple of demand and "
                    "the blend with the method's anchor rule that would have cost least on "
                    "the slots already observed (discounted follow-the-leader). The untrained "
                    "rules are repeated as they are."
                ),
                table_block(seed_table(run.results, suite, [*rules, *online]), run),
            ]
        if table.seeds < 2:
            blocks.append(Para("One seed per method: means only, no interval over seeds."))
        dropped = _dropped_blocks(run, suite)
        if dropped:
            blocks.append(
                Para(
                    "Blocks left out of the normalized regret because their perfect decisions "
                    "earn nothing (optimal value ≤ 0): " + "; ".join(dropped) + "."
                )
            )
        reasons = _na_reasons(run, suite, methods)
        if reasons:
            blocks += [Para("Why a cell is n/a:"), Bullets(reasons)]
        if table.dropped:
            blocks.append(
                Para(
                    "No number at all on "
                    + ", ".join(f"`{t}`" for t in table.dropped)
                    + "; left out of `average` and `maximum`."
                )
            )
        blocks += regret_intervals(run, suite, methods)
    if any(read_label(m).budget is not None for m in run.results["method"].unique()):
        blocks.append(Para("The budget-sweep runs (`threed@ε`) are in the budget-sweep section."))
    return blocks


def _na_reasons(run: RunOutputs, suite: str, methods: Sequence[str]) -> list[str]:
    """Why each missing normalized regret of ``suite`` is missing, one line per cell."""
    r = run.results[(run.results["suite"] == suite) & run.results["method"].isin(methods)]
    wide = r.pivot(index=["method", "seed", "test_set"], columns="metric", values="value")
    if MAIN_METRIC not in wide:
        return []
    lines = []
    for (method, seed, test), row in wide[~np.isfinite(wide[MAIN_METRIC])].iterrows():
        bad = row.get("nonfinite_windows", np.nan)
        blocks = row.get("normalized_regret_blocks", np.nan)
        dropped = row.get("normalized_regret_dropped", np.nan)
        if np.isfinite(bad) and bad > 0:
            why = f"{int(bad)} window(s) with a non-finite regret or optimal cost"
        elif blocks == 0:
            why = "fewer windows than one block"
        elif np.isfinite(blocks) and dropped == blocks:
            why = "the perfect decisions earn nothing in every block (optimal value ≤ 0)"
        else:
            why = "not a number in results.csv"
        lines.append(f"`{method}` seed {seed} on `{test}`: {why}")
    return lines


def _dropped_blocks(run: RunOutputs, suite: str) -> list[str]:
    """Test sets where the normalized regret left blocks out, with how many."""
    r = run.results[run.results["suite"] == suite]
    parts = {
        metric: r[r["metric"] == metric].groupby("test_set", sort=False)["value"].max()
        for metric in ("normalized_regret_dropped", "normalized_regret_blocks")
    }
    dropped, blocks = parts["normalized_regret_dropped"], parts["normalized_regret_blocks"]
    return [
        f"`{t}`: {int(d)} of {int(blocks.get(t, np.nan))} blocks"
        for t, d in dropped.items()
        if np.isfinite(d) and d > 0
    ]


def regret_intervals(run: RunOutputs, suite: str, methods: Sequence[str]) -> list[Block]:
    """Mean regret per window with its interval over seeds and over test windows."""
    r = run.results[(run.results["suite"] == suite) & run.results["method"].isin(methods)]
    wide = r.pivot(index=["method", "seed", "test_set"], columns="metric", values="value")
    if not {"regret", "regret_ci_low", "regret_ci_high", "regret_ci_block"} <= set(wide.columns):
        return []
    wide = wide.assign(window_half=(wide["regret_ci_high"] - wide["regret_ci_low"]) / 2)
    seeds = seed_table(run.results, suite, methods, metric="regret", aggregates=False)
    windows = wide["window_half"].groupby(["method", "test_set"]).mean().unstack("test_set")
    windows = windows.reindex(index=list(methods), columns=seeds.mean.columns)
    mean, half = seeds.mean.to_numpy(dtype=float), seeds.half.to_numpy(dtype=float)
    w = windows.to_numpy(dtype=float)
    per_column = column_decimals(seeds.mean)
    best = seeds.best(digits=per_column).to_numpy()
    table = Table(["method", *map(str, seeds.mean.columns)], [])
    for i, method in enumerate(seeds.mean.index):
        cells = []
        for j in range(mean.shape[1]):
            digits = int(per_column.iloc[j])
            if not np.isfinite(mean[i, j]):
                cells.append(NA)
                continue
            over_seeds = f"±{number(half[i, j], digits)}" if np.isfinite(half[i, j]) else "–"
            over_windows = f"±{number(w[i, j], digits)}" if np.isfinite(w[i, j]) else "–"
            cells.append(f"{number(mean[i, j], digits)} ({over_seeds}; {over_windows})")
        label = str(method) + (f" {GATE_FLAG}" if flagged(run, str(method)) else "")
        table.rows.append([label, *cells])
        table.best |= {(i, 1 + int(j)) for j in np.flatnonzero(best[i])}
    low, high = (int(f(wide["regret_ci_block"].dropna())) for f in (np.min, np.max))
    span = f"{low}" if low == high else f"{low}–{high}"
    return [
        Para(
            f"Mean regret per window on `{suite}` (the task's cost units), with two 95 % "
            "half-widths in brackets: **(±seeds; ±windows)**. The first is the Student-t "
            "interval over seeds: how much the result moves with training randomness (– with "
            "one seed). The second is the interval of the mean over the test set's windows, "
            "from a moving-block bootstrap of the test set's windows (block length chosen by "
            f"Politis & White, {span} windows here): how much it moves with the finite, "
            "autocorrelated test data (mean over seeds)."
        ),
        table,
    ]


def skyline(run: RunOutputs) -> list[Block]:
    """Every method on the last 30 % of each test set next to DFL trained on its first 70 %."""
    blocks: list[Block] = [Heading("Skyline: DFL trained on part of each test set")]
    sky = run.results[run.results["suite"] == SKYLINE]
    if sky.empty:
        return [*blocks, skipped("Skyline", "no `skyline` results in results.csv")]
    blocks.append(
        Para(
            "Every method scored on the last 30 % of each test set, next to `skyline`: DFL "
            "trained on the first 70 % of that very set (its distinct windows, at most as many as "
            "the methods train on). It says what in-domain data of that amount buys a DFL "
            "forecaster, not a bound on what is recoverable: on a short test set (the 2023 "
            "traces hold under 700 windows of 5 s) it trains on a few hundred windows and "
            "loses to the methods trained on the whole training series, and where it does "
            "beat them the gap is regret that data from the new workload removes. Bold marks "
            "the best method (the skyline is a reference, not a competitor)."
        )
    )
    methods = [*plot_methods(sky), *([SKYLINE] if SKYLINE in set(sky["method"]) else [])]
    return [*blocks, table_block(seed_table(run.results, SKYLINE, methods), run)]


__all__ = ["main_tables", "regret_intervals", "skyline"]
