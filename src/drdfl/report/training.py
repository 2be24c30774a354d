"""The report's sections on training: the untrained rules' constants, the curves and each
method's own diagnostics per epoch, and the wall time per stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from drdfl.methods.labels import history_columns
from drdfl.methods.registry import SHARED_HISTORY
from drdfl.report import figures
from drdfl.report.blocks import FigureWriter
from drdfl.report.outputs import RunOutputs
from drdfl.report.render import Block, Heading, Para, Table, skipped
from drdfl.report.tables import is_untrained, order_methods, plot_methods


def training(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    """The untrained rules' constants, the training and validation curves, each method's
    diagnostics."""
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


def wall_time(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    """Seconds per seed by method and stage."""
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


__all__ = ["training", "wall_time"]
