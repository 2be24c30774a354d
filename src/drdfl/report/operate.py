"""What an operator looks at: a plan's figure, a backtest's figure and its report section.

A backtest's directory (``drdfl backtest -o DIR``, or ``OUT/backtest`` of a run) holds

* ``backtest.csv``: ``policy, gpu_hours, unserved_share, slo_violation_share, cost`` and the
  matched-SLO columns ``headroom_at_slo, gpu_hours_at_slo``;
* ``backtest_series.csv``: ``slot, demand_tokens`` and each policy's replicas per slot;
* ``backtest.json``: the trace, lead, SLO target, tokens one replica serves per slot, the
  slot length, the start time of slot 0 (or null) and the replicas task;
* ``backtest.png``: :func:`backtest_figure`.

The functions here read numbers, never a model: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from drdfl.errors import DataError
from drdfl.report.render import Block, Heading, Para, Table, skipped
from drdfl.report.render import Figure as FigureBlock

BACKTEST_DIR = "backtest"
SUMMARY_FILE = "backtest.csv"
SERIES_FILE = "backtest_series.csv"
META_FILE = "backtest.json"
FIGURE_FILE = "backtest.png"
SUMMARY_COLUMNS = ("policy", "gpu_hours", "unserved_share", "slo_violation_share", "cost")
#: the rules a backtest's figure draws next to the models (the others are in its table)
_RULES_SHOWN = ("reactive", "recent-quantile")
_RULES = ("oracle", "reactive", "recent-quantile", "moving-average", "last-value")
_COLORS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7", "#0072B2")


def _axis(slots: np.ndarray, start: str | None, interval_s: float) -> tuple[Any, str]:
    if start is None:
        return slots, "slot"
    times = pd.Timestamp(start) + pd.to_timedelta(slots * interval_s, unit="s")
    return times.tz_localize(None) if times.tz is not None else times, "time"


def plan_figure(
    history: np.ndarray,
    plan: pd.DataFrame,
    slots: np.ndarray,
    tokens_per_replica_slot: float,
    interval_s: float,
    start: str | None = None,
    shown: int = 720,
) -> Figure:
    """The last ``shown`` slots of ``history`` (a dashed line at its end: now), the
    forecast of the planned ``slots`` and the capacity their replicas give (tokens per
    slot), with the replicas below."""
    fig = Figure(figsize=(9, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.4))
    seen = np.arange(max(0, len(history) - shown), len(history))
    x_seen, label = _axis(seen, start, interval_s)
    x_plan, _ = _axis(np.asarray(slots), start, interval_s)
    top.plot(x_seen, history[seen], color="#555555", lw=0.9, label="demand seen")
    top.plot(x_plan, plan["forecast_tokens"], "o-", color="#0072B2", ms=4, label="forecast")
    capacity = plan["replicas"].to_numpy() * tokens_per_replica_slot
    top.step(x_plan, capacity, where="mid", color="#D55E00", lw=1.6, label="planned capacity")
    for ax in (top, bottom):
        ax.axvline(x_plan[0] if len(seen) == 0 else x_seen[-1], color="#999999", ls="--", lw=0.8)
    top.set_ylabel("tokens per slot")
    top.legend(loc="upper left")
    top.set_title(f"plan for {len(slots)} slot(s) of {interval_s:g} s")
    bottom.step(x_plan, plan["replicas"], where="mid", color="#D55E00", lw=1.6)
    bottom.plot(x_plan, plan["replicas"], "o", color="#D55E00", ms=4)
    bottom.set_ylabel("replicas")
    bottom.set_xlabel(label)
    bottom.set_ylim(bottom=0)
    return fig


def _policies(columns: Sequence[str]) -> list[str]:
    names = [c for c in columns if c not in ("slot", "demand_tokens")]
    models = [n for n in names if n not in _RULES]
    return models + [n for n in _RULES_SHOWN if n in names]


def backtest_figure(series: pd.DataFrame, meta: dict[str, Any], zoom_s: float = 1800.0) -> Figure:
    """Demand against the provisioned capacity of the models and two rules (reactive,
    recent-quantile) over the whole replay, and over ``zoom_s`` seconds around its largest
    demand."""
    interval_s = float(meta["interval_s"])
    per = float(meta["tokens_per_replica_slot"])
    slots = series["slot"].to_numpy()
    demand = series["demand_tokens"].to_numpy()
    names = _policies(list(series.columns))[: len(_COLORS)]
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    whole, zoom = fig.subplots(2, 1)
    peak = int(np.argmax(demand)) if demand.size else 0
    half = max(1, round(zoom_s / interval_s / 2))
    window = slice(max(0, peak - half), min(len(slots), peak + half))
    for ax, part, title in (
        (whole, slice(None), "the whole replay"),
        (zoom, window, f"{zoom_s / 60:g} min around the largest demand"),
    ):
        x, label = _axis(slots[part], meta.get("start"), interval_s)
        ax.plot(x, demand[part], color="#999999", lw=0.7, label="demand")
        for name, color in zip(names, _COLORS, strict=False):
            ax.step(
                x,
                series[name].to_numpy()[part] * per,
                where="post",
                color=color,
                lw=1.0,
                label=name,
            )
        ax.set_ylabel("tokens per slot")
        ax.set_xlabel(label)
        ax.set_title(title)
    whole.legend(loc="upper left", ncols=min(4, len(names) + 1))
    fig.suptitle(
        f"provisioned capacity (replicas × {per:,.0f} tokens) against demand, "
        f"lead {meta.get('lead', 0)} slot(s)"
    )
    return fig


def decision_line(config: Any) -> str | None:
    """What the run's decisions are, from its configuration: the task, and the slots each
    decision is for (its lead and horizon); ``None`` without a configuration."""
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        return None
    data = config["data"]
    window, horizon, lead = (
        int(data.get(k, d)) for k, d in (("window", 7), ("horizon", 1), ("lead", 0))
    )
    first, last = f"t+{lead}" if lead else "t", f"t+{lead + horizon - 1}"
    slots = f"slot {first}" if horizon == 1 else f"slots {first} … {last}"
    return (
        f"decisions: task `{config.get('task', '?')}`, made at slot t from the {window} slots "
        f"before it, for {slots} (lead {lead}, horizon {horizon})"
    )


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from None


def read_backtest(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``(summary, series, meta)`` of a backtest directory; a :class:`DataError` naming the
    file that is missing or unreadable."""
    path = Path(directory)
    summary = _read(path / SUMMARY_FILE)
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise DataError(f"{path / SUMMARY_FILE}: missing column(s) {', '.join(missing)}")
    series = _read(path / SERIES_FILE)
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path / META_FILE}: not readable ({exc})") from None
    return summary, series, meta


def _share(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.2f} %"


def _number(value: float, digits: int = 2) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:,.{digits}f}"


def backtest_table(summary: pd.DataFrame, slo_target: float) -> Table:
    """The backtest's summary as a report table (lowest cost in bold)."""
    header = [
        "policy",
        "GPU-hours",
        "unserved",
        "SLO violated",
        "cost",
        f"headroom at {100 * slo_target:g} %",
        f"GPU-hours at {100 * slo_target:g} %",
    ]
    table = Table(header, [])
    runnable = summary[summary["policy"] != "oracle"]
    best = runnable["cost"].idxmin() if len(runnable) else None
    for i, (index, row) in enumerate(summary.iterrows()):
        table.rows.append(
            [
                str(row["policy"]),
                _number(row["gpu_hours"], 1),
                _share(row["unserved_share"]),
                _share(row["slo_violation_share"]),
                _number(row["cost"]),
                _number(row.get("headroom_at_slo", np.nan), 3),
                _number(row.get("gpu_hours_at_slo", np.nan), 1),
            ]
        )
        if index == best:
            table.best.add((i, 4))
    return table


def backtest_section(out_dir: Path, png: dict[str, bytes]) -> list[Block]:
    """The report's backtest section for a run whose ``OUT/backtest`` holds one."""
    directory = out_dir / BACKTEST_DIR
    if not (directory / SUMMARY_FILE).is_file():
        return []
    summary, _, meta = read_backtest(directory)
    blocks: list[Block] = [Heading("Backtest: replicas over a replayed trace")]
    slo = float(meta.get("slo_target", 0.01))
    blocks.append(
        Para(
            f"`{meta.get('trace', 'trace')}` replayed slot by slot: at each slot every "
            f"policy decides, from the demand seen so far, the replicas of the slot "
            f"{meta.get('lead', 0)} slot(s) later ({meta.get('interval_s', 0):g} s slots; "
            f"one replica serves {float(meta.get('tokens_per_replica_slot', 0)):,.0f} "
            "tokens per slot). Cost: replica-hours plus the penalty of unserved tokens; "
            "**bold**: the cheapest policy one can run (the oracle sees the future). "
            f"The last two columns compare at a matched SLO: the factor on a policy's "
            f"replicas that brings the slots it leaves short to {100 * slo:g} %, and the "
            "GPU-hours it then runs."
        )
    )
    blocks.append(backtest_table(summary, slo))
    figure = directory / FIGURE_FILE
    if figure.is_file():
        relative = f"{BACKTEST_DIR}/{FIGURE_FILE}"
        data = figure.read_bytes()
        png[relative] = data
        blocks.append(FigureBlock(relative, data, "Demand against provisioned capacity."))
    else:
        blocks.append(skipped("Backtest figure", f"{figure} is missing"))
    return blocks


__all__ = [
    "BACKTEST_DIR",
    "FIGURE_FILE",
    "META_FILE",
    "SERIES_FILE",
    "SUMMARY_FILE",
    "backtest_figure",
    "backtest_section",
    "backtest_table",
    "decision_line",
    "plan_figure",
    "read_backtest",
]
