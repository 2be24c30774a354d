"""Run labels: which method a row of results belongs to, in which variant, and how it looks.

A label is a registered method's name, optionally with one of its registered variants'
suffix (``threed-mse``, ``threed-off``: :class:`~drdfl.methods.registry.Variant`), or a
budget-sweep point ``method@value``, optionally scored online (``+online``); ``skyline`` is
DFL trained on part of a test set. :func:`read_label` reads any label back through the
registry's tables, so that the runner that writes labels and the report that reads them
share one source. Importing this module is cheap.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from drdfl.methods.registry import METHOD_NAMES, METHODS, REGISTRY, SKYLINE

#: suffix of a run scored with online recalibration (``dfl+online``)
ONLINE_SUFFIX = "+online"
#: separates a method from a budget-sweep value (``threed@0.05``)
SWEEP_MARK = "@"
# Paul Tol's "muted" scheme, for labels the registry does not name.
_FALLBACK = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677")
_LINESTYLE = {"": "-", "//": "--", "..": ":", "xx": "-.", "\\\\": (0, (3, 1, 1, 1))}
_MARKERS = "osD^vP<>Xph*"


@dataclass(frozen=True)
class RunLabel:
    """A run label, read: its method, variant (a registered variant's name), budget-sweep
    value and whether it was scored online; ``known`` is false for a label no registry
    entry explains."""

    method: str
    variant: str = ""
    budget: float | None = None
    online: bool = False
    known: bool = True

    @property
    def offline(self) -> RunLabel:
        """The same run scored offline."""
        return RunLabel(self.method, self.variant, self.budget, False, self.known)


def read_label(label: str) -> RunLabel:
    """The :class:`RunLabel` of ``label``."""
    online = label.endswith(ONLINE_SUFFIX)
    base = label.removesuffix(ONLINE_SUFFIX)
    if base == SKYLINE or base in METHODS:
        return RunLabel(base, online=online)
    name, mark, value = base.partition(SWEEP_MARK)
    if mark and name in METHODS and METHODS[name].sweep is not None:
        try:
            return RunLabel(name, budget=float(value), online=online)
        except ValueError:
            pass
    for spec in REGISTRY:
        for variant in spec.variants:
            if base == spec.name + variant.suffix:
                return RunLabel(spec.name, variant.name, online=online)
    return RunLabel(label, known=False)


def online_label(label: str) -> str:
    """The label of ``label``'s run scored with online recalibration."""
    return label + ONLINE_SUFFIX


def variant_label(method: str, variant: str) -> str:
    """The label of ``method``'s registered variant ``variant``."""
    return method + next(v.suffix for v in METHODS[method].variants if v.name == variant)


def sweep_label(method: str, value: float) -> str:
    """The label of ``method``'s budget-sweep point ``value``."""
    return f"{method}{SWEEP_MARK}{value:g}"


def label_order(label: str) -> tuple[int, int, float, float, str]:
    """Sort key of run labels: registry order, then each method's variants in registry
    order, its budget sweep by value, each one's online row right after it; labels the
    registry does not know next, the skyline last."""
    read = read_label(label)
    if read.method == SKYLINE:
        return (2, 0, 0.0, 0.0, label)
    if not read.known:
        return (1, 0, 0.0, 0.0, label)
    spec = METHODS[read.method]
    names = [v.name for v in spec.variants]
    place = 1.0 + names.index(read.variant) if read.variant else 0.0
    if read.budget is not None:
        place = 1.0 + len(names) + read.budget
    return (0, METHOD_NAMES.index(read.method), place, float(read.online), label)


def label_style(label: str) -> dict[str, Any]:
    """Colour, hatch, line style and marker of a run label, the same in every figure."""
    read = read_label(label)
    if read.method == SKYLINE:
        color, hatch, index = "#FFFFFF", "xx", len(METHOD_NAMES)
    elif read.known:
        spec = METHODS[read.method]
        index = METHOD_NAMES.index(read.method)
        color = spec.color
        hatch = spec.hatch
        if read.variant:
            hatch = next(v.hatch for v in spec.variants if v.name == read.variant)
        elif read.budget is not None:
            hatch = "xx"
        if read.online:
            hatch = ".."
    else:
        index = zlib.crc32(label.encode())
        color, hatch = _FALLBACK[index % len(_FALLBACK)], ""
    return {
        "color": color,
        "hatch": hatch,
        "linestyle": _LINESTYLE.get(hatch, "-"),
        "marker": _MARKERS[index % len(_MARKERS)],
    }


def history_columns(label: str) -> dict[str, str]:
    """The method-specific history columns a run label's method writes."""
    read = read_label(label)
    return dict(METHODS[read.method].history) if read.known and read.method in METHODS else {}


__all__ = [
    "ONLINE_SUFFIX",
    "SWEEP_MARK",
    "RunLabel",
    "history_columns",
    "label_order",
    "label_style",
    "online_label",
    "read_label",
    "sweep_label",
    "variant_label",
]
