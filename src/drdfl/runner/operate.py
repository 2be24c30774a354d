"""Backtests as files: a saved model replayed over a trace (``drdfl backtest``), and the
backtest a run adds to its report (``evaluation.backtest``).

Both write one directory (see :mod:`drdfl.report.operate` for its files): the summary
``backtest.csv``, the replicas per slot, what was replayed, and the figure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drdfl._io import atomic_open, write_json
from drdfl.data.series import Series
from drdfl.errors import ConfigError
from drdfl.evaluation.backtest import (
    BacktestResult,
    Oracle,
    Policy,
    backtest,
    default_rules,
    model_policies,
)
from drdfl.evaluation.planning import Planner
from drdfl.records import unit_key
from drdfl.tasks.replicas import ReplicasTask

log = logging.getLogger("drdfl")


def replay(
    series: Series,
    planners: Sequence[tuple[str, Planner]],
    slo_target: float = 0.01,
    online: bool = True,
) -> BacktestResult:
    """Replay ``series`` with each named planner (and its online recalibration), the
    autoscaler rules and the oracle; the first planner's replicas task prices them all."""
    if not planners:
        raise ConfigError("backtest: no model to replay")
    first = planners[0][1]
    task, lead = first.replicas, first.lead
    for name, planner in planners[1:]:
        if planner.lead != lead or planner.replicas.to_dict() != task.to_dict():
            raise ConfigError(
                f"backtest: {name} decides with another lead or replicas task than "
                f"{planners[0][0]}; replay them separately"
            )
    policies: list[Policy] = []
    for name, planner in planners:
        policies += model_policies(planner, name, online)
    policies += [*default_rules(), Oracle()]
    return backtest(
        series.values, policies, task, lead, slo_target, series.start, source=series.name
    )


def write_backtest(result: BacktestResult, directory: str | Path, trace: str) -> Path:
    """Write ``result`` into ``directory`` (created if needed): summary, replicas per slot,
    what was replayed and the figure; every file atomically."""
    from drdfl.report import operate as files
    from drdfl.report.figures import png_bytes

    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; expected a directory for the backtest")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / files.SUMMARY_FILE, "w", newline="") as handle:
        result.table.to_csv(handle, index=False, float_format="%.6g")
    series = result.series_frame()
    with atomic_open(out / files.SERIES_FILE, "w", newline="") as handle:
        series.to_csv(handle, index=False, float_format="%.10g")
    task = result.task
    start = result.start.isoformat() if result.start is not None else None
    meta: dict[str, Any] = {
        "trace": trace,
        "lead": result.lead,
        "slo_target": result.slo_target,
        "interval_s": task.interval_s,
        "tokens_per_replica_slot": task.tokens_per_replica_slot,
        "start": start,
        "slots": len(result.slots),
        "task": task.to_dict(),
        "policies": list(result.replicas),
    }
    write_json(out / files.META_FILE, meta)
    png = png_bytes(files.backtest_figure, series, meta)
    with atomic_open(out / files.FIGURE_FILE, "wb") as handle:
        handle.write(png)
    return out


def backtest_model(
    model_dir: str | Path,
    trace: str | Path,
    out: str | Path | None = None,
    task: str | None = None,
    task_params: dict[str, Any] | None = None,
    slo_target: float = 0.01,
    online: bool = True,
    tokens: str = "context",
) -> tuple[BacktestResult, Path]:
    """``drdfl backtest``: the model in ``model_dir`` replayed over the ``trace`` file,
    written to ``out`` (default ``MODEL_DIR/backtest-<trace stem>``)."""
    from drdfl.serve import load_planner, read_demand

    planner = load_planner(model_dir, task, task_params)
    series = read_demand(trace, planner.interval_s, tokens)
    result = replay(series, [("model", planner)], slo_target, online)
    stem = Path(trace).name.split(".")[0] or "trace"
    target = Path(out) if out is not None else Path(model_dir) / f"backtest-{stem}"
    return result, write_backtest(result, target, str(trace))


def run_planners(out: Path, labels: Sequence[str], seed: int) -> list[tuple[str, Planner]]:
    """The planners of a run's finished units of ``seed`` (models trained on another task
    than replicas are priced with the ``replicas`` task's default preset)."""
    from drdfl.artifacts import load_model
    from drdfl.runner.store import DONE_FILE

    planners = []
    for label in labels:
        folder = out / "units" / unit_key(label, seed)
        if not (folder / DONE_FILE).is_file() or not (folder / "model" / "model.json").is_file():
            continue  # not done, or a unit without one model (the skyline)
        model = load_model(folder / "model")
        replicas = None
        if not isinstance(model.task, ReplicasTask):
            train = folder / "model" / "train_series.npy"
            values = np.load(train) if train.is_file() else np.zeros(0)
            replicas, _ = ReplicasTask().fit_to_data(values, model.interval_s)
        planners.append((label, Planner.from_model(model, replicas)))
    return planners


def run_backtest(
    out: Path, labels: Sequence[str], seed: int, series: Series, slo_target: float, online: bool
) -> Path | None:
    """The backtest a run adds to its report: the run's models of ``seed`` replayed over
    ``series`` into ``OUT/backtest``; ``None`` when no unit of that seed is done."""
    planners = run_planners(out, labels, seed)
    if not planners:
        log.warning("backtest: no finished unit of seed %d to replay", seed)
        return None
    from drdfl.report.operate import BACKTEST_DIR

    result = replay(series, planners, slo_target, online)
    return write_backtest(result, out / BACKTEST_DIR, series.name)


#: what ``drdfl diffusion sample --run`` can write → the array of a 3D-Learning unit
STRESS_SETS = {"worst-case": "worst_case", "reference": "worst_case_off"}


def run_segments(
    out: str | Path, which: str = "worst-case", seed: int | None = None
) -> tuple[np.ndarray, float, Path]:
    """A run's 3D-Learning segments in tokens per slot: its worst cases (``worst-case``,
    adversary on) or θ₀'s tails from the same states (``reference``), of ``seed`` (the
    lowest with them by default); with the slot length and the file they came from."""
    import json

    from drdfl.artifacts import load_array
    from drdfl.data.windows import Scaler
    from drdfl.errors import DataError

    if which not in STRESS_SETS:
        raise ConfigError(f"--which {which!r}: choose {' or '.join(STRESS_SETS)}")
    units = Path(out) / "units"
    if not units.is_dir():
        raise DataError(f"{out}: not a drdfl run directory (no units/)")
    name = STRESS_SETS[which]
    seeds = sorted(
        int(p.parent.name.rsplit("-s", 1)[1])
        for p in units.glob(f"threed-s*/{name}.npy")
        if p.parent.name.rsplit("-s", 1)[1].isdigit()
    )
    if seed is None and not seeds:
        raise DataError(
            f"{units}: no 3D-Learning unit kept {name}.npy; run the threed method "
            "(method_params.threed.keep_worst > 0)"
        )
    chosen = seeds[0] if seed is None else seed
    folder = units / unit_key("threed", chosen)
    path = folder / f"{name}.npy"
    if not path.is_file():
        raise DataError(f"{path}: not found (seeds with {name}: {seeds or 'none'})")
    meta_path = folder / "model" / "model.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        scaler = Scaler.from_dict(meta["scaler"])
        interval_s = float(meta.get("interval_s", 5.0))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_path}: not a readable model description ({exc})") from None
    segments = load_array(path)
    return (
        np.clip(scaler.inverse_transform(segments.astype(np.float64)), 0.0, None),
        interval_s,
        path,
    )


__all__ = [
    "STRESS_SETS",
    "backtest_model",
    "replay",
    "run_backtest",
    "run_planners",
    "run_segments",
    "write_backtest",
]
