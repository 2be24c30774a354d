"""``drdfl data …``: list, describe, bin and synthesise workload data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from drdfl.data.binning import DEFAULT_INTERVAL, format_interval, parse_interval
from drdfl.data.loading import load_series
from drdfl.data.readers import binned
from drdfl.data.registry import DATASETS, cache_dir, data_dir, find_local, resolve
from drdfl.data.series import Series
from drdfl.errors import DataError

app = typer.Typer(no_args_is_help=True)


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory of trace files (default: $DRDFL_DATA_DIR)."),
]
IntervalOption = Annotated[
    str, typer.Option("--interval", help="Bin length of the series: 5s, 500ms, 1min, 1h.")
]
InfoIntervalOption = Annotated[
    str | None,
    typer.Option(
        "--interval",
        help="Bin length for a per-request trace (default 5s); a binned file has its own.",
    ),
]
TokensOption = Annotated[
    str, typer.Option("--tokens", help="Which tokens count as demand: context, generated, total.")
]
ColumnOption = Annotated[str | None, typer.Option("--column", help="Column of a binned file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
OutputOption = Annotated[Path, typer.Option("-o", "--output", help="CSV file to write.")]


@app.command("list")
def list_datasets(
    data_directory: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """The registered datasets, one per line, and where each is available locally."""
    rows = []
    root = data_dir(data_directory)
    for dataset in DATASETS.values():
        local = find_local(dataset, data_directory)
        where = None
        if local is not None:
            where = "data dir" if root is not None and local.is_relative_to(root) else "cache"
        rows.append(
            {
                "name": dataset.name,
                "available": where,
                "local_path": local,
                "format": dataset.format,
                "downloadable": dataset.url is not None,
                "description": dataset.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table("dataset", "local", "format", "download", "description")
    for row in rows:
        table.add_row(
            row["name"],
            f"[green]✓ {row['available']}[/]" if row["available"] else "[dim]–[/]",
            row["format"],
            "yes" if row["downloadable"] else "no",
            row["description"],
        )
    _console().print(table)
    _console().print(f"[dim]data dir: {root or 'not set'} · cache: {cache_dir()}[/]")


@app.command()
def info(
    spec: Annotated[str, typer.Argument(metavar="NAME_OR_PATH", help="Dataset name or file.")],
    data_directory: DataDirOption = None,
    interval: InfoIntervalOption = None,
    tokens: TokensOption = "context",
    column: ColumnOption = None,
    reference: Annotated[
        str | None,
        typer.Option(metavar="NAME_OR_PATH", help="Also report the W-distance to this series."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Rows, time span, interval and mean/std/min/max of a series.

    With --reference, also its shift from that series: the 1-D Wasserstein distance
    between the two marginals, each min-max normalized by its own extremes.
    """
    series = load_series(spec, data_directory, interval, tokens, column)
    summary = _summary(series)
    if reference is not None:
        from drdfl.data.shifts import wasserstein_marginal

        ref = load_series(reference, data_directory, interval, tokens, column)
        summary["reference"] = ref.name
        summary["w_distance"] = float(wasserstein_marginal(series.values, ref.values))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    table = Table("", series.name, show_header=True)
    for key, value in summary.items():
        if key != "name" and value is not None:
            table.add_row(key, _fmt(value))
    _console().print(table)


@app.command("bin")
def bin_trace(
    spec: Annotated[str, typer.Argument(metavar="PATH", help="Trace file (or dataset name).")],
    output: OutputOption,
    interval: IntervalOption = DEFAULT_INTERVAL,
    tokens: TokensOption = "context",
    data_directory: DataDirOption = None,
) -> None:
    """Bin a per-request trace into a demand series CSV (TIMESTAMP, tokens per interval)."""
    source, _ = resolve(spec, data_directory, download=True)
    _refuse_own_input(source, output)
    series = load_series(spec, data_directory, interval, tokens)
    binned.write(series, output, column=binned.TOKEN_COLUMN[tokens])
    _console().print(
        f"wrote {output}: {len(series):,} intervals of {format_interval(series.interval_s)}"
    )


@app.command()
def synth(
    days: Annotated[float, typer.Option(help="Length in days.")],
    regime: Annotated[str, typer.Option(help="chat, code, or shift (chat, then code).")],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same series.")],
    output: OutputOption,
    interval: IntervalOption = DEFAULT_INTERVAL,
) -> None:
    """Generate the built-in synthetic workload (context tokens per interval) as a CSV."""
    from drdfl.data.synthetic import generate

    series = generate(days, regime, seed, parse_interval(interval))
    binned.write(series, output)
    _console().print(
        f"wrote {output}: {len(series):,} intervals of {format_interval(series.interval_s)}"
    )


def _refuse_own_input(source: Path, output: Path) -> None:
    """Writing over the file being read would replace the raw trace by its binned form."""
    if output.exists() and output.samefile(source):
        raise DataError(
            f"{output} is the input trace; write the binned series to another file "
            "(the raw trace would be lost)"
        )
    if output.is_dir():
        raise DataError(f"{output} is a directory; expected a CSV file to write")


def _summary(series: Series) -> dict[str, Any]:
    stats = series.stats()
    stats["interval"] = format_interval(series.interval_s)
    stats["span"] = str(pd.Timedelta(seconds=stats.pop("span_s")))
    stats.pop("interval_s")
    for key in ("requests", "dataset", "source", "format"):
        if key in series.meta:
            stats[key] = series.meta[key]
    return stats


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        if value == round(value):
            return f"{value:,.0f}"
        return f"{value:,.1f}" if abs(value) >= 1 else f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _console() -> Console:
    return Console(soft_wrap=True)
