"""Reading a run's output directory (the files :mod:`drdfl.records` describes), and
refusing one that is incomplete."""

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
from drdfl.records import (
    CONFIG_FILE,
    FAILED_FILE,
    HISTORIES_FILE,
    HISTORY_KEYS,
    QUALITY_FILE,
    RECORD_FILE,
    REFERENCE_DIR,
    RESULT_COLUMNS,
    RESULTS_FILE,
    SAMPLE_SETS,
    SAMPLES_FILE,
    TIMING_COLUMNS,
    TIMINGS_FILE,
    GateResult,
    unit_key,
)

_REBUILD = "`drdfl run --resume` with the run's configuration rebuilds it from the units"


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
    gates: dict[int, GateResult] = field(default_factory=dict)
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


def _read_gate(path: Path) -> GateResult:
    record = _read_json(path)
    try:
        return GateResult.from_dict(record)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


def _read_gates(out: Path) -> dict[int, GateResult]:
    gates = {}
    for path in sorted((out / REFERENCE_DIR).glob(f"s*/{QUALITY_FILE}")):
        name = path.parent.name[1:]
        if not name.isdigit():
            raise DataError(f"{path}: folder {path.parent.name!r} is not s<seed>")
        gates[int(name)] = _read_gate(path)
    return dict(sorted(gates.items()))


def failed_units(run: RunOutputs) -> list[str]:
    """Units the run reports as failed or not run, as their :func:`~drdfl.records.unit_key`:
    ``results.json``'s ``failed`` and ``failed.json`` (names, or records with a ``trial``
    name whose last ``/``-part is the unit)."""
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
    either way except the units listed as failed; else
    nothing (a sweep's combined results name their points in ``points``).
    """
    failed = set(failed_units(run))
    units = run.meta.get("units")
    if isinstance(units, list):
        try:
            planned = [(str(u["label"]), int(u["seed"])) for u in units]
            return [u for u in planned if unit_key(*u) not in failed], "results.json units"
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{run.out_dir / RECORD_FILE}: 'units' must be a list of "
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
            raise DataError(f"{run.out_dir / CONFIG_FILE}: not valid TOML ({exc})") from None
        source = "config.toml"
    if not isinstance(config, dict):
        return [], "nothing (no results.json config, no config.toml)"
    methods, seeds = config.get("methods"), config.get("seeds")
    if not isinstance(methods, list) or not isinstance(seeds, list):
        return [], f"nothing ({source} lacks methods or seeds)"
    planned = [(str(m), int(s)) for s in seeds for m in methods]
    return [u for u in planned if unit_key(*u) not in failed], source


def check_complete(run: RunOutputs) -> None:
    """Refuse results that lack an expected unit, method, seed, test set or metric.

    Within each suite, every ``(method, seed)`` scored there has every test set of the
    suite with every metric of the suite; every planned ``(label, seed)`` has results;
    every label has every seed of the run; ``results.json``'s copy of the rows (when
    present) has no more rows than ``results.csv``.
    """
    r = run.results
    path = run.out_dir / RESULTS_FILE
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
        missing = sorted(s for s in seeds - set(part["seed"]) if unit_key(method, s) not in failed)
        if missing:
            raise DataError(
                f"{path}: method {method!r} has no results for seed(s) "
                f"{', '.join(map(str, missing))} that other methods have ({_REBUILD})"
            )


def load_run(out_dir: str | Path) -> RunOutputs:
    """Read and check a run's output directory; raise :class:`DataError` on any gap."""
    out = Path(out_dir)
    path = out / RESULTS_FILE
    if not path.is_file():
        hint = f"; {_REBUILD}" if (out / "units").is_dir() else ""
        raise DataError(f"{path}: not found; a report needs the results of a finished run{hint}")
    results = _read_csv(path, RESULT_COLUMNS, ("method", "suite", "test_set", "metric"))
    if results.empty:
        raise DataError(f"{path}: no rows")
    keys = list(RESULT_COLUMNS[:-1])
    duplicated = results.duplicated(keys)
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(
            f"{path}, line {row + 2}: a second value for "
            + ", ".join(f"{k}={results[k].iloc[row]}" for k in keys)
        )
    run = RunOutputs(out, results.astype({"seed": np.int64}))
    if (out / HISTORIES_FILE).is_file() and (out / HISTORIES_FILE).stat().st_size > 1:
        run.histories = _read_csv(out / HISTORIES_FILE, HISTORY_KEYS, ("method",))
    if (out / TIMINGS_FILE).is_file() and (out / TIMINGS_FILE).stat().st_size > 1:
        run.timings = _read_csv(out / TIMINGS_FILE, TIMING_COLUMNS, ("method", "stage"))
    if (out / SAMPLES_FILE).is_file():
        run.samples = _read_samples(out / SAMPLES_FILE)
    if (out / CONFIG_FILE).is_file():
        run.config_text = (out / CONFIG_FILE).read_text(encoding="utf-8")
    if (out / RECORD_FILE).is_file():
        meta = _read_json(out / RECORD_FILE)
        run.meta = meta if isinstance(meta, dict) else {}
    if (out / FAILED_FILE).is_file():
        failed = _read_json(out / FAILED_FILE)
        if not isinstance(failed, list):
            raise DataError(f"{out / FAILED_FILE}: expected a list of failed units")
        run.failed = failed
    run.gates = _read_gates(out)
    check_complete(run)
    return run
