"""The plan: every piece of work of a run as a node with explicit ``needs``.

A run is a small dependency graph built once from the configuration::

    reference-s<seed>  (θ₀, for methods that need the reference model)
          │
    units: mse, dfl, … (one method or variant with one seed; warm-started ones need dfl)
          │
    assembly → report  (done by the front end once the units are finished)

Executors run the ``reference`` and ``unit`` nodes in any order the needs allow; a node
names what it needs by id, so the same plan runs on local processes or on Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from drdfl.config import ExperimentConfig
from drdfl.methods.labels import sweep_label
from drdfl.methods.registry import METHOD_NAMES, METHODS, SKYLINE
from drdfl.records import unit_key


@dataclass(frozen=True)
class Unit:
    """One cell of the grid: a method (or a variant of one) with one seed, and the method's
    validated parameters (its registered parameter model; ``None``: the defaults)."""

    method: str
    seed: int
    label: str
    params: Any = field(default=None, hash=False, compare=False)

    @property
    def key(self) -> str:
        """The unit's folder name under ``OUT/units``."""
        return unit_key(self.label, self.seed)

    @property
    def needs_reference(self) -> bool:
        """Whether the unit starts from the reference model θ₀ (and was given none)."""
        given = getattr(self.params, "diffusion", None)
        return METHODS[self.method].needs_reference and given is None


@dataclass(frozen=True)
class Node:
    """One node of the plan: the reference model of a seed, or a unit."""

    id: str
    kind: Literal["reference", "unit"]
    seed: int
    unit: Unit | None = None
    needs: tuple[str, ...] = ()


def reference_id(seed: int) -> str:
    """The plan id of the reference model of ``seed``."""
    return f"reference-s{seed}"


def plan_units(cfg: ExperimentConfig) -> list[Unit]:
    """Every unit of the run, in report order: per seed the methods that are never
    warm-started first (DFL among them), then the others with their variants, then the
    skyline."""
    methods = list(dict.fromkeys(cfg.methods))
    warm = cfg.warm_start_from_dfl and any(METHODS[m].warm_start for m in methods)
    if warm and "dfl" not in methods:
        methods.insert(0, "dfl")  # the warm start of the other methods
    cold = [m for m in METHOD_NAMES if m in methods and not METHODS[m].warm_start]
    order = cold + [m for m in methods if METHODS[m].warm_start]
    runs = [(m, m, METHODS[m].parse(cfg.method_params.get(m))) for m in order]
    for m in order:  # each method's variants and budget sweep, as the registry lists them
        spec, given = METHODS[m], dict(cfg.method_params.get(m, {}))
        for v in spec.variants:
            if getattr(cfg.report, v.switch):
                runs.append((m, m + v.suffix, spec.parse({**given, **v.params})))
        if spec.sweep is not None and cfg.report.budget_sweep:
            for b in cfg.report.budgets:
                runs.append((m, sweep_label(m, b), spec.parse({**given, spec.sweep: b})))
    units = []
    for seed in cfg.seeds:
        units += [Unit(m, seed, label, params) for m, label, params in runs]
        if cfg.evaluation.skyline:
            units.append(Unit("dfl", seed, SKYLINE, METHODS["dfl"].parse()))
    return units


def warm_start_of(cfg: ExperimentConfig, unit: Unit) -> Unit | None:
    """The DFL unit ``unit`` is warm-started from, if any."""
    if cfg.warm_start_from_dfl and unit.label != SKYLINE and METHODS[unit.method].warm_start:
        return Unit("dfl", unit.seed, "dfl")
    return None


@dataclass(frozen=True)
class Plan:
    """The units of one run and the graph of their work, in execution order."""

    units: tuple[Unit, ...]
    nodes: tuple[Node, ...]

    def node(self, node_id: str) -> Node:
        """The node called ``node_id``."""
        return next(n for n in self.nodes if n.id == node_id)


def build_plan(cfg: ExperimentConfig) -> Plan:
    """The plan of ``cfg``: a reference node per seed that needs one, then the units with
    their needs (DFL before the units warm-started from it)."""
    units = plan_units(cfg)
    references = [
        Node(reference_id(s), "reference", s)
        for s in cfg.seeds
        if any(u.needs_reference for u in units if u.seed == s)
    ]
    nodes = list(references)
    for unit in units:
        needs = []
        warm = warm_start_of(cfg, unit)
        if warm is not None:
            needs.append(warm.key)
        if unit.needs_reference:
            needs.append(reference_id(unit.seed))
        nodes.append(Node(unit.key, "unit", unit.seed, unit, tuple(needs)))
    return Plan(tuple(units), tuple(nodes))


__all__ = ["Node", "Plan", "Unit", "build_plan", "plan_units", "reference_id", "warm_start_of"]
