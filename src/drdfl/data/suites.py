"""Protocols: the training data of a protocol and the named test sets it is judged on.

* ``synthetic`` — the built-in workload: train on chat-like demand, test on its held-out
  end, on code-like demand and on a chat→code shift (the default, needs no files).
* ``paper`` — the paper's protocol on the files its code shipped (see :mod:`drdfl.data.paper`).
* ``honest`` — a leak-free protocol on real traces: chronological 70/15/15 split of the
  2024 conversation series with gaps, one train-fitted scaler for every test set, and
  out-of-distribution tests binned from the raw traces by drdfl itself.
* ``corruptions`` — a suite's in-distribution test series under Gaussian, Perlin and cutout
  corruption at the paper's Fig. 2 levels and a severity sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drdfl.data.series import Series, check_scalable
from drdfl.data.shifts import PAPER_CORRUPTIONS, apply_corruption, wasserstein_marginal
from drdfl.data.training import TrainingData
from drdfl.data.windows import Scaler, Windows, make_windows, split_series
from drdfl.errors import ConfigError
from drdfl.records import corruption_name

SUITES = ("synthetic", "paper", "honest")


@dataclass
class TestSet:
    """Windows of one test series, normalized for the forecaster.

    ``scaler`` maps the forecaster's outputs and the windows' targets back to real units;
    ``series`` is the raw test series (real units) the windows were cut from.
    """

    name: str
    windows: Windows
    scaler: Scaler
    series: Series
    w_distance: float = float("nan")
    note: str = ""
    #: inputs normalized by the series' own extremes (the paper's protocol), not by ``scaler``
    own_extremes: bool = False


@dataclass
class Suite:
    """A protocol: what is trained on and what it is judged on."""

    name: str
    data: TrainingData
    tests: list[TestSet]
    train_series: Series
    in_distribution: str
    notes: list[str] = field(default_factory=list)
    #: the data settings it was built from (stored with every model trained on it)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        warning = self.degeneracy_warning()
        if warning is not None and warning not in self.notes:
            self.notes.append(f"Warning: {warning}.")

    def degeneracy_warning(self) -> str | None:
        """Why nothing can be learnt from the training series (constant, all zero), or None."""
        why = self.train_series.degeneracy()
        if why is None:
            return None
        source = self.train_series.meta.get("source", f"the {self.name} suite's data")
        return (
            f"training series {self.train_series.name} ({source}): {why}; a forecaster "
            "learns nothing from it and its regret says nothing"
        )

    def test(self, name: str) -> TestSet:
        for t in self.tests:
            if t.name == name:
                return t
        raise ConfigError(
            f"suite {self.name!r} has no test set {name!r}; it has: "
            + ", ".join(t.name for t in self.tests)
        )


def make_test_set(
    name: str,
    series: Series,
    scaler: Scaler,
    train_values: np.ndarray,
    window: int,
    horizon: int,
    note: str = "",
    lead: int = 0,
) -> TestSet:
    """Cut ``series`` into windows (targets ``lead`` slots after the inputs) normalized
    with the training ``scaler``."""
    return TestSet(
        name=name,
        windows=make_windows(
            scaler.transform(series.values), window, horizon, name=name, lead=lead
        ),
        scaler=scaler,
        series=series,
        w_distance=wasserstein_marginal(train_values, series.values),
        note=note,
    )


def chronological_suite(
    name: str,
    series: Series,
    window: int = 7,
    horizon: int = 1,
    ood: list[tuple[str, Series, str]] | None = None,
    notes: list[str] | None = None,
    lead: int = 0,
) -> Suite:
    """A suite from any series: chronological 70/15/15 train/validation/test split with
    gaps of one window, a scaler fitted on the training part, and the out-of-distribution
    test series ``ood`` as ``(name, series, note)`` (real units, normalized with it).
    Targets start ``lead`` slots after each window's inputs."""
    gap = window + lead + horizon - 1
    train, val, test = split_series(series, (0.7, 0.15, 0.15), gap=gap)
    check_scalable(train)
    scaler = Scaler.fit(train.values)

    def cut(part: Series, name: str) -> Windows:
        return make_windows(scaler.transform(part.values), window, horizon, name=name, lead=lead)

    data = TrainingData(
        train=cut(train, "train"),
        val=cut(val, "val"),
        scaler=scaler,
        series=scaler.transform(train.values),
        interval_s=series.interval_s,
    )
    id_name = f"{series.name} (test)"
    tests = [
        make_test_set(id_name, test, scaler, train.values, window, horizon, "held-out end", lead)
    ]
    tests += [
        make_test_set(n, s, scaler, train.values, window, horizon, note, lead)
        for n, s, note in ood or []
    ]
    return Suite(name, data, tests, train, id_name, list(notes or []))


def synthetic_suite(
    days: float = 2.0,
    window: int = 7,
    horizon: int = 1,
    interval_s: float = 5.0,
    seed: int = 0,
    lead: int = 0,
) -> Suite:
    """Train on synthetic chat demand; test on its end, on code demand and on a shift."""
    from drdfl.data.synthetic import generate

    chat = generate(days, "chat", seed, interval_s)
    ood_days = min(days, 1.0)
    code = generate(ood_days, "code", seed + 1, interval_s)
    shift = generate(ood_days, "shift", seed + 2, interval_s)
    ood = [
        ("code", code, "code-like regime (fresh seed)"),
        ("chat→code", shift, "chat then code, switching halfway"),
    ]
    chat = Series(chat.values, "chat", chat.interval_s, chat.unit, chat.start)
    return chronological_suite("synthetic", chat, window, horizon, ood, [], lead)


def honest_suite(
    data_dir: str | Path | None = None,
    window: int = 7,
    horizon: int = 1,
    max_rows: int = 100_000,
    lead: int = 0,
) -> Suite:
    """The leak-free protocol on real traces (see the module docstring)."""
    from drdfl.data.loading import load_series

    conv24 = load_series("azure-2024-conv-5s", data_dir)
    code24 = load_series("azure-2024-code-5s", data_dir)
    conv23 = load_series("azure-2023-conv", data_dir, interval="5s")
    code23 = load_series("azure-2023-code", data_dir, interval="5s")

    def cut(s: Series, name: str) -> Series:
        return Series(s.values[:max_rows], name, s.interval_s, s.unit, s.start)

    def mix(a: Series, b: Series, name: str) -> Series:
        """Equal halves: the start of ``a`` then the start of ``b``."""
        half = min(len(a), len(b), max_rows) // 2
        return Series(np.concatenate((a.values[:half], b.values[:half])), name, a.interval_s)

    # 24V's mixes use its held-out test part: the start of the week is training data.
    conv24_test = split_series(conv24, (0.7, 0.15, 0.15), gap=window + lead + horizon - 1)[2]
    ood = [
        ("24D", cut(code24, "24D"), "2024 coding trace, 5 s"),
        ("23V", cut(conv23, "23V"), "2023 conversation trace binned at 5 s by drdfl"),
        ("23D", cut(code23, "23D"), "2023 coding trace binned at 5 s by drdfl"),
        ("23D24D", mix(code23, code24, "23D24D"), "equal halves of 23D and 24D"),
        ("23D24V", mix(code23, conv24_test, "23D24V"), "equal halves of 23D and 24V (test)"),
        ("24D24V", mix(code24, conv24_test, "24D24V"), "equal halves of 24D and 24V (test)"),
    ]
    notes = [
        "Trained on the first 70 % of the 2024 conversation trace (3.5 days at 5 s); "
        "validation and test are the next 15 % each, separated by gaps of one window.",
        "One scaler, fitted on the training part, normalizes every test set.",
    ]
    conv = Series(conv24.values, "24V", conv24.interval_s, conv24.unit, conv24.start, conv24.meta)
    return chronological_suite("honest", conv, window, horizon, ood, notes, lead)


PAPER_TESTS = {
    "24V": ("azure-2024-conv-5s", "2024 conversation trace, 5 s"),
    "23D": ("paper-2023-code", "2023 coding, 233 bins tiled 96 times"),
    "24D": ("azure-2024-code-5s", "2024 coding trace, 5 s"),
    "23D24D": ("paper-23code-24code", "2023 coding tiled, then 2024 coding"),
    "23D24V": ("paper-23code-24conv", "2023 coding tiled, then 2024 conversation"),
    "24D24V": ("paper-24code-24conv", "2024 coding, then 2024 conversation"),
}


def paper_suite(
    data_dir: str | Path | None = None,
    window: int = 7,
    horizon: int = 1,
    max_rows: int = 100_000,
    lead: int = 0,
) -> Suite:
    """The paper's protocol on the files its code shipped (see :mod:`drdfl.data.paper`).

    Windows, batches and normalization follow the paper's code exactly, so the
    ``normalized_regret`` metric is the number its Table I reports. The last full batch
    of the training rows is held out for validation (the paper had none); the rest trains.
    """
    from drdfl.data.loading import load_series
    from drdfl.data.paper import (
        BATCH_SIZE,
        paper_leakage,
        paper_normalize,
        paper_rows,
        paper_split,
        paper_test_windows,
        paper_windows,
    )

    raw = load_series("paper-2023-conv", data_dir)
    check_scalable(raw)
    u, train_range = paper_normalize(raw.values, raw.name)
    rows = paper_rows(u)
    train_rows, test_rows = paper_split(rows)
    n_fit = (train_rows.shape[0] // BATCH_SIZE - 1) * BATCH_SIZE
    fit_rows, val_rows = train_rows[:n_fit], train_rows[n_fit:]
    train = paper_windows(fit_rows, window, horizon, name="train", lead=lead)
    val = paper_windows(val_rows, window, horizon, name="val", first_row=n_fit, lead=lead)
    test = paper_windows(
        test_rows, window, horizon, name="23V(Test)", first_row=len(train_rows), lead=lead
    )
    data = TrainingData(train, val, train_range, fit_rows.reshape(-1), raw.interval_s)
    length = rows.shape[1]
    test_raw = raw.values[len(train_rows) * length : len(rows) * length]
    leak = paper_leakage(paper_windows(train_rows, window, horizon, name="train", lead=lead), test)
    tests = [
        TestSet(
            "23V(Test)",
            test,
            train_range,
            Series(test_raw, "23V(Test)", raw.interval_s, raw.unit),
            wasserstein_marginal(raw.values, test_raw),
            f"last 30 % of the training file's rows; {leak:.0%} of its windows repeat "
            "training windows (the file is one hour tiled 30 times)",
            own_extremes=True,
        )
    ]
    for name, (dataset, note) in PAPER_TESTS.items():
        series = load_series(dataset, data_dir)
        check_scalable(series, "test file")  # normalized by its own extremes, as in the paper
        tests.append(
            TestSet(
                name,
                paper_test_windows(
                    series.values, name, window, horizon, row_limit=max_rows, lead=lead
                ),
                train_range,
                Series(series.values[:max_rows], name, series.interval_s, series.unit),
                wasserstein_marginal(raw.values, series.values),
                note,
                own_extremes=True,
            )
        )
    notes = [
        "Paper protocol: each file min-max normalized by its own extremes, rows of 28 slots, "
        "windows inside rows, forecasts and targets mapped to tokens with the training "
        "file's range, normalized regret as a mean over batches of 64 of "
        "mean(regret) / -mean(optimal loss).",
        f"23V(Test) overlaps the training data: {leak:.0%} of its windows are copies of "
        "training windows (the 2023 conversation file is one hour tiled 30 times), so it "
        "is not an in-distribution generalisation test.",
        f"W-distances use whole files; test files are truncated to {max_rows:,} rows for "
        "evaluation as in the paper's code.",
    ]
    train_series = Series(raw.values, raw.name, raw.interval_s, raw.unit, meta=raw.meta)
    return Suite("paper", data, tests, train_series, "23V(Test)", notes)


def _paper_corruptions(
    suite: Suite, severities: list[float] | tuple[float, ...], seed: int
) -> list[TestSet]:
    """The paper's own test-time noise on its in-distribution test rows."""
    from drdfl.data.paper import paper_corrupt, paper_rows, paper_windows

    base = suite.test(suite.in_distribution)
    window, horizon, lead = base.windows.window, base.windows.horizon, base.windows.lead
    u = base.scaler.transform(base.series.values)
    tests = []
    for kind, level in PAPER_CORRUPTIONS.items():
        for k, sev in enumerate(sorted({1.0, *severities})):
            noisy = paper_corrupt(u, kind, level * sev, seed + k)  # type: ignore[arg-type]
            name = corruption_name(kind, level * sev)
            windows = paper_windows(paper_rows(noisy), window, horizon, name=name, lead=lead)
            series = Series(base.scaler.inverse_transform(noisy), name, base.series.interval_s)
            tests.append(
                TestSet(
                    name,
                    windows,
                    base.scaler,
                    series,
                    wasserstein_marginal(suite.train_series.values, series.values),
                    f"paper noise, severity {sev:g}",
                    own_extremes=True,
                )
            )
    return tests


def corruption_tests(
    suite: Suite, severities: list[float] | tuple[float, ...] = (), seed: int = 0
) -> list[TestSet]:
    """The in-distribution test series under the paper's corruptions, times each severity.

    A severity multiplies the paper's level (1.0 gives Gaussian 10 %, Perlin 5 %, cutout
    0.5 %); every corrupted copy keeps the suite's scaler.
    """
    if suite.name == "paper":
        return _paper_corruptions(suite, severities, seed)
    base = suite.test(suite.in_distribution)
    train = suite.train_series.values
    window, horizon, lead = base.windows.window, base.windows.horizon, base.windows.lead
    tests = []
    for kind, level in PAPER_CORRUPTIONS.items():
        for k, sev in enumerate(sorted({1.0, *severities})):
            values = apply_corruption(kind, base.series.values, level * sev, seed + k)
            name = corruption_name(kind, level * sev)
            series = Series(values, name, base.series.interval_s, base.series.unit)
            tests.append(
                make_test_set(
                    name, series, base.scaler, train, window, horizon, f"severity {sev:g}", lead
                )
            )
    return tests
