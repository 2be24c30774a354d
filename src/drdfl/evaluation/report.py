"""The report of a finished run, built only from the files in its output directory.

Inputs (``OUT`` is the run's output directory; only ``results.csv`` is required):

* ``results.csv`` — tidy ``method, seed, suite, test_set, metric, value``;
* ``histories.csv`` — ``method, seed, epoch`` plus per-epoch columns (``train_loss``,
  ``val_regret``, and 3D-Learning's ``alpha``, ``J``, ``clip_frac``, ``adv_regret``);
* ``timings.csv`` — ``method, seed, stage, seconds``;
* ``samples.npz`` — ``real``, ``generated`` and ``worst_case`` segments ``[n, L]``;
* ``config.toml`` and ``results.json`` (``notes``, ``versions``, ``profile``).

:func:`build_report` writes ``report.md``, a self-contained ``report.html`` (figures
inlined as base64 PNG) and ``figures/*.png``; a section whose inputs are absent says so in
one line. Every number over seeds is a mean with the half-width of its 95 % Student-t
interval (:func:`~drdfl.evaluation.metrics.mean_ci`).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drdfl._io import atomic_open, write_text
from drdfl.errors import DataError
from drdfl.evaluation import figures
from drdfl.evaluation.metrics import mean_ci
from drdfl.evaluation.suites import PAPER_CORRUPTIONS
from drdfl.methods.registry import history_columns, label_order, sweep_budget

#: The headline metric of every table.
MAIN_METRIC = "normalized_regret"
#: Suites that are not a protocol's own test sets.
CORRUPTIONS, SKYLINE = "corruptions", "skyline"
#: The method every corruption result is divided by (paper Fig. 2).
REFERENCE = "dfl"
#: Per-epoch columns of 3D-Learning's history shown in their own figure.
THREED_DYNAMICS = tuple(history_columns("threed"))
_RESULTS = ("method", "seed", "suite", "test_set", "metric", "value")
_HISTORIES = ("method", "seed", "epoch")
_TIMINGS = ("method", "seed", "stage", "seconds")
_SAMPLES = ("real", "generated", "worst_case")


# ----------------------------------------------------------------------------- inputs


@dataclass
class RunOutputs:
    """What a run left in its output directory (``None`` where a file is absent)."""

    out_dir: Path
    results: pd.DataFrame
    histories: pd.DataFrame | None = None
    timings: pd.DataFrame | None = None
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    config_text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _read_csv(path: Path, required: Sequence[str], text: Sequence[str]) -> pd.DataFrame:
    """``path`` with ``required`` columns; ``text`` columns as strings, the rest numeric."""
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(text, str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}"
        )
    for column in frame.columns.difference(list(text)):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}, line {row + 2}: column {column!r} is {frame[column].iloc[row]!r}, "
                "expected a number"
            )
        frame[column] = values
    if "seed" in frame and frame["seed"].isna().any():
        row = int(np.flatnonzero(frame["seed"].isna().to_numpy())[0])
        raise DataError(f"{path}, line {row + 2}: seed is empty, expected an integer")
    return frame


def _read_samples(path: Path) -> dict[str, np.ndarray]:
    samples = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in _SAMPLES:
            if key not in archive.files:
                continue
            values = np.asarray(archive[key], dtype=np.float64)
            # [n, L, 1] (a channel axis) and [L] (one segment) are the same data.
            values = values.reshape(values.shape[0], -1) if values.ndim == 3 else values
            values = values[None, :] if values.ndim == 1 else values
            if values.ndim != 2 or values.shape[0] == 0:
                raise DataError(f"{path}: {key!r} has shape {archive[key].shape}, expected [n, L]")
            samples[key] = values
    return samples


def load_outputs(out_dir: str | Path) -> RunOutputs:
    """Read and check a run's output directory (``results.csv`` must exist)."""
    out = Path(out_dir)
    path = out / "results.csv"
    if not path.is_file():
        raise DataError(f"{path}: not found; a report needs the results of a finished run")
    results = _read_csv(path, _RESULTS, ("method", "suite", "test_set", "metric"))
    if results.empty:
        raise DataError(f"{path}: no rows")
    keys = list(_RESULTS[:-1])
    duplicated = results.duplicated(keys)
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(
            f"{path}, line {row + 2}: a second value for "
            + ", ".join(f"{k}={results[k].iloc[row]}" for k in keys)
        )
    run = RunOutputs(out, results.astype({"seed": np.int64}))
    if (out / "histories.csv").is_file():
        run.histories = _read_csv(out / "histories.csv", _HISTORIES, ("method",))
    if (out / "timings.csv").is_file():
        run.timings = _read_csv(out / "timings.csv", _TIMINGS, ("method", "stage"))
    if (out / "samples.npz").is_file():
        run.samples = _read_samples(out / "samples.npz")
    if (out / "config.toml").is_file():
        run.config_text = (out / "config.toml").read_text(encoding="utf-8")
    if (out / "results.json").is_file():
        try:
            meta = json.loads((out / "results.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{out / 'results.json'}: not valid JSON ({exc})") from None
        run.meta = meta if isinstance(meta, dict) else {}
    return run


# ----------------------------------------------------------------------------- numbers


def order_methods(methods: Iterable[str]) -> list[str]:
    """``methods`` (run labels) in table order: registry order with each method's variants
    after it, unknown labels next, the skyline last."""
    return sorted(set(methods), key=label_order)


def main_suites(results: pd.DataFrame) -> list[str]:
    """The protocols' own suites in ``results`` (neither corruptions nor skyline), in order."""
    return [s for s in dict.fromkeys(results["suite"]) if s not in (CORRUPTIONS, SKYLINE)]


def _ci(long: pd.DataFrame, keys: list[str], level: float) -> pd.DataFrame:
    """Mean, CI half-width and count of finite ``value`` over seeds per ``keys``."""
    rows = []
    for key, values in long.groupby(keys, sort=False)["value"]:
        v = values.to_numpy(dtype=np.float64)
        mean, half = mean_ci(v, level)
        rows.append((*key, mean, half, int(np.isfinite(v).sum())))
    return pd.DataFrame(rows, columns=[*keys, "mean", "half", "n"])


@dataclass(frozen=True)
class SeedTable:
    """Mean over seeds, CI half-width and number of seeds per row (test set) and method."""

    mean: pd.DataFrame
    half: pd.DataFrame
    n: pd.DataFrame
    w_distance: pd.Series
    #: test sets with no finite value at all, left out of the average and maximum rows
    dropped: tuple[str, ...] = ()

    def best(self, exclude: Sequence[str] = (SKYLINE,)) -> pd.DataFrame:
        """True where a cell has the lowest mean of its row among methods not in ``exclude``."""
        ranked = self.mean.drop(columns=[c for c in exclude if c in self.mean])
        lowest = ranked.min(axis=1)
        return self.mean.eq(lowest, axis=0) & ~self.mean.columns.isin(list(exclude))

    def long(self) -> pd.DataFrame:
        """``group, method, mean, half`` rows, for plotting."""
        parts = [
            getattr(self, k).rename_axis(index="group", columns="method").stack().rename(k)
            for k in ("mean", "half")
        ]
        return pd.concat(parts, axis=1).reset_index()


def seed_table(
    results: pd.DataFrame,
    suite: str,
    methods: Sequence[str] | None = None,
    metric: str = MAIN_METRIC,
    aggregates: bool = True,
    level: float = 0.95,
) -> SeedTable:
    """``metric`` per test set of ``suite`` and method, mean ± CI over seeds.

    With ``aggregates``, rows ``average`` and ``maximum`` are the mean and maximum over
    test sets taken per seed, then summarised over seeds; a seed missing a test set has no
    average or maximum. Test sets keep their order in ``results``.
    """
    in_suite = results[results["suite"] == suite]
    tests = list(dict.fromkeys(in_suite["test_set"]))
    values = in_suite[in_suite["metric"] == metric]
    methods = list(methods) if methods is not None else order_methods(values["method"])
    values = values[values["method"].isin(methods)]
    per_seed = values.pivot(index=["method", "seed"], columns="test_set", values="value")
    per_seed = per_seed.reindex(columns=tests)
    rows = list(tests)
    dropped: tuple[str, ...] = ()
    if aggregates:
        kept = [t for t in tests if per_seed[t].notna().any()]
        dropped = tuple(t for t in tests if t not in kept)
        per_seed["average"] = per_seed[kept].mean(axis=1, skipna=False)
        per_seed["maximum"] = per_seed[kept].max(axis=1, skipna=False)
        rows += ["average", "maximum"]
    long = per_seed.reset_index().melt(["method", "seed"], var_name="row", value_name="value")
    stats = _ci(long, ["row", "method"], level)

    def grid(column: str) -> pd.DataFrame:
        table = stats.pivot(index="row", columns="method", values=column)
        return table.reindex(index=rows, columns=methods).rename_axis(index=None, columns=None)

    w = in_suite[in_suite["metric"] == "w_distance"].groupby("test_set")["value"].mean()
    return SeedTable(grid("mean"), grid("half"), grid("n"), w.reindex(rows), dropped)


def _decimals(values: np.ndarray) -> int:
    """Decimals that give the largest magnitude in ``values`` three significant digits."""
    finite = np.abs(values[np.isfinite(values)])
    top = finite.max() if finite.size else 0.0
    if top == 0:
        return 3
    return int(np.clip(2 - np.floor(np.log10(top)), 0, 6))


def _cell(mean: float, half: float, n: float, n_full: float, decimals: int) -> str:
    if not np.isfinite(mean):
        return "–"
    text = f"{mean:.{decimals}f}"
    if np.isfinite(half):
        text += f" ± {half:.{decimals}f}"
    if n < n_full:
        text += f" (n={int(n)})"
    return text


# ----------------------------------------------------------------------------- document


@dataclass
class _Heading:
    text: str
    level: int = 2


@dataclass
class _Para:
    text: str  # markdown-lite: **bold** and `code`


@dataclass
class _Bullets:
    items: list[str]


@dataclass
class _Code:
    text: str
    language: str = ""


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    text_columns: int = 1  # leading columns aligned left


@dataclass
class _Figure:
    path: str  # relative to the output directory
    png: bytes
    caption: str


_Block = _Heading | _Para | _Bullets | _Code | _Table | _Figure


def _skip(what: str, why: str) -> _Para:
    return _Para(f"*{what} skipped: {why}.*")


def _table_block(table: SeedTable, exclude: Sequence[str] = (SKYLINE,)) -> _Table:
    """The rows of ``table`` as text; the best mean of each row in bold."""
    methods = list(table.mean.columns)
    show_w = bool(table.w_distance.notna().any())
    mean, half = table.mean.to_numpy(dtype=float), table.half.to_numpy(dtype=float)
    n = table.n.fillna(0).to_numpy(dtype=float)
    d = _decimals(mean)
    n_full = float(n.max(initial=0.0))
    best = table.best(exclude).to_numpy()
    lead = ["test set", "W-dist."] if show_w else ["test set"]
    out = _Table([*lead, *methods], [], text_columns=1)
    for i, row in enumerate(table.mean.index):
        cells = [str(row)]
        if show_w:
            w = table.w_distance.iloc[i]
            cells.append(f"{w:.3g}" if np.isfinite(w) else "")
        cells += [_cell(mean[i, j], half[i, j], n[i, j], n_full, d) for j in range(len(methods))]
        out.bold |= {(i, len(lead) + int(j)) for j in np.flatnonzero(best[i])}
        out.rows.append(cells)
    return out


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"\*(.+?)\*", r"<em>\1</em>", escaped)


def _markdown(blocks: list[_Block]) -> str:
    parts = []
    for block in blocks:
        match block:
            case _Heading(text, level):
                parts.append(f"{'#' * level} {text}")
            case _Para(text):
                parts.append(text)
            case _Bullets(items):
                parts.append("\n".join(f"- {item}" for item in items))
            case _Code(text, language):
                parts.append(f"```{language}\n{text.rstrip()}\n```")
            case _Table(header, rows, bold, lead):
                esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
                for i, j in bold:
                    esc[i + 1][j] = f"**{esc[i + 1][j]}**"
                align = [":---" if j < lead else "---:" for j in range(len(header))]
                lines = ["| " + " | ".join(r) + " |" for r in [esc[0], align, *esc[1:]]]
                parts.append("\n".join(lines))
            case _Figure(path, _, caption):
                parts.append(f"![{Path(path).stem}]({path})\n\n*{caption}*")
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
  max-width: 1200px; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #0072B2; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .88rem; }
th, td { border: 1px solid #d0d0d0; padding: .3rem .55rem; white-space: nowrap; }
th { background: #f0f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #e6f0fa; }
tbody tr:nth-child(even) td:not(.best) { background: #fafafa; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-style: italic; color: #444; font-size: .9rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .85rem; }
code { background: #f6f8fa; padding: 0 .2rem; }
"""


def _html(blocks: list[_Block], title: str) -> str:
    parts = []
    for block in blocks:
        match block:
            case _Heading(text, level):
                parts.append(f"<h{level}>{_inline_html(text)}</h{level}>")
            case _Para(text):
                parts.append(f"<p>{_inline_html(text)}</p>")
            case _Bullets(items):
                lis = "".join(f"<li>{_inline_html(i)}</li>" for i in items)
                parts.append(f"<ul>{lis}</ul>")
            case _Code(text, _):
                parts.append(f"<pre><code>{html.escape(text.rstrip())}</code></pre>")
            case _Table(header, rows, bold, lead):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                body = []
                for i, row in enumerate(rows):
                    cells = []
                    for j, cell in enumerate(row):
                        classes = ["num"] if j >= lead else []
                        text = html.escape(cell)
                        if (i, j) in bold:
                            classes.append("best")
                            text = f"<strong>{text}</strong>"
                        attr = f' class="{" ".join(classes)}"' if classes else ""
                        cells.append(f"<td{attr}>{text}</td>")
                    body.append("<tr>" + "".join(cells) + "</tr>")
                parts.append(
                    f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                    f"<tbody>{''.join(body)}</tbody></table></div>"
                )
            case _Figure(path, png, caption):
                data = base64.b64encode(png).decode("ascii")
                parts.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{Path(path).stem}"><figcaption>{_inline_html(caption)}'
                    "</figcaption></figure>"
                )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


class _Figures:
    """Renders figures into ``OUT/figures`` (atomically) and remembers what it wrote."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: dict[str, Path] = {}

    def add(self, name: str, caption: str, make: Callable[..., Any], *args: Any) -> _Figure:
        png = figures.png_bytes(make, *args)
        relative = f"figures/{name}.png"
        with atomic_open(self.out_dir / relative, "wb") as handle:
            handle.write(png)
        self.written[relative] = self.out_dir / relative
        return _Figure(relative, png, caption)


# ----------------------------------------------------------------------------- sections


_TABLE_NOTE = (
    "Normalized regret (paper-style; lower is better): mean ± half-width of the 95 % "
    "Student-t interval over seeds; **bold**: lowest mean of the row. `average` and "
    "`maximum` are taken over the test sets per seed, then over seeds. (n=k): fewer seeds "
    "than the others. W-dist.: Wasserstein-1 distance between the test set's and the "
    "training data's marginal distributions."
)


def _plot_methods(results: pd.DataFrame) -> list[str]:
    """Methods that get their own bars and lines (not budget-sweep entries, not skyline)."""
    names = results["method"]
    return [m for m in order_methods(names) if sweep_budget(m) is None and m != SKYLINE]


def _main_tables(run: RunOutputs) -> list[_Block]:
    blocks: list[_Block] = []
    suites = main_suites(run.results)
    if not suites:
        return [_Heading("Normalized regret (Table I)"), _skip("Table I", "no main-suite results")]
    sweep = [m for m in run.results["method"].unique() if sweep_budget(m) is not None]
    for suite in suites:
        in_suite = run.results[run.results["suite"] == suite]
        table = seed_table(run.results, suite, _plot_methods(in_suite))
        blocks += [
            _Heading(f"Normalized regret on the `{suite}` suite (Table I)"),
            _Para(_TABLE_NOTE),
        ]
        blocks.append(_table_block(table))
        if np.nanmax(table.n.to_numpy(dtype=float), initial=0.0) < 2:
            blocks.append(_Para("One seed per method: means only, no confidence intervals."))
        if table.dropped:
            blocks.append(
                _Para(
                    "No finite value (too few windows?) on "
                    + ", ".join(f"`{t}`" for t in table.dropped)
                    + "; left out of `average` and `maximum`."
                )
            )
    if sweep:
        blocks.append(_Para("The budget-sweep runs (`threed@ε`) are in the budget-sweep section."))
    return blocks


def _skyline(run: RunOutputs) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Skyline: how much out-of-distribution regret is recoverable")]
    sky = run.results[run.results["suite"] == SKYLINE]
    if sky.empty:
        return [*blocks, _skip("Skyline", "no `skyline` results in results.csv")]
    blocks.append(
        _Para(
            "Every method scored on the last 30 % of each test set, next to `skyline`: DFL "
            "trained on the first 70 % of that very set. The gap between a method and the "
            "skyline is regret that better training data could remove; bold marks the best "
            "real method (the skyline is a reference, not a competitor)."
        )
    )
    methods = [*_plot_methods(sky), *([SKYLINE] if SKYLINE in set(sky["method"]) else [])]
    return [*blocks, _table_block(seed_table(run.results, SKYLINE, methods))]


def _parse_corruption(name: str) -> tuple[str, float] | None:
    kind, _, level = name.rpartition(" ")
    try:
        return (kind, float(level)) if kind else None
    except ValueError:
        return None


def _corruptions(run: RunOutputs, figs: _Figures) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Regret under corruptions, relative to DFL (Fig. 2)")]
    values = run.results[
        (run.results["suite"] == CORRUPTIONS) & (run.results["metric"] == MAIN_METRIC)
    ]
    parsed = {t: _parse_corruption(t) for t in dict.fromkeys(values["test_set"])}
    parsed = {t: p for t, p in parsed.items() if p is not None}
    if not parsed:
        return [*blocks, _skip("Corruptions", "no `corruptions` results in results.csv")]
    methods = _plot_methods(values)
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
        blocks.append(_skip("Relative regret", f"no `{REFERENCE}` results to divide by"))
    elif not paper_level:
        blocks.append(_skip("Relative regret", "no corruption at the paper's levels"))
    else:
        at_level = values[values["test_set"].isin(paper_level)]
        per_seed = at_level.pivot(index=["seed", "test_set"], columns="method", values="value")
        ratio = per_seed.div(per_seed[REFERENCE], axis=0).drop(columns=REFERENCE)
        long = ratio.reset_index().melt(["seed", "test_set"], var_name="method")
        stats = _ci(long, ["test_set", "method"], 0.95).rename(columns={"test_set": "group"})
        stats = stats.sort_values("group", key=lambda g: g.map(paper_level.index), kind="stable")
        shown = [m for m in methods if m != REFERENCE]
        blocks.append(
            figs.add(
                "corruption_vs_dfl",
                "Normalized regret divided by DFL's (same seed), mean ± 95 % CI over seeds, at "
                "the paper's corruption levels; below the dashed line beats DFL.",
                figures.grouped_bars,
                stats,
                shown,
                "normalized regret / DFL's",
                "Corrupted in-distribution test set",
                (1.0, "DFL"),
            )
        )
        grid = SeedTable(
            *(
                stats.pivot(index="group", columns="method", values=c)
                .reindex(index=paper_level, columns=shown)
                .rename_axis(index=None, columns=None)
                for c in ("mean", "half", "n")
            ),
            w_distance=pd.Series(np.nan, index=paper_level),
        )
        block = _table_block(grid)
        block.header[0] = "corruption"
        blocks.append(block)
    by_kind = pd.Series([p[0] for p in parsed.values()]).value_counts()
    swept = set(by_kind[by_kind > 1].index)
    if not swept:
        return [*blocks, _skip("Severity sweep", "one level per corruption only")]
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


def _ablation(run: RunOutputs, figs: _Figures, suite: str | None) -> list[_Block]:
    blocks: list[_Block] = [_Heading("3D-Learning trained with DFL vs. MSE (Fig. 3)")]
    present = set(run.results["method"])
    if suite is None or not {"threed", "threed-mse"} <= present:
        return [*blocks, _skip("Ablation", "needs both `threed` and `threed-mse` results")]
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


def _budget(run: RunOutputs, figs: _Figures, suite: str | None) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Robustness budget ε (Fig. 4)")]
    sweep = {m: sweep_budget(m) for m in order_methods(run.results["method"])}
    sweep = {m: e for m, e in sweep.items() if e is not None}
    if suite is None or not sweep:
        return [*blocks, _skip("Budget sweep", "not enabled in this run (no `threed@ε` results)")]
    table = seed_table(run.results, suite, list(sweep))
    rows = table.long()
    rows = rows[rows["group"].isin(["average", "maximum"])].rename(columns={"group": "stat"})
    rows["eps"] = rows["method"].map(sweep)
    reference = None
    if REFERENCE in set(run.results["method"]):
        dfl = seed_table(run.results, suite, [REFERENCE]).mean[REFERENCE]
        reference = pd.DataFrame(
            {"stat": ["average", "maximum"], "mean": dfl.loc[["average", "maximum"]]}
        )
    blocks.append(
        figs.add(
            "budget_sweep",
            f"Average and maximum normalized regret over the `{suite}` test sets against the "
            "Wasserstein budget ε (mean ± 95 % CI over seeds); dashed: DFL.",
            figures.budget_sweep,
            rows,
            reference,
        )
    )
    block = _table_block(
        SeedTable(
            table.mean.loc[["average", "maximum"]].T,
            table.half.loc[["average", "maximum"]].T,
            table.n.loc[["average", "maximum"]].T,
            pd.Series(np.nan, index=list(sweep)),
        ),
        exclude=(),
    )
    block.header[0] = "method"
    block.bold = set()
    blocks.append(block)
    return blocks


def _segment_stats(samples: dict[str, np.ndarray]) -> _Table:
    """Count, length, marginal moments and lag-1 autocorrelation of each sample set."""
    table = _Table(["segments", "n", "length", "mean", "std", "min", "max", "lag-1 autocorr."], [])
    for name, x in samples.items():
        centred = x - x.mean(axis=1, keepdims=True)
        denom = (centred**2).sum(axis=1)
        num = (centred[:, 1:] * centred[:, :-1]).sum(axis=1)
        valid = denom > 0
        ac = float((num[valid] / denom[valid]).mean()) if valid.any() else float("nan")
        stats = [x.mean(), x.std(), x.min(), x.max(), ac]
        table.rows.append([name, str(x.shape[0]), str(x.shape[1]), *(f"{v:.3f}" for v in stats)])
    return table


def _samples(run: RunOutputs, figs: _Figures) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Generated, real and worst-case segments")]
    s = run.samples
    if not s:
        return [*blocks, _skip("Segments", "no `samples.npz`")]
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
        blocks.append(_skip("Generated vs. real", "`samples.npz` lacks `real` or `generated`"))
    if "worst_case" in s:
        blocks.append(
            figs.add(
                "worst_case",
                "The worst-case segments 3D-Learning found in its last epoch, over the 5–95 % "
                "band of real segments; right: marginal distributions.",
                figures.worst_case_segments,
                s.get("real"),
                s["worst_case"],
                s.get("generated"),
            )
        )
    else:
        blocks.append(_skip("Worst-case segments", "`samples.npz` has no `worst_case`"))
    blocks.append(_segment_stats(s))
    return blocks


def _training(run: RunOutputs, figs: _Figures) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Training curves")]
    h = run.histories
    if h is None or h.empty:
        return [*blocks, _skip("Training curves", "no `histories.csv`")]
    h = h[h["method"].isin(_plot_methods(h))]
    methods = _plot_methods(h)
    columns = [c for c in h.columns if c not in ("method", "seed", "epoch")]
    grouped = h.groupby(["method", "epoch"])[columns]
    mean = grouped.mean()
    lo, hi = grouped.min().add_suffix("_lo"), grouped.max().add_suffix("_hi")
    curves = pd.concat([mean, lo, hi], axis=1).reset_index()
    if "val_regret" in curves and curves["val_regret"].notna().any():
        blocks.append(
            figs.add(
                "validation_regret",
                "Validation regret per epoch (mean over seeds).",
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
                "Training loss per epoch (mean over seeds, band: range over seeds); each method "
                "minimises its own loss, so the scales differ.",
                figures.small_multiples,
                curves,
                shown,
                "train_loss",
                "method",
                "training loss",
            )
        )
    dynamics = [
        c for c in THREED_DYNAMICS if c in h and h.loc[h["method"] == "threed", c].notna().any()
    ]
    if dynamics:
        threed = curves[curves["method"] == "threed"]
        long = pd.concat(
            [
                threed[["epoch"]].assign(
                    quantity=c,
                    value=threed[c],
                    value_lo=threed[f"{c}_lo"],
                    value_hi=threed[f"{c}_hi"],
                )
                for c in dynamics
            ]
        )
        blocks.append(
            figs.add(
                "threed_dynamics",
                "3D-Learning per outer epoch (mean over seeds, band: range): "
                + ", ".join(f"`{c}`" for c in dynamics)
                + ".",
                figures.small_multiples,
                long,
                dynamics,
                "value",
                "quantity",
                "value",
            )
        )
    return blocks


def _wall_time(run: RunOutputs, figs: _Figures) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Wall time")]
    t = run.timings
    if t is None or t.empty:
        return [*blocks, _skip("Wall time", "no `timings.csv`")]
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
    table = _Table(["method", *stages, "total", "seeds"], [])
    for method, row in seconds.iterrows():
        cells = [f"{v:.1f}" if np.isfinite(v) else "–" for v in row.to_numpy(dtype=float)]
        table.rows.append([str(method), *cells, f"{np.nansum(row):.1f}", str(seeds[method])])
    blocks.append(_Para("Seconds per seed (mean over seeds):"))
    blocks.append(table)
    return blocks


def _notes(run: RunOutputs) -> list[_Block]:
    blocks: list[_Block] = [_Heading("Notes and configuration")]
    notes = run.meta.get("notes")
    if isinstance(notes, list) and notes:
        blocks.append(_Bullets([str(n) for n in notes]))
    versions = run.meta.get("versions")
    if isinstance(versions, dict) and versions:
        blocks.append(_Para("Versions: " + ", ".join(f"{k} `{v}`" for k, v in versions.items())))
    if run.config_text:
        blocks += [_Para("Resolved configuration (`config.toml`):"), _Code(run.config_text, "toml")]
    if len(blocks) == 1:
        blocks.append(_skip("Notes", "no `results.json` notes and no `config.toml`"))
    return blocks


def _overview(run: RunOutputs, title: str) -> list[_Block]:
    r = run.results
    suites = main_suites(r)
    methods = _plot_methods(r)
    budgets = sorted(e for m in r["method"].unique() if (e := sweep_budget(m)) is not None)
    seeds = sorted(r["seed"].unique())
    facts = [
        f"main suite: `{suites[0]}`" if suites else "no main suite",
        f"methods ({len(methods)}): " + ", ".join(f"`{m}`" for m in methods),
        "seeds: " + ", ".join(str(s) for s in seeds),
    ]
    if budgets:
        facts.append("3D-Learning budget sweep, ε: " + ", ".join(f"{e:g}" for e in budgets))
    profile = run.meta.get("profile")
    if profile:
        facts.insert(0, f"profile: `{profile}`")
    return [_Heading(title, 1), _Bullets(facts)]


# ----------------------------------------------------------------------------- entry points


def build_report(out_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out_dir``.

    Returns every written file keyed by its path relative to ``out_dir``.
    """
    run = load_outputs(out_dir)
    out = run.out_dir
    profile = run.meta.get("profile")
    title = title or ("drdfl report" + (f": {profile} profile" if profile else ""))
    suites = main_suites(run.results)
    suite = suites[0] if suites else None
    figs = _Figures(out)
    blocks: list[_Block] = [
        *_overview(run, title),
        *_main_tables(run),
        *_skyline(run),
        *_corruptions(run, figs),
        *_ablation(run, figs, suite),
        *_budget(run, figs, suite),
        *_samples(run, figs),
        *_training(run, figs),
        *_wall_time(run, figs),
        *_notes(run),
    ]
    write_text(out / "report.md", _markdown(blocks))
    write_text(out / "report.html", _html(blocks, title))
    return {"report.md": out / "report.md", "report.html": out / "report.html", **figs.written}


def print_summary(out_dir: str | Path) -> str:
    """The main suite's table as plain text for a terminal; the caller prints it.

    Transposed for narrow screens (one line per method, one column per test set); ``*``
    marks the lowest mean of each column.
    """
    run = load_outputs(out_dir)
    suites = main_suites(run.results)
    if not suites:
        return "no main-suite results"
    in_suite = run.results[run.results["suite"] == suites[0]]
    methods = _plot_methods(in_suite)
    block = _table_block(seed_table(run.results, suites[0], methods))
    # Two trailing characters on every cell keep the numbers aligned, marked or not.
    marked = [
        [c + (" *" if (i, j) in block.bold else "  ") for j, c in enumerate(row)]
        for i, row in enumerate(block.rows)
    ]
    # Column j of the block (a method, or W-dist.) becomes line j of the text.
    lines = [
        ["method" if j == 0 else h, *(r[j] for r in marked)] for j, h in enumerate(block.header)
    ]
    widths = [max(len(line[k]) for line in lines) for k in range(len(lines[0]))]
    text = [
        "  ".join(
            c.ljust(w) if k == 0 else c.rjust(w)
            for k, (c, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    head = f"normalized regret on `{suites[0]}` (mean ± 95 % CI over seeds; * best per column)"
    return "\n".join([head, *text])
