"""What the report's sections share: the table of a :class:`~drdfl.report.tables.SeedTable`
with its marks (the best mean in bold, a trained method worse than the best untrained
rule, results resting on a reference model that failed its gate) and the figure writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drdfl._io import atomic_open
from drdfl.methods.labels import read_label
from drdfl.methods.registry import METHODS, SKYLINE
from drdfl.report import figures
from drdfl.report.outputs import RunOutputs
from drdfl.report.render import Figure, Table
from drdfl.report.tables import NA, SeedTable, best_untrained, cell, column_decimals, number

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


__all__ = [
    "GATE_FLAG",
    "UNTRAINED_MARK",
    "FigureWriter",
    "failed_gate_seeds",
    "flagged",
    "table_block",
]
