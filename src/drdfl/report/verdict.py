"""The report's verdict: per test set, the best untrained rule against the best trained
configuration and 3D-Learning, paired by seed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from drdfl.methods.labels import read_label, variant_label
from drdfl.report.outputs import RunOutputs
from drdfl.report.render import Block, Heading, Para, Table
from drdfl.report.tables import (
    BEST_ATOL,
    NA,
    SeedTable,
    cell,
    decimals,
    is_trained,
    is_untrained,
    main_suites,
    paired_difference,
    per_seed,
    plot_methods,
    seed_table,
)


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


__all__ = ["verdict"]
