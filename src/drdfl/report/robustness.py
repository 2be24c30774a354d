"""The report's sections on robustness: regret under corruptions relative to DFL (the
paper's Fig. 2), 3D-Learning trained with DFL vs. MSE (Fig. 3) and the budget sweep
(Fig. 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from drdfl.data.shifts import PAPER_CORRUPTIONS
from drdfl.methods.labels import read_label
from drdfl.records import read_corruption_name
from drdfl.report import figures
from drdfl.report.blocks import FigureWriter, table_block
from drdfl.report.outputs import RunOutputs
from drdfl.report.render import Block, Heading, skipped
from drdfl.report.tables import (
    CORRUPTIONS,
    MAIN_METRIC,
    SeedTable,
    ci_frame,
    order_methods,
    plot_methods,
    seed_table,
)

#: the method every corruption result is divided by (paper Fig. 2)
REFERENCE = "dfl"


def corruptions(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    """Regret under the paper's corruptions relative to DFL's (Fig. 2) and against severity."""
    blocks: list[Block] = [Heading("Regret under corruptions, relative to DFL (Fig. 2)")]
    r = run.results
    values = r[(r["suite"] == CORRUPTIONS) & (r["metric"] == MAIN_METRIC)]
    parsed = {t: read_corruption_name(t) for t in dict.fromkeys(values["test_set"])}
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
    """3D-Learning trained with the decision-focused loss against with MSE (Fig. 3)."""
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
    """Average and maximum regret against 3D-Learning's robustness budget ε (Fig. 4)."""
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


__all__ = ["REFERENCE", "ablation", "budget", "corruptions"]
