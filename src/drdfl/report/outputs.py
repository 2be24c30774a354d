"""Reading a run's output directory, and refusing one that is incomplete.

Inputs (``OUT`` is the run's output directory; only ``results.csv`` is required):

* ``results.csv``: tidy ``method, seed, suite, test_set, metric, value``;
* ``histories.csv``: ``method, seed, epoch`` plus the per-epoch columns of
  :data:`~drdfl.methods.registry.SHARED_HISTORY` and of each method's registry entry;
* ``timings.csv``: ``method, seed, stage, seconds``;
* ``samples.npz``: segments ``[n, L]`` named ``real``, ``generated``, ``worst_case``
  (the adversary on) and ``worst_case_off`` (the same draw with the adversary off);
* ``results.json``: ``profile``, ``config`` (the resolved configuration), ``notes``,
  ``versions``, optionally ``units`` (the planned ``{"label", "seed"}`` pairs) and
  ``results`` (the rows of ``results.csv``, used to detect a truncated copy);
* ``failed.json`` (or ``results.json``'s ``failed``): units that failed or did not run,
  as ``<label>-s<seed>`` names or ``{"trial": ...}`` records; they are listed, not required;
* ``config.toml``: the resolved configuration (shown; its ``methods`` and ``seeds`` are
  the expected grid when ``results.json`` has no ``config``);
* ``reference/s<seed>/quality.json``: the quality gate of the seed's reference diffusion
  model, ``{"status": "passed"|"failed"|"unjudged", "criteria": [{"name", "value",
  "reference", "tolerance", "passed", "low", "high"}], "reason", "sampler", ...}`` (the
  accepted bounds ``low``, ``high`` are optional: ``reference ± tolerance`` without them).
"""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drdfl.errors import DataError

RESULTS_COLUMNS = ("method", "seed", "suite", "test_set", "metric", "value")
_HISTORIES = ("method", "seed", "epoch")
_TIMINGS = ("method", "seed", "stage", "seconds")
#: arrays of ``samples.npz`` the report shows, with what each holds
SAMPLE_SETS = {
    "real": "real normalized training segments",
    "generated": "segments of the reference diffusion model θ₀",
    "worst_case": "3D-Learning's worst cases (adversary on)",
    "worst_case_off": "the same draw with the adversary off (θ₀'s tails)",
}
GATE_STATUSES = ("passed", "failed", "unjudged")
_REBUILD = "`drdfl run --resume` with the run's configuration rebuilds it from the units"


@dataclass(frozen=True)
class GateCriterion:
    """One check of the reference-model quality gate, as saved (read without torch): the
    generated ``value`` must lie in ``[low, high]``."""

    name: str
    value: float
    reference: float
    tolerance: float
    passed: bool
    low: float
    high: float


@dataclass(frozen=True)
class QualityGate:
    """The quality-gate verdict on one seed's reference diffusion model."""

    seed: int
    status: str
    criteria: tuple[GateCriterion, ...] = ()
    reason: str | None = None
    sampler: str | None = None


@dataclass
class RunOutputs:
    """What a run left in its output directory (``None`` or empty where a file is absent)."""

    out_dir: Path
    results: pd.DataFrame
    histories: pd.DataFrame | None = None
    timings: pd.DataFrame | None = None
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    config_text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    gates: dict[int, QualityGate] = field(default_factory=dict)
    #: ``failed.json``: units that failed or did not run
    failed: list[Any] = field(default_factory=list)


def _read_csv(path: Path, required: Sequence[str], text: Sequence[str]) -> pd.DataFrame:
    """``path`` with ``required`` columns; ``text`` columns as strings, the rest numeric.

    A last line without its line end, or a row with fewer fields than the header, is a
    truncated file. Empty cells are missing values (NaN), as pandas writes them.
    """
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raise DataError(f"{path}: truncated (the last line has no line end)")
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}"
        )
    # pandas pads a short row with empty cells, so count the fields of every record.
    records = csv.reader(io.StringIO(raw.decode("utf-8", errors="replace"), newline=""))
    width = frame.shape[1]
    for k, record in enumerate(records):
        if record and len(record) != width:
            raise DataError(
                f"{path}, line {k + 1}: {len(record)} fields, expected {width} (truncated?)"
            )
    for column in frame.columns:
        if column in text:
            continue
        cells = frame[column].str.strip()
        values = pd.to_numeric(cells.replace("", np.nan), errors="coerce")
        bad = values.isna() & (cells != "") & ~cells.str.lower().isin(["nan", "inf", "-inf"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}, line {row + 2}: column {column!r} is {frame[column].iloc[row]!r}, "
                "expected a number"
            )
        frame[column] = values.astype(np.float64)
    if "seed" in frame and frame["seed"].isna().any():
        row = int(np.flatnonzero(frame["seed"].isna().to_numpy())[0])
        raise DataError(f"{path}, line {row + 2}: seed is empty, expected an integer")
    return frame


def _read_samples(path: Path) -> dict[str, np.ndarray]:
    samples = {}
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    with archive:
        for key in SAMPLE_SETS:
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _read_gate(path: Path, seed: int) -> QualityGate:
    data = _read_json(path)
    status = data.get("status") if isinstance(data, dict) else None
    if status not in GATE_STATUSES:
        raise DataError(f"{path}: 'status' is {status!r}, expected one of {GATE_STATUSES}")
    criteria = []
    for k, item in enumerate(data.get("criteria") or []):
        try:
            reference, tolerance = float(item["reference"]), float(item["tolerance"])
            criteria.append(
                GateCriterion(
                    str(item["name"]),
                    float(item["value"]),
                    reference,
                    tolerance,
                    bool(item["passed"]),
                    float(item.get("low", reference - tolerance)),
                    float(item.get("high", reference + tolerance)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{path}: criteria[{k}] is malformed ({exc}); expected name, value, "
                "reference, tolerance, passed"
            ) from None
    reason, sampler = data.get("reason"), data.get("sampler")
    return QualityGate(
        seed,
        status,
        tuple(criteria),
        str(reason) if reason else None,
        str(sampler) if sampler else None,
    )


def _read_gates(out: Path) -> dict[int, QualityGate]:
    gates = {}
    for path in sorted((out / "reference").glob("s*/quality.json")):
        name = path.parent.name[1:]
        if not name.isdigit():
            raise DataError(f"{path}: folder {path.parent.name!r} is not s<seed>")
        gates[int(name)] = _read_gate(path, int(name))
    return dict(sorted(gates.items()))


def failed_units(run: RunOutputs) -> list[str]:
    """Units the run reports as failed or not run, as ``<label>-s<seed>``: ``results.json``'s
    ``failed`` and ``failed.json`` (names, or records with a ``trial`` name whose last
    ``/``-part is the unit)."""
    names = []
    for entry in [*(run.meta.get("failed") or []), *run.failed]:
        name = entry.get("trial") if isinstance(entry, dict) else entry
        if name is not None:
            names.append(str(name).rpartition("/")[2])
    return list(dict.fromkeys(names))


def expected_grid(run: RunOutputs) -> tuple[list[tuple[str, int]], str]:
    """The ``(label, seed)`` pairs the run planned, and where that came from.

    ``results.json``'s ``units`` when present; else, for a single run, every configured
    method for every configured seed (``results.json``'s ``config`` or ``config.toml``);
    either way except the units listed in ``failed`` (as ``<label>-s<seed>``); else
    nothing (a sweep's combined results name their points in ``points``).
    """
    failed = set(failed_units(run))
    units = run.meta.get("units")
    if isinstance(units, list):
        try:
            planned = [(str(u["label"]), int(u["seed"])) for u in units]
            return [u for u in planned if f"{u[0]}-s{u[1]}" not in failed], "results.json units"
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{run.out_dir / 'results.json'}: 'units' must be a list of "
                '{"label": ..., "seed": ...}'
            ) from None
    if "points" in run.meta:
        return [], "nothing (a sweep's combined results list no units)"
    config = run.meta.get("config")
    source = "results.json config"
    if not isinstance(config, dict) and run.config_text:
        try:
            config = tomllib.loads(run.config_text)
        except tomllib.TOMLDecodeError as exc:
            raise DataError(f"{run.out_dir / 'config.toml'}: not valid TOML ({exc})") from None
        source = "config.toml"
    if not isinstance(config, dict):
        return [], "nothing (no results.json config, no config.toml)"
    methods, seeds = config.get("methods"), config.get("seeds")
    if not isinstance(methods, list) or not isinstance(seeds, list):
        return [], f"nothing ({source} lacks methods or seeds)"
    return [(str(m), int(s)) for s in seeds for m in methods if f"{m}-s{s}" not in failed], source


def check_complete(run: RunOutputs) -> None:
    """Refuse results that lack an expected unit, method, seed, test set or metric.

    Within each suite, every ``(method, seed)`` scored there has every test set of the
    suite with every metric of the suite; every planned ``(label, seed)`` has results;
    every label has every seed of the run; ``results.json``'s copy of the rows (when
    present) has no more rows than ``results.csv``.
    """
    r = run.results
    path = run.out_dir / "results.csv"
    recorded = run.meta.get("results")
    if isinstance(recorded, list) and len(recorded) > len(r):
        raise DataError(
            f"{path}: {len(r)} rows but results.json records {len(recorded)}; the file is "
            f"incomplete ({_REBUILD})"
        )
    for suite, rows in r.groupby("suite", sort=False):
        tests = list(dict.fromkeys(rows["test_set"]))
        metrics = list(dict.fromkeys(rows["metric"]))
        cells = rows.groupby(["method", "seed"], sort=False)
        for (method, seed), part in cells:
            have = set(zip(part["test_set"], part["metric"], strict=True))
            gaps = [(t, m) for t in tests for m in metrics if (t, m) not in have]
            if gaps:
                shown = ", ".join(f"{t}/{m}" for t, m in gaps[:4])
                more = f" and {len(gaps) - 4} more" if len(gaps) > 4 else ""
                raise DataError(
                    f"{path}: method {method!r} seed {seed} on suite {suite!r} lacks "
                    f"{shown}{more} ({_REBUILD})"
                )
    present = set(zip(r["method"], r["seed"], strict=True))
    expected, source = expected_grid(run)
    absent = [pair for pair in expected if pair not in present]
    if absent:
        shown = ", ".join(f"{m} seed {s}" for m, s in absent[:6])
        raise DataError(
            f"{path}: no results for {shown}{' …' if len(absent) > 6 else ''}, expected by "
            f"{source} ({_REBUILD})"
        )
    seeds = set(r["seed"])
    failed = set(failed_units(run))
    for method, part in r.groupby("method", sort=False):
        missing = sorted(s for s in seeds - set(part["seed"]) if f"{method}-s{s}" not in failed)
        if missing:
            raise DataError(
                f"{path}: method {method!r} has no results for seed(s) "
                f"{', '.join(map(str, missing))} that other methods have ({_REBUILD})"
            )


def load_run(out_dir: str | Path) -> RunOutputs:
    """Read and check a run's output directory; raise :class:`DataError` on any gap."""
    out = Path(out_dir)
    path = out / "results.csv"
    if not path.is_file():
        hint = f"; {_REBUILD}" if (out / "units").is_dir() else ""
        raise DataError(f"{path}: not found; a report needs the results of a finished run{hint}")
    results = _read_csv(path, RESULTS_COLUMNS, ("method", "suite", "test_set", "metric"))
    if results.empty:
        raise DataError(f"{path}: no rows")
    keys = list(RESULTS_COLUMNS[:-1])
    duplicated = results.duplicated(keys)
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(
            f"{path}, line {row + 2}: a second value for "
            + ", ".join(f"{k}={results[k].iloc[row]}" for k in keys)
        )
    run = RunOutputs(out, results.astype({"seed": np.int64}))
    if (out / "histories.csv").is_file() and (out / "histories.csv").stat().st_size > 1:
        run.histories = _read_csv(out / "histories.csv", _HISTORIES, ("method",))
    if (out / "timings.csv").is_file() and (out / "timings.csv").stat().st_size > 1:
        run.timings = _read_csv(out / "timings.csv", _TIMINGS, ("method", "stage"))
    if (out / "samples.npz").is_file():
        run.samples = _read_samples(out / "samples.npz")
    if (out / "config.toml").is_file():
        run.config_text = (out / "config.toml").read_text(encoding="utf-8")
    if (out / "results.json").is_file():
        meta = _read_json(out / "results.json")
        run.meta = meta if isinstance(meta, dict) else {}
    if (out / "failed.json").is_file():
        failed = _read_json(out / "failed.json")
        if not isinstance(failed, list):
            raise DataError(f"{out / 'failed.json'}: expected a list of failed units")
        run.failed = failed
    run.gates = _read_gates(out)
    check_complete(run)
    return run
