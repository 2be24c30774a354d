"""The report's figures: matplotlib on the Agg canvas, one function per figure.

Every function takes already-aggregated numbers (tidy frames or arrays) and returns a
:class:`~matplotlib.figure.Figure`; :func:`png_bytes` renders one. No pyplot, so nothing
here touches matplotlib's global figure manager or backend. Each method keeps one colour
and pattern in every figure (Okabe-Ito palette, safe for the common colour-vision
deficiencies; patterns and line styles separate methods that share a colour).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from drdfl.methods.labels import label_style
from drdfl.methods.registry import OKABE_ITO

RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.alpha": 0.3,
    "hatch.linewidth": 0.8,
}
DPI = 110


def method_style(method: str) -> dict[str, Any]:
    """Colour, hatch, line style and marker of a run label, the same in every figure."""
    return label_style(method)


def png_bytes(make: Callable[..., Figure], *args: Any, **kwargs: Any) -> bytes:
    """Build a figure with the report's style and render it as PNG bytes."""
    with mpl.rc_context(RC):
        fig = make(*args, **kwargs)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def line_color(method: str) -> str:
    """The colour of ``method``'s lines."""
    # White (the skyline's bar fill) would vanish as a line.
    color = method_style(method)["color"]
    return "#000000" if color == "#FFFFFF" else color


def _legend_right(fig: Figure, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper")


def _legend_below(ax: Any) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)


def grouped_bars(
    data: pd.DataFrame,
    methods: Sequence[str],
    ylabel: str,
    title: str,
    reference: tuple[float, str] | None = None,
) -> Figure:
    """Bars of ``mean`` (± ``half``) per ``group`` (x) and method (colour).

    ``data`` has columns ``group, method, mean, half``; ``reference`` draws a dashed
    horizontal line ``(y, label)``.
    """
    groups = list(dict.fromkeys(data["group"]))
    width = 0.8 / max(len(methods), 1)
    fig = Figure(figsize=(float(np.clip(0.22 * len(groups) * len(methods) + 3, 7, 13)), 4.4))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    for k, method in enumerate(methods):
        rows = data[data["method"] == method].set_index("group").reindex(groups)
        style = method_style(method)
        half = rows["half"].to_numpy(dtype=float)
        ax.bar(
            x + (k - (len(methods) - 1) / 2) * width,
            rows["mean"].to_numpy(dtype=float),
            width,
            yerr=np.where(np.isfinite(half), half, 0.0),
            color=style["color"],
            hatch=style["hatch"],
            edgecolor="#333333",
            linewidth=0.6,
            error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#333333"},
            label=method,
        )
    if reference is not None:
        ax.axhline(reference[0], color="#333333", linestyle="--", linewidth=1.0, label=reference[1])
    ax.set_xticks(x, groups)
    ax.grid(axis="x", visible=False)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_right(fig, ax)
    return fig


def severity_lines(data: pd.DataFrame, methods: Sequence[str], ylabel: str) -> Figure:
    """One panel per corruption ``kind``: ``mean`` against ``level``, one line per method."""
    kinds = list(dict.fromkeys(data["kind"]))
    fig = Figure(figsize=(3.6 * len(kinds) + 2.2, 4.0))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds, strict=True):
        part = data[data["kind"] == kind]
        for method in methods:
            rows = part[part["method"] == method].sort_values("level")
            if rows.empty:
                continue
            style = method_style(method)
            ax.plot(
                rows["level"],
                rows["mean"],
                color=line_color(method),
                linestyle=style["linestyle"],
                marker=style["marker"],
                markersize=5,
                linewidth=1.4,
                label=method,
            )
        # Severities multiply the paper's level, so they are evenly spaced on a log axis.
        levels = sorted(part["level"].unique())
        ax.set_xscale("log")
        ax.set_xticks(levels, [f"{level:g}" for level in levels])
        ax.minorticks_off()
        ax.set_title(kind)
        ax.set_xlabel("corruption level")
    axes[0].set_ylabel(ylabel)
    _legend_right(fig, axes[0])
    return fig


def budget_sweep(data: pd.DataFrame, reference: pd.DataFrame | None = None) -> Figure:
    """Average and maximum normalized regret against the budget ε.

    ``data`` has columns ``eps, stat, mean, half`` (stat ``average`` or ``maximum``);
    ``reference`` (columns ``stat, mean``) draws DFL's values as dashed lines.
    """
    fig = Figure(figsize=(7.5, 4.2))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    colors = {"average": OKABE_ITO["vermillion"], "maximum": OKABE_ITO["blue"]}
    markers = {"average": "o", "maximum": "s"}
    for stat, rows in data.groupby("stat", sort=False):
        rows = rows.sort_values("eps")
        ax.errorbar(
            rows["eps"],
            rows["mean"],
            yerr=rows["half"].fillna(0.0),
            color=colors.get(str(stat), OKABE_ITO["black"]),
            marker=markers.get(str(stat), "^"),
            capsize=3,
            linewidth=1.5,
            label=f"3D-Learning, {stat}",
        )
    if reference is not None:
        for stat, value in zip(reference["stat"], reference["mean"], strict=True):
            ax.axhline(
                value,
                color=colors.get(str(stat), OKABE_ITO["black"]),
                linestyle="--",
                linewidth=1.0,
                label=f"DFL, {stat}",
            )
    ax.set_xticks(sorted(data["eps"].unique()))
    ax.set_xlabel("budget ε")
    ax.set_ylabel("normalized regret")
    ax.set_title("3D-Learning: robustness budget sweep")
    _legend_right(fig, ax)
    return fig


def _traces(ax: Any, segments: np.ndarray, color: str, title: str) -> None:
    t = np.arange(segments.shape[1])
    ax.plot(t, segments.T, color=color, linewidth=1.1, alpha=0.85)
    ax.set_title(title)
    ax.set_xlabel("time step")


def _histogram(ax: Any, arrays: dict[str, tuple[np.ndarray, str]]) -> None:
    finite = np.concatenate([a[np.isfinite(a)] for a, _ in arrays.values()])
    bins = np.histogram_bin_edges(finite, bins=30)
    for label, (values, color) in arrays.items():
        ax.hist(values.ravel(), bins=bins, density=True, histtype="step", color=color, lw=1.6)
        ax.plot([], [], color=color, label=label)
    ax.set_title("marginal distribution")
    ax.set_xlabel("normalized demand")
    ax.set_ylabel("density")
    _legend_below(ax)


def generated_vs_real(real: np.ndarray, generated: np.ndarray, shown: int = 4) -> Figure:
    """A few real and generated segments side by side, and both marginal histograms."""
    fig = Figure(figsize=(12.0, 3.8))
    fig.set_layout_engine("constrained")
    left, middle, right = fig.subplots(1, 3)
    middle.sharey(left)
    _traces(left, real[:shown], OKABE_ITO["blue"], f"real segments (first {min(shown, len(real))})")
    _traces(
        middle,
        generated[:shown],
        OKABE_ITO["vermillion"],
        f"generated segments (first {min(shown, len(generated))})",
    )
    left.set_ylabel("normalized demand")
    _histogram(
        right,
        {
            f"real (n={len(real)})": (real, OKABE_ITO["blue"]),
            f"generated (n={len(generated)})": (generated, OKABE_ITO["vermillion"]),
        },
    )
    return fig


def worst_case_segments(
    real: np.ndarray | None,
    worst: np.ndarray,
    baseline: np.ndarray | None,
    baseline_label: str = "generated",
    shown: int = 3,
) -> Figure:
    """3D-Learning's worst-case segments over the band of real ones, and the marginals
    (with ``baseline``, e.g. θ₀'s samples or the same draw with the adversary off)."""
    fig = Figure(figsize=(11.0, 3.8))
    fig.set_layout_engine("constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    if real is not None and real.shape[1] == worst.shape[1]:
        t = np.arange(real.shape[1])
        lo, mid, hi = np.quantile(real, [0.05, 0.5, 0.95], axis=0)
        left.fill_between(t, lo, hi, color=OKABE_ITO["sky"], alpha=0.35, label="real 5–95 %")
        left.plot(t, mid, color=OKABE_ITO["blue"], linewidth=1.5, label="real median")
    _traces(left, worst[:shown], OKABE_ITO["vermillion"], "worst-case segments (last epoch)")
    left.plot(
        [], [], color=OKABE_ITO["vermillion"], label=f"worst case (first {min(shown, len(worst))})"
    )
    left.set_ylabel("normalized demand")
    _legend_below(left)
    arrays = {f"worst case (n={len(worst)})": (worst, OKABE_ITO["vermillion"])}
    if real is not None:
        arrays[f"real (n={len(real)})"] = (real, OKABE_ITO["blue"])
    if baseline is not None:
        arrays[f"{baseline_label} (n={len(baseline)})"] = (baseline, OKABE_ITO["green"])
    _histogram(right, arrays)
    return fig


def curves_by_method(
    data: pd.DataFrame, methods: Sequence[str], column: str, ylabel: str, title: str
) -> Figure:
    """``column`` against ``epoch``, one line per method on shared axes."""
    fig = Figure(figsize=(8.5, 4.4))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    for method in methods:
        rows = data[data["method"] == method].dropna(subset=[column])
        if rows.empty:
            continue
        style = method_style(method)
        ax.plot(
            rows["epoch"],
            rows[column],
            color=line_color(method),
            linestyle=style["linestyle"],
            marker=style["marker"],
            markersize=3.5,
            linewidth=1.4,
            label=method,
        )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_right(fig, ax)
    return fig


def small_multiples(
    data: pd.DataFrame,
    panels: Sequence[str],
    column: str,
    key: str,
    ylabel: str,
    color: str | None = None,
    title: str | None = None,
    ncols: int = 4,
) -> Figure:
    """One panel per value of ``key`` (each with its own y axis): ``column`` against epoch.

    ``data`` has columns ``key, epoch, column`` and optionally ``column + "_lo"`` and
    ``column + "_hi"`` for a band (e.g. the range over seeds). Panels take each method's
    colour when ``key`` is ``"method"``, else ``color``.
    """
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(3.2 * ncols + 0.4, 2.5 * nrows + 0.4))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, name in zip(axes, panels, strict=False):
        rows = data[data[key] == name].dropna(subset=[column])
        shade = line_color(name) if key == "method" else color or OKABE_ITO["vermillion"]
        ax.plot(rows["epoch"], rows[column], color=shade, linewidth=1.5)
        if f"{column}_lo" in rows:
            ax.fill_between(
                rows["epoch"], rows[f"{column}_lo"], rows[f"{column}_hi"], color=shade, alpha=0.2
            )
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def wall_time(seconds: pd.DataFrame) -> Figure:
    """Horizontal bars of seconds per method, stacked by stage (``seconds``: method × stage)."""
    palette = [OKABE_ITO[c] for c in ("blue", "orange", "green", "purple", "sky", "yellow", "grey")]
    fig = Figure(figsize=(8.5, 0.42 * len(seconds) + 1.6))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    y = np.arange(len(seconds))
    left = np.zeros(len(seconds))
    for k, stage in enumerate(seconds.columns):
        values = seconds[stage].fillna(0.0).to_numpy(dtype=float)
        ax.barh(
            y,
            values,
            left=left,
            color=palette[k % len(palette)],
            hatch="//" if k >= len(palette) else "",
            edgecolor="#333333",
            linewidth=0.5,
            label=str(stage),
        )
        left += values
    ax.set_yticks(y, list(seconds.index))
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("wall time per seed (s, mean over seeds)")
    ax.set_title("Wall time per method")
    _legend_right(fig, ax)
    return fig
