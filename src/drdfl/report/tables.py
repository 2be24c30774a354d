"""Numbers of the report: means and intervals over seeds, laid out methods × test sets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from drdfl.evaluation.intervals import mean_ci
from drdfl.methods.labels import RunLabel, label_order, read_label
from drdfl.methods.registry import METHODS, SKYLINE

#: the headline metric of every table
MAIN_METRIC = "normalized_regret"
#: suites that are not a protocol's own test sets
CORRUPTIONS = "corruptions"
#: means closer than this to the column's best (absolute, or relative to the column's
#: largest magnitude, whichever is larger) tie with it; a column where every method ties
#: has no best (e.g. every regret ~1e-11 on a constant series)
BEST_ATOL, BEST_RTOL = 1e-9, 1e-6
#: how a missing number is shown
NA = "n/a"


def order_methods(methods: Iterable[str]) -> list[str]:
    """Run labels in table order: registry order with each method's variants after it,
    unknown labels next, the skyline last."""
    return sorted(set(methods), key=label_order)


def plot_methods(results: pd.DataFrame) -> list[str]:
    """Labels that get their own row, bar and line (not budget-sweep points, not skyline)."""
    return [
        m for m in order_methods(results["method"]) if read_label(m).budget is None and m != SKYLINE
    ]


def main_suites(results: pd.DataFrame) -> list[str]:
    """The protocols' own suites in ``results`` (neither corruptions nor skyline), in order."""
    return [s for s in dict.fromkeys(results["suite"]) if s not in (CORRUPTIONS, SKYLINE)]


def ci_frame(long: pd.DataFrame, keys: list[str], level: float = 0.95) -> pd.DataFrame:
    """Mean, CI half-width and count of finite ``value`` over seeds per ``keys``."""
    rows = []
    for key, values in long.groupby(keys, sort=False)["value"]:
        v = values.to_numpy(dtype=np.float64)
        mean, half = mean_ci(v, level)
        rows.append((*key, mean, half, int(np.isfinite(v).sum())))
    return pd.DataFrame(rows, columns=[*keys, "mean", "half", "n"])


@dataclass(frozen=True)
class SeedTable:
    """Mean over seeds, CI half-width and number of finite seeds: methods (rows) × columns."""

    mean: pd.DataFrame
    half: pd.DataFrame
    n: pd.DataFrame
    #: seeds each method ran (a cell with fewer finite values says so)
    seeds: int
    #: columns with no finite value at all, left out of the average and maximum
    dropped: tuple[str, ...] = ()

    def best(
        self, exclude: Sequence[str] = (SKYLINE,), digits: pd.Series | None = None
    ) -> pd.DataFrame:
        """True where a cell's mean is the lowest of its column among rows not in
        ``exclude`` *and* its whole interval over seeds lies below every other row's mean:
        a best its seeds separate from the rest. Nothing is best in a column where the
        lowest two tie (within the tie tolerance; with ``digits`` per column, as shown), where fewer
        than two rows have a number, or where the best has no interval (one seed)."""
        rows = ~self.mean.index.isin(list(exclude))
        mean = self.mean if digits is None else self.mean.round(digits)
        ranked, half = mean[rows], self.half[rows]
        mask = np.zeros(mean.shape, dtype=bool)
        for j in range(mean.shape[1]):
            m, h = ranked.iloc[:, j].to_numpy(float), half.iloc[:, j].to_numpy(float)
            have = np.isfinite(m)
            if have.sum() < 2:
                continue
            order = np.argsort(np.where(have, m, np.inf), kind="stable")
            first, others = order[0], order[1 : have.sum()]
            tol = max(BEST_ATOL, BEST_RTOL * float(np.nanmax(np.abs(m))))
            if m[others[0]] - m[first] <= tol or not np.isfinite(h[first]):
                continue
            if m[first] + h[first] < m[others[0]] - tol:
                mask[np.flatnonzero(rows)[first], j] = True
        return pd.DataFrame(mask, index=self.mean.index, columns=self.mean.columns)

    def long(self) -> pd.DataFrame:
        """``group, method, mean, half`` rows (group: the column), for plotting."""
        parts = [
            getattr(self, k).rename_axis(index="method", columns="group").stack().rename(k)
            for k in ("mean", "half")
        ]
        return pd.concat(parts, axis=1).reset_index()[["group", "method", "mean", "half"]]


def seed_table(
    results: pd.DataFrame,
    suite: str,
    methods: Sequence[str] | None = None,
    metric: str = MAIN_METRIC,
    aggregates: bool = True,
    level: float = 0.95,
) -> SeedTable:
    """``metric`` per method and test set of ``suite``, mean ± CI over seeds.

    With ``aggregates``, columns ``average`` and ``maximum`` are the mean and maximum over
    test sets taken per seed, then summarised over seeds; a seed with a missing value on
    any test set has neither. Test sets keep their order in ``results``.
    """
    in_suite = results[results["suite"] == suite]
    tests = list(dict.fromkeys(in_suite["test_set"]))
    values = in_suite[in_suite["metric"] == metric]
    methods = list(methods) if methods is not None else order_methods(values["method"])
    values = values[values["method"].isin(methods)]
    per_seed = values.pivot(index=["method", "seed"], columns="test_set", values="value")
    per_seed = per_seed.reindex(columns=tests)
    columns = list(tests)
    dropped: tuple[str, ...] = ()
    if aggregates:
        kept = [t for t in tests if per_seed[t].notna().any()]
        dropped = tuple(t for t in tests if t not in kept)
        per_seed["average"] = per_seed[kept].mean(axis=1, skipna=False)
        per_seed["maximum"] = per_seed[kept].max(axis=1, skipna=False)
        columns += ["average", "maximum"]
    long = per_seed.reset_index().melt(["method", "seed"], var_name="column", value_name="value")
    stats = ci_frame(long, ["method", "column"], level)

    def grid(name: str) -> pd.DataFrame:
        table = stats.pivot(index="method", columns="column", values=name)
        return table.reindex(index=methods, columns=columns).rename_axis(index=None, columns=None)

    seeds = int(values.groupby("method")["seed"].nunique().max()) if len(values) else 0
    return SeedTable(grid("mean"), grid("half"), grid("n"), seeds, dropped)


def is_untrained(label: str) -> bool:
    """Whether ``label`` is an untrained rule as it is (a ``naive-*`` method, no variant)."""
    read = read_label(label)
    spec = METHODS.get(read.method)
    return spec is not None and spec.untrained and read == RunLabel(read.method)


def is_trained(label: str) -> bool:
    """Whether ``label`` is a trained forecaster (any variant of a method that is not an
    untrained rule; not the skyline)."""
    spec = METHODS.get(read_label(label).method)
    return spec is not None and not spec.untrained


@dataclass(frozen=True)
class Baseline:
    """Per column of a :class:`SeedTable`: the best untrained rule and its mean."""

    label: pd.Series
    mean: pd.Series

    def loses(self, table: SeedTable, digits: pd.Series | None = None) -> pd.DataFrame:
        """True where a trained row's mean is worse than the column's best untrained rule
        (compared as shown, with ``digits`` per column)."""
        mean = table.mean if digits is None else table.mean.round(digits)
        bar = self.mean if digits is None else self.mean.to_frame().T.round(digits).iloc[0]
        trained = mean.index.map(is_trained).to_numpy(dtype=bool)
        worse = mean.gt(bar, axis=1) & bar.notna()
        return worse & pd.DataFrame(
            np.repeat(trained[:, None], mean.shape[1], axis=1), mean.index, mean.columns
        )


def best_untrained(table: SeedTable) -> Baseline | None:
    """The best untrained rule of every column of ``table`` (``None``: it has none)."""
    rows = [m for m in table.mean.index if is_untrained(str(m))]
    if not rows:
        return None
    means = table.mean.loc[rows]
    label = means.idxmin(axis=0, skipna=True).where(means.notna().any(axis=0))
    return Baseline(label, means.min(axis=0))


def per_seed(results: pd.DataFrame, suite: str, metric: str = MAIN_METRIC) -> pd.DataFrame:
    """``metric`` of ``suite`` as ``(method, seed) × test set`` (test sets in order)."""
    in_suite = results[(results["suite"] == suite) & (results["metric"] == metric)]
    tests = list(dict.fromkeys(results.loc[results["suite"] == suite, "test_set"]))
    wide = in_suite.pivot(index=["method", "seed"], columns="test_set", values="value")
    return wide.reindex(columns=tests)


def paired_difference(
    wide: pd.DataFrame, first: str, second: str, column: str, level: float = 0.95
) -> tuple[float, float]:
    """Mean and CI half-width over seeds of ``first − second`` on ``column``, paired by
    seed (the seeds both have)."""
    a, b = (wide.xs(m, level="method")[column] for m in (first, second))
    return mean_ci((a - b).dropna().to_numpy(dtype=np.float64), level)


def column_decimals(mean: pd.DataFrame) -> pd.Series:
    """Per column, the decimals that give its largest magnitude three significant digits
    (so a column of small numbers is not rounded to the scale of a large one)."""
    return pd.Series({c: decimals(mean[c].to_numpy(dtype=float)) for c in mean.columns})


def decimals(values: np.ndarray) -> int:
    """Decimals that give the largest magnitude in ``values`` three significant digits."""
    finite = np.abs(values[np.isfinite(values)])
    top = finite.max() if finite.size else 0.0
    if top < BEST_ATOL:
        return 3
    return int(np.clip(2 - np.floor(np.log10(top)), 0, 6))


def number(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals; a value within the tie tolerance of 0 shows as 0."""
    if not np.isfinite(value):
        return NA
    return f"{0.0 if abs(value) < BEST_ATOL else value:.{digits}f}"


def cell(mean: float, half: float, n: float, seeds: int, digits: int) -> str:
    """``mean ± half`` with ``(n=k)`` when fewer seeds than the run's have a number."""
    if not np.isfinite(mean):
        return NA
    text = number(mean, digits)
    if np.isfinite(half):
        text += f" ± {number(half, digits)}"
    if n < seeds:
        text += f" (n={int(n)})"
    return text
