"""The report's sections: each turns a run's outputs into blocks (and figures).

A section whose inputs are absent says so in one line. Every number over seeds is a
mean with the half-width of its 95 % Student-t interval; a number that is not finite is
shown as ``n/a`` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drdfl._io import atomic_open
from drdfl.evaluation.suites import PAPER_CORRUPTIONS
from drdfl.methods.labels import ONLINE_SUFFIX, history_columns, read_label, variant_label
from drdfl.methods.registry import METHODS, SHARED_HISTORY, SKYLINE
from drdfl.report import figures
from drdfl.report.operate import decision_line
from drdfl.report.outputs import SAMPLE_SETS, RunOutputs, failed_units
from drdfl.report.render import Block, Bullets, Code, Figure, Heading, Para, Table, skipped
from drdfl.report.tables import (
    BEST_ATOL,
    CORRUPTIONS,
    MAIN_METRIC,
    NA,
    SeedTable,
    best_untrained,
    cell,
    ci_frame,
    column_decimals,
    decimals,
    is_trained,
    is_untrained,
    main_suites,
    number,
    order_methods,
    paired_difference,
    per_seed,
    plot_methods,
    seed_table,
)

#: the method every corruption result is divided by (paper Fig. 2)
REFERENCE = "dfl"
#: marks a result that rests on a reference model that failed its quality gate
GATE_FLAG = "⚠"
#: marks a trained method's cell that is worse than the column's best untrained rule
UNTRAINED_MARK = "†"


class FigureWriter:
    """Renders figures into ``OUT/figures`` (atomically) and remembers what it wrote."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: dict[str, Path] = {}
        self.png: dict[str, bytes] = {}

    def add(self, name: str, caption: str, make: Callable[..., Any], *args: Any) -> Figure:
        png = figures.png_bytes(make, *args)
        relative = f"figures/{name}.png"
        with atomic_open(self.out_dir / relative, "wb") as handle:
            handle.write(png)
        self.written[relative] = self.out_dir / relative
        self.png[relative] = png
        return Figure(relative, png, caption)


# ----------------------------------------------------------------------------- helpers


def failed_gate_seeds(run: RunOutputs) -> list[int]:
    """Seeds whose reference model failed its quality gate."""
    return [seed for seed, gate in run.gates.items() if gate.status == "failed"]


def flagged(run: RunOutputs, label: str) -> bool:
    """Whether ``label``'s results rest on a reference model that failed its gate."""
    spec = METHODS.get(read_label(label).method)
    if spec is None or not spec.needs_reference:
        return False
    seeds = set(run.results.loc[run.results["method"] == label, "seed"])
    return bool(seeds & set(failed_gate_seeds(run)))


def table_block(
    table: SeedTable, run: RunOutputs | None = None, exclude: Sequence[str] = (SKYLINE,)
) -> Table:
    """``table`` as text, methods as rows; the best mean of each column in bold; a
    trained method worse than the column's best untrained rule marked
    :data:`UNTRAINED_MARK`, and that rule in a last row."""
    mean, half = table.mean.to_numpy(dtype=float), table.half.to_numpy(dtype=float)
    n = table.n.fillna(0).to_numpy(dtype=float)
    per_column = column_decimals(table.mean)
    digits = per_column.to_numpy()
    best = table.best(exclude, per_column).to_numpy()
    baseline = best_untrained(table)
    loses = (
        baseline.loses(table, per_column).to_numpy()
        if baseline is not None
        else np.zeros(mean.shape, dtype=bool)
    )
    out = Table(["method", *map(str, table.mean.columns)], [])
    for i, method in enumerate(table.mean.index):
        label = str(method)
        if run is not None and flagged(run, label):
            label += f" {GATE_FLAG}"
        cells = [
            cell(mean[i, j], half[i, j], n[i, j], table.seeds, int(digits[j]))
            + (f" {UNTRAINED_MARK}" if loses[i, j] else "")
            for j in range(n.shape[1])
        ]
        out.rows.append([label, *cells])
        out.best |= {(i, 1 + int(j)) for j in np.flatnonzero(best[i])}
    if baseline is not None:
        out.rows.append(
            [
                "best untrained",
                *(
                    f"{number(v, int(d))} ({lab})" if isinstance(lab, str) else NA
                    for v, lab, d in zip(baseline.mean, baseline.label, digits, strict=True)
                ),
            ]
        )
    return out


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


# ----------------------------------------------------------------------------- sections


def overview(run: RunOutputs, title: str) -> list[Block]:
    r = run.results
    suites = main_suites(r)
    methods = plot_methods(r)
    budgets = sorted(e for m in r["method"].unique() if (e := read_label(m).budget) is not None)
    facts = [
        f"main suite: `{suites[0]}`" if suites else "no main suite",
        f"methods ({len(methods)}): " + ", ".join(f"`{m}`" for m in methods),
        "seeds: " + ", ".join(str(s) for s in sorted(r["seed"].unique())),
    ]
    if budgets:
        facts.append("3D-Learning budget sweep, ε: " + ", ".join(f"{e:g}" for e in budgets))
    decided = decision_line(run.meta.get("config"))
    if decided:
        facts.append(decided)
    profile = run.meta.get("profile")
    if profile:
        facts.insert(0, f"profile: `{profile}`")
    git = run.meta.get("code")
    if isinstance(git, dict) and git.get("commit"):
        dirty = " (uncommitted changes)" if git.get("dirty") else ""
        facts.append(f"code: commit `{str(git['commit'])[:12]}`{dirty}")
    failed = failed_units(run)
    if failed:
        facts.append("**failed or not run** (no results): " + ", ".join(f"`{f}`" for f in failed))
    # The data's own warnings (e.g. a constant training series) head the report.
    notes = run.meta.get("notes")
    for note in notes if isinstance(notes, list) else []:
        if str(note).startswith("Warning: "):
            facts.append(f"**warning**: {str(note).removeprefix('Warning: ')}")
    return [Heading(title, 1), Bullets(facts)]


def _best(table: SeedTable, rows: Sequence[str], column: str) -> str | None:
    means = table.mean.loc[list(rows), column].dropna()
    return str(means.idxmin()) if len(means) else None


def _with_ci(table: SeedTable, label: str | None, column: str, digits: int) -> str:
    if label is None:
        return NA
    j = list(table.mean.columns).index(column)
    i = list(table.mean.index).index(label)
    value = cell(
        table.mean.iloc[i, j], table.half.iloc[i, j], table.n.iloc[i, j], table.seeds, digits
    )
    return f"{value} ({label})"


def _relative(mean: float, half: float, bar: float) -> str:
    """A difference as a share of ``bar``: ``−12.3 % ± 4.5 %``."""
    if not np.isfinite(mean) or abs(bar) < BEST_ATOL:
        return NA
    text = f"{100 * mean / abs(bar):+.1f} %"
    return text + (f" ± {100 * half / abs(bar):.1f} %" if np.isfinite(half) else "")


def verdict(run: RunOutputs) -> list[Block]:
    """Per test set of each main suite: the best untrained rule, the best trained
    configuration and 3D-Learning, with the paired differences and whether they separate."""
    blocks: list[Block] = []
    for suite in main_suites(run.results):
        in_suite = run.results[run.results["suite"] == suite]
        methods = plot_methods(in_suite)
        untrained = [m for m in methods if is_untrained(m)]
        trained = [m for m in methods if is_trained(m)]
        if not untrained or not trained:
            continue
        table = seed_table(run.results, suite, methods, aggregates=False)
        wide = per_seed(run.results, suite)
        ours = [m for m in trained if read_label(m).offline == read_label("threed")]
        in_dist = run.meta.get("in_distribution")
        rows, wins, separate, tests = [], 0, 0, list(table.mean.columns)
        ood = [t for t in tests if t != in_dist]
        for test in tests:
            rule, best = _best(table, untrained, test), _best(table, trained, test)
            three = _best(table, ours, test) if ours else None
            diffs = []
            for label in (best, three):
                if label is None or rule is None:
                    diffs.append((NA, math.nan, False))
                    continue
                mean, half = paired_difference(wide, label, rule, test)
                sep = bool(np.isfinite(half) and abs(mean) > half + BEST_ATOL)
                bar = float(table.mean.loc[rule, test])
                diffs.append(
                    (_relative(mean, half, bar) + (" (separate)" if sep else ""), mean, sep)
                )
            ablation = NA
            off_run = variant_label("threed", "off")
            if three is not None and off_run in methods:
                off = three.replace("threed", off_run, 1)
                mean, half = paired_difference(wide, three, off, test)
                bar = float(table.mean.loc[off, test])
                sep = bool(np.isfinite(half) and abs(mean) > half + BEST_ATOL)
                ablation = _relative(mean, half, bar) + (" (separate)" if sep else "")
            if test in ood and np.isfinite(diffs[0][1]):
                wins += diffs[0][1] < 0
                separate += diffs[0][2] and diffs[0][1] < 0
            name = f"{test} (in distribution)" if test == in_dist else str(test)
            shown = [lab for lab in (rule, best, three) if lab is not None]
            digits = decimals(table.mean.loc[shown, test].to_numpy(dtype=float))
            rows.append(
                [
                    name,
                    _with_ci(table, rule, test, digits),
                    _with_ci(table, best, test, digits),
                    diffs[0][0],
                    _with_ci(table, three, test, digits),
                    diffs[1][0],
                    ablation,
                ]
            )
        where = "out-of-distribution test sets" if len(ood) < len(tests) else "test sets"
        blocks += [
            Heading(f"Verdict on the `{suite}` suite"),
            Para(
                f"The best trained configuration beats the best untrained rule on {wins} of "
                f"{len(ood)} {where} ({separate} with intervals that separate). Normalized "
                "regret, mean ± 95 % CI over seeds; Δ: the configuration minus the best "
                "untrained rule, paired by seed, as a share of that rule's regret (negative: "
                "learning helps), *separate* when "
                "its interval excludes 0; Δ adversary: 3D-Learning minus its own run with the "
                "adversary off (`threed-off`), paired by seed, as a share of the latter. "
                "Trained configurations include their `+online` rows "
                "(the untrained rules' own `+online` rows are not counted on either side)."
            ),
            Table(
                [
                    "test set",
                    "best untrained",
                    "best trained",
                    "Δ trained",
                    "3D-Learning",
                    "Δ 3D-Learning",
                    "Δ adversary",
                ],
                rows,
                text_columns=1,
            ),
        ]
    return blocks


def quality_gate(run: RunOutputs) -> list[Block]:
    blocks: list[Block] = [Heading("Reference model quality gate")]
    if not run.gates:
        return [*blocks, skipped("Quality gate", "no `reference/s<seed>/quality.json`")]
    table = Table(["seed", "status", "criterion", "value", "reference", "accepted", "pass"], [])
    for seed, gate in run.gates.items():
        status = gate.status + (f" ({gate.sampler})" if gate.sampler else "")
        if not gate.criteria:
            table.rows.append([str(seed), status, gate.reason or "", "", "", "", ""])
        for k, c in enumerate(gate.criteria):
            table.rows.append(
                [
                    str(seed) if k == 0 else "",
                    status if k == 0 else "",
                    c.name,
                    f"{c.value:.4g}",
                    f"{c.reference:.4g}",
                    f"{c.low:.4g} – {c.high:.4g}",
                    "yes" if c.passed else "no",
                ]
            )
            if not c.passed:
                table.best.add((len(table.rows) - 1, 6))
    table.text_columns = 3
    blocks.append(table)
    blocks.append(
        Para(
            "Reference: the statistic on the held-out part of the training series (for the "
            "discriminator, its accuracy at telling held-out from fitted real data). "
            "Accepted: the range the generated value must fall in."
        )
    )
    for seed, gate in run.gates.items():
        if gate.status == "unjudged":
            blocks.append(Para(f"Seed {seed}: not judged — {gate.reason or 'no reason given'}."))
    failed = failed_gate_seeds(run)
    if failed:
        dependent = [m for m in order_methods(run.results["method"]) if flagged(run, m)]
        names = ", ".join(f"`{m}`" for m in dependent) or "no method of this run"
        blocks.append(
            Para(
                f"**{GATE_FLAG} The reference model θ₀ failed its gate for seed(s) "
                f"{', '.join(map(str, failed))}.** Results that start from it ({names}) are "
                f"marked {GATE_FLAG} in every table: they rest on a θ₀ that is not a faithful "
                "model of the data."
            )
        )
    return blocks


def test_sets(run: RunOutputs) -> list[Block]:
    """Each test set of the main suites: windows, distance from training data, note."""
    suites = main_suites(run.results)
    if not suites:
        return []
    r = run.results[run.results["suite"].isin(suites)]
    notes = {
        str(t.get("name")): str(t.get("note") or "")
        for t in run.meta.get("test_sets") or []
        if isinstance(t, dict)
    }
    table = Table(["test set", "suite", "note", "windows", "W-dist."], [], text_columns=3)
    for (suite, test), part in r.groupby(["suite", "test_set"], sort=False):
        metric = part.groupby("metric")["value"].mean()
        w, windows = metric.get("w_distance", np.nan), metric.get("windows", np.nan)
        table.rows.append(
            [
                str(test),
                str(suite),
                notes.get(str(test), ""),
                f"{windows:.0f}" if np.isfinite(windows) else NA,
                f"{w:.3g}" if np.isfinite(w) else NA,
            ]
        )
    return [
        Heading("Test sets"),
        Para(
            "W-dist.: Wasserstein-1 distance between the test set's and the training data's "
            "marginal distributions (0: in distribution)."
        ),
        table,
    ]


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


def regret_intervals(run: RunOutputs, suite: str, methods: Sequence[str]) -> list[Block]:
    """Mean regret per window with its interval over seeds and over test windows."""
    r = run.results[(run.results["suite"] == suite) & run.results["method"].isin(methods)]
    wide = r.pivot(index=["method", "seed", "test_set"], columns="metric", values="value")
    if not {"regret", "regret_ci_low", "regret_ci_high"} <= set(wide.columns):
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
    if "regret_ci_block" in wide and wide["regret_ci_block"].notna().any():
        low, high = (int(f(wide["regret_ci_block"].dropna())) for f in (np.min, np.max))
        span = f"{low}" if low == high else f"{low}–{high}"
        how = (
            "a moving-block bootstrap of the test set's windows (block length chosen by "
            f"Politis & White, {span} windows here)"
        )
    else:
        how = (
            "the run's window interval is an i.i.d. bootstrap (results written before the "
            "block bootstrap): it understates the uncertainty of overlapping windows"
        )
    return [
        Para(
            f"Mean regret per window on `{suite}` (the task's cost units), with two 95 % "
            "half-widths in brackets: **(±seeds; ±windows)**. The first is the Student-t "
            "interval over seeds: how much the result moves with training randomness (– with "
            "one seed). The second is the interval of the mean over the test set's windows, "
            f"from {how}: how much it moves with the finite, autocorrelated test data (mean "
            "over seeds)."
        ),
        table,
    ]


def skyline(run: RunOutputs) -> list[Block]:
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


def _parse_corruption(name: str) -> tuple[str, float] | None:
    kind, _, level = name.rpartition(" ")
    try:
        return (kind, float(level)) if kind else None
    except ValueError:
        return None


def corruptions(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    blocks: list[Block] = [Heading("Regret under corruptions, relative to DFL (Fig. 2)")]
    r = run.results
    values = r[(r["suite"] == CORRUPTIONS) & (r["metric"] == MAIN_METRIC)]
    parsed = {t: _parse_corruption(t) for t in dict.fromkeys(values["test_set"])}
    parsed = {t: p for t, p in parsed.items() if p is not None}
    if not parsed:
        return [*blocks, skipped("Corruptions", "no `corruptions` results in results.csv")]
    methods = plot_methods(values)
    kinds = list(PAPER_CORRUPTIONS)
    paper_level = sorted(
        (
            t
            for t, (kind, level) in parsed.items()
            if kind in kinds and np.isclose(level, PAPER_CORRUPTIONS[kind], rtol=1e-3)
        ),
        key=lambda t: kinds.index(parsed[t][0]),
    )
    if REFERENCE not in methods:
        blocks.append(skipped("Relative regret", f"no `{REFERENCE}` results to divide by"))
    elif not paper_level:
        blocks.append(skipped("Relative regret", "no corruption at the paper's levels"))
    else:
        at_level = values[values["test_set"].isin(paper_level)]
        per_seed = at_level.pivot(index=["seed", "test_set"], columns="method", values="value")
        ratio = per_seed.div(per_seed[REFERENCE], axis=0).drop(columns=REFERENCE)
        long = ratio.reset_index().melt(["seed", "test_set"], var_name="method")
        stats = ci_frame(long, ["method", "test_set"])
        shown = [m for m in methods if m != REFERENCE]
        grid = SeedTable(
            *(
                stats.pivot(index="method", columns="test_set", values=c)
                .reindex(index=shown, columns=paper_level)
                .rename_axis(index=None, columns=None)
                for c in ("mean", "half", "n")
            ),
            seeds=int(at_level["seed"].nunique()),
        )
        blocks.append(
            figs.add(
                "corruption_vs_dfl",
                "Normalized regret divided by DFL's (same seed), mean ± 95 % CI over seeds, at "
                "the paper's corruption levels; below the dashed line beats DFL.",
                figures.grouped_bars,
                grid.long(),
                shown,
                "normalized regret / DFL's",
                "Corrupted in-distribution test set",
                (1.0, "DFL"),
            )
        )
        blocks.append(table_block(grid, run))
    by_kind = pd.Series([p[0] for p in parsed.values()]).value_counts()
    swept = set(by_kind[by_kind > 1].index)
    if not swept:
        return [*blocks, skipped("Severity sweep", "one level per corruption only")]
    rows = [t for t, (kind, _) in parsed.items() if kind in swept]
    table = seed_table(
        values[values["test_set"].isin(rows)], CORRUPTIONS, methods, aggregates=False
    )
    long = table.long()
    long["kind"] = [parsed[g][0] for g in long["group"]]
    long["level"] = [parsed[g][1] for g in long["group"]]
    blocks.append(
        figs.add(
            "corruption_severity",
            "Normalized regret against corruption level (mean over seeds).",
            figures.severity_lines,
            long,
            methods,
            "normalized regret",
        )
    )
    return blocks


def ablation(run: RunOutputs, figs: FigureWriter, suite: str | None) -> list[Block]:
    blocks: list[Block] = [Heading("3D-Learning trained with DFL vs. MSE (Fig. 3)")]
    present = set(run.results["method"])
    if suite is None or not {"threed", "threed-mse"} <= present:
        return [*blocks, skipped("Ablation", "needs both `threed` and `threed-mse` results")]
    methods = [m for m in ("threed", "threed-mse", "dfl", "mse") if m in present]
    table = seed_table(run.results, suite, methods)
    blocks.append(
        figs.add(
            "threed_dfl_vs_mse",
            f"Normalized regret per `{suite}` test set (mean ± 95 % CI over seeds): 3D-Learning "
            "with the decision-focused loss (`threed`) and with MSE (`threed-mse`), plain DFL "
            "and MSE for reference.",
            figures.grouped_bars,
            table.long(),
            methods,
            "normalized regret",
            "3D-Learning: decision-focused vs. MSE training",
        )
    )
    return blocks


def budget(run: RunOutputs, figs: FigureWriter, suite: str | None) -> list[Block]:
    blocks: list[Block] = [Heading("Robustness budget ε (Fig. 4)")]
    sweep = {m: read_label(m).budget for m in order_methods(run.results["method"])}
    sweep = {m: e for m, e in sweep.items() if e is not None}
    if suite is None or not sweep:
        return [*blocks, skipped("Budget sweep", "not enabled in this run (no `threed@ε` results)")]
    table = seed_table(run.results, suite, list(sweep))
    rows = table.long()
    rows = rows[rows["group"].isin(["average", "maximum"])].rename(columns={"group": "stat"})
    rows["eps"] = rows["method"].map(sweep)
    reference = None
    if REFERENCE in set(run.results["method"]):
        dfl = seed_table(run.results, suite, [REFERENCE]).mean.loc[REFERENCE]
        reference = pd.DataFrame(
            {"stat": ["average", "maximum"], "mean": dfl.loc[["average", "maximum"]].to_numpy()}
        )
    blocks.append(
        figs.add(
            "budget_sweep",
            f"Average and maximum normalized regret over the `{suite}` test sets against the "
            "budget ε (mean ± 95 % CI over seeds); dashed: DFL.",
            figures.budget_sweep,
            rows,
            reference,
        )
    )
    columns = ["average", "maximum"]
    block = table_block(
        SeedTable(table.mean[columns], table.half[columns], table.n[columns], table.seeds),
        run,
        exclude=list(sweep),
    )
    blocks.append(block)
    return blocks


#: epochs at the end of training whose adversary diagnostics are averaged (one epoch's
#: crop discriminator judges only a few dozen segments)
ADVERSARY_EPOCHS = 3


def adversary(run: RunOutputs) -> list[Block]:
    """Per 3D-Learning run: its budget, the path KL, the regret raise and whether the
    adversarial set stayed realistic (the crop discriminator no better at telling it from
    real data than θ₀'s tails, within the quality gate's margin)."""
    blocks: list[Block] = [Heading("3D-Learning's adversary: budget, regret raise, realism")]
    h = run.histories
    labels = []
    if h is not None and {"disc_acc", "ref_disc_acc"} <= set(h.columns):
        judged = set(h.loc[h["disc_acc"].notna(), "method"])
        labels = [
            m
            for m in order_methods(h["method"])
            if read_label(m).method == "threed" and m in judged
        ]
    if not labels:
        return [*blocks, skipped("Adversary", "no 3D-Learning diagnostics in `histories.csv`")]
    from drdfl.diffusion.verdict import GateConfig

    margin = GateConfig().disc_margin
    columns = ["kl_budget", "path_kl", "regret_raise", "disc_acc", "ref_disc_acc", "floor_frac"]
    table = Table(["run", *columns, "realistic"], [])
    unreal = []
    for label in labels:
        rows = h[h["method"] == label].sort_values("epoch")
        last = rows.groupby("seed").tail(ADVERSARY_EPOCHS)
        means = {c: float(last[c].mean()) if c in last else float("nan") for c in columns}
        gap = means["disc_acc"] - means["ref_disc_acc"]
        realistic = bool(gap <= margin)
        if not realistic:
            unreal.append(label)
            table.best.add((len(table.rows), len(columns) + 1))
        cells = [number(means[c], 3) for c in columns]
        table.rows.append([label, *cells, "yes" if realistic else "no"])
    table.text_columns = 1
    blocks.append(
        Para(
            f"Means over the last {ADVERSARY_EPOCHS} epochs and the seeds. `path_kl` and "
            "`kl_budget` in nats per segment slot; `regret_raise`: the forecaster's regret on "
            "the adversarial tails over θ₀'s tails from the same states and noise; "
            "`disc_acc`/`ref_disc_acc`: a crop discriminator telling the adversarial "
            "(θ₀'s) tails from real training segments (0.5: alike), judged on the epochs "
            "that ran it (by default once, on the final adversary). Realistic: `disc_acc` at "
            f"most `ref_disc_acc` + {margin:g}, the quality gate's margin."
        )
    )
    blocks.append(table)
    if unreal:
        names = ", ".join(f"`{m}`" for m in unreal)
        blocks.append(
            Para(
                f"**The adversarial set of {names} is not realistic**: the discriminator tells "
                "it from real data better than θ₀'s samples, so its worst case lies off the "
                "data; a smaller `method_params.threed.budget` keeps it closer."
            )
        )
    return blocks


def _segment_stats(samples: dict[str, np.ndarray]) -> Table:
    """Count, length, marginal moments and lag-1 autocorrelation of each sample set."""
    table = Table(["segments", "n", "length", "mean", "std", "min", "max", "lag-1 autocorr."], [])
    for name, x in samples.items():
        centred = x - x.mean(axis=1, keepdims=True)
        denom = (centred**2).sum(axis=1)
        num = (centred[:, 1:] * centred[:, :-1]).sum(axis=1)
        valid = denom > 0
        ac = float((num[valid] / denom[valid]).mean()) if valid.any() else float("nan")
        stats = [x.mean(), x.std(), x.min(), x.max(), ac]
        table.rows.append([name, str(x.shape[0]), str(x.shape[1]), *(number(v, 3) for v in stats)])
    return table


def samples(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    blocks: list[Block] = [Heading("Generated, real and worst-case segments")]
    s = run.samples
    if not s:
        return [*blocks, skipped("Segments", "no `samples.npz`")]
    blocks.append(Bullets([f"`{k}`: {SAMPLE_SETS[k]}" for k in s]))
    if "real" in s and "generated" in s:
        blocks.append(
            figs.add(
                "generated_vs_real",
                "Real normalized training segments and segments of the reference diffusion "
                "model; right: marginal distributions of all values.",
                figures.generated_vs_real,
                s["real"],
                s["generated"],
            )
        )
    else:
        blocks.append(skipped("Generated vs. real", "`samples.npz` lacks `real` or `generated`"))
    if "worst_case" in s:
        blocks.append(
            figs.add(
                "worst_case",
                "The worst-case segments 3D-Learning found in its last epoch, over the 5–95 % "
                "band of real segments; right: marginal distributions"
                + (" (with the same draw, adversary off)." if "worst_case_off" in s else "."),
                figures.worst_case_segments,
                s.get("real"),
                s["worst_case"],
                *(
                    (s["worst_case_off"], "adversary off")
                    if "worst_case_off" in s
                    else (s.get("generated"), "generated")
                ),
            )
        )
    else:
        blocks.append(skipped("Worst-case segments", "`samples.npz` has no `worst_case`"))
    blocks.append(_segment_stats(s))
    blocks.append(_below_training_minimum(s))
    return blocks


def _below_training_minimum(samples: dict[str, np.ndarray]) -> Para:
    """Why generated values dip below 0 (the training minimum), with each set's share."""
    shares = ", ".join(f"`{k}` {100 * float((x < 0).mean()):.1f} %" for k, x in samples.items())
    return Para(
        "Values are in the training scaler's units: 0 is the lowest training slot, not zero "
        "demand, which lies below it wherever the training minimum is above zero. A value "
        "below 0 is demand lower than any training slot, which held-out data has too; the "
        "quality gate admits such values in the share the held-out part of the training "
        "series has them (`below_min`), and no segment goes below zero demand (samples are "
        f"clamped there). Share of values below 0: {shares}."
    )


def _curves(h: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean over seeds per method and epoch, with ``_lo``/``_hi`` (range over seeds)."""
    grouped = h.groupby(["method", "epoch"])[list(columns)]
    lo, hi = grouped.min().add_suffix("_lo"), grouped.max().add_suffix("_hi")
    return pd.concat([grouped.mean(), lo, hi], axis=1).reset_index()


def _rule_constants(h: pd.DataFrame, rules: Sequence[str]) -> Table:
    """The untrained rules' constants and regrets (means over seeds): nothing to plot."""
    columns = [c for c in ("train_loss", "val_regret") if c in h]
    for rule in rules:
        columns += [c for c in history_columns(rule) if c in h and c not in columns]
    means = h[h["method"].isin(rules)].groupby("method")[columns].mean()
    names = {"train_loss": "training regret", "val_regret": "validation regret"}
    table = Table(["untrained rule", *(names.get(c, c) for c in columns)], [])
    for rule in rules:
        values = means.loc[rule] if rule in means.index else pd.Series(dtype=float)
        table.rows.append(
            [
                rule,
                *(
                    f"{values[c]:.4g}" if np.isfinite(values.get(c, np.nan)) else "–"
                    for c in columns
                ),
            ]
        )
    return table


def training(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    blocks: list[Block] = [Heading("Training curves and each method's diagnostics")]
    h = run.histories
    if h is None or h.empty:
        return [*blocks, skipped("Training curves", "no `histories.csv`")]
    rules = [m for m in plot_methods(h) if is_untrained(m)]
    if rules:
        blocks += [
            Para(
                "The untrained rules train nothing; what they chose on the training windows "
                "(mean over seeds), and their regret there:"
            ),
            _rule_constants(h, rules),
        ]
    methods = [m for m in plot_methods(h) if m not in rules]
    h = h[h["method"].isin(methods)]
    shared = [c for c in ("val_regret", "train_loss") if c in SHARED_HISTORY and c in h]
    curves = _curves(h, shared) if shared else pd.DataFrame()
    if "val_regret" in curves and curves["val_regret"].notna().any():
        blocks.append(
            figs.add(
                "validation_regret",
                f"`val_regret`: {SHARED_HISTORY['val_regret']} (mean over seeds).",
                figures.curves_by_method,
                curves,
                methods,
                "val_regret",
                "validation regret",
                "Validation regret",
            )
        )
    if "train_loss" in curves and curves["train_loss"].notna().any():
        shown = [
            m for m in methods if curves.loc[curves["method"] == m, "train_loss"].notna().any()
        ]
        blocks.append(
            figs.add(
                "train_loss",
                f"`train_loss`: {SHARED_HISTORY['train_loss']} (mean over seeds, band: range "
                "over seeds); each method minimises its own loss, so the scales differ.",
                figures.small_multiples,
                curves,
                shown,
                "train_loss",
                "method",
                "training loss",
            )
        )
    for method in methods:
        declared = history_columns(method)
        if not declared:
            continue
        rows = h[h["method"] == method]
        written = [c for c in declared if c in rows and rows[c].notna().any()]
        absent = [c for c in declared if c not in written]
        if not written:
            blocks.append(
                skipped(f"Diagnostics of `{method}`", "its history holds none of its columns")
            )
            continue
        per = _curves(rows, written)
        long = pd.concat(
            [
                per[["epoch"]].assign(
                    quantity=c, value=per[c], value_lo=per[f"{c}_lo"], value_hi=per[f"{c}_hi"]
                )
                for c in written
            ]
        )
        name = "diagnostics_" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in method)
        blocks.append(
            figs.add(
                name,
                f"`{method}` per epoch (mean over seeds, band: range): "
                + "; ".join(f"`{c}`: {declared[c]}" for c in written)
                + "."
                + (
                    " Not written this run: " + ", ".join(f"`{c}`" for c in absent) + "."
                    if absent
                    else ""
                ),
                figures.small_multiples,
                long,
                written,
                "value",
                "quantity",
                "value",
                figures.line_color(method),
                f"{method}: its own diagnostics",
            )
        )
    return blocks


def wall_time(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    blocks: list[Block] = [Heading("Wall time")]
    t = run.timings
    if t is None or t.empty:
        return [*blocks, skipped("Wall time", "no `timings.csv`")]
    stages = list(dict.fromkeys(t["stage"]))
    per_seed = t.groupby(["method", "seed", "stage"])["seconds"].sum()
    seconds = per_seed.groupby(["method", "stage"]).mean().unstack("stage")
    seconds = seconds.reindex(index=order_methods(seconds.index), columns=stages)
    seeds = t.groupby("method")["seed"].nunique()
    blocks.append(
        figs.add(
            "wall_time",
            "Seconds per seed, mean over seeds, stacked by stage.",
            figures.wall_time,
            seconds,
        )
    )
    table = Table(["method", *stages, "total", "seeds"], [])
    for method, row in seconds.iterrows():
        cells = [f"{v:.1f}" if np.isfinite(v) else "–" for v in row.to_numpy(dtype=float)]
        table.rows.append([str(method), *cells, f"{np.nansum(row):.1f}", str(seeds[method])])
    blocks.append(Para("Seconds per seed (mean over seeds):"))
    blocks.append(table)
    return blocks


def notes(run: RunOutputs) -> list[Block]:
    blocks: list[Block] = [Heading("Notes and configuration")]
    items = run.meta.get("notes")
    if isinstance(items, list) and items:
        blocks.append(Bullets([str(n) for n in items]))
    versions = run.meta.get("versions")
    if isinstance(versions, dict) and versions:
        blocks.append(Para("Versions: " + ", ".join(f"{k} `{v}`" for k, v in versions.items())))
    if run.config_text:
        blocks += [Para("Resolved configuration (`config.toml`):"), Code(run.config_text, "toml")]
    if len(blocks) == 1:
        blocks.append(skipped("Notes", "no `results.json` notes and no `config.toml`"))
    return blocks
