"""``drdfl sweep``: the units of ``drdfl run`` as Ray Tune trials, over a grid of configs.

A sweep takes a base configuration and a *grid*: config keys, each with a list of values.
Every combination is a *point*, run as one :class:`~drdfl.pipeline.Run` with its own
units. Without a grid the only point is the base config and its run lives in ``OUT``
itself (the same layout as ``drdfl run``); with a grid each point lives in
``OUT/points/<point>/`` with its own tables and report, and ``OUT`` holds the combined
tables, in which every method label carries its point (``dfl[lr=0.003]``), and the
combined report.

Each unit, and each reference diffusion model that units share, is one Tune trial in its
own worker process writing into the shared ``OUT`` (on a cluster ``OUT`` and the cache must
be on a shared filesystem). Trials run in two waves so that what a unit needs exists before
it starts: the first holds the units that need nothing and the reference models, the
second the units that warm-start from DFL or start from a reference model. A failed trial
is retried once (``FailureConfig(max_failures=1)``); one that fails again is listed in
``OUT/failed.json`` with its error, and the units that needed it are listed there as not
run. ``OUT/trials.json`` records every trial (status, attempts, seconds).

``DRDFL_SWEEP_FAIL`` deliberately fails trials to exercise this handling:
``"N:GLOB[;N:GLOB…]"`` makes the first ``N`` attempts of each trial whose id matches
``GLOB`` (``fnmatch``) raise :class:`InjectedFailure`.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm.auto import tqdm

from drdfl._io import atomic_open, write_json, write_text
from drdfl.config import ExperimentConfig, apply_overrides, config_to_toml, parse_model
from drdfl.errors import ConfigError, DrdflError

# The pipeline (torch, pandas, the solvers) is imported where units are planned and run:
# a trial's worker process then loads it once per trial at most, and a trial that fails
# before its unit starts costs no more than the worker itself.
if TYPE_CHECKING:
    import pandas as pd

    from drdfl.pipeline import Run, Unit

log = logging.getLogger("drdfl.sweep")

#: Keys that already span the trials of every point: a grid over them is refused.
NOT_GRIDDED = ("seeds", "methods")
#: Environment variables a trial takes over from the caller (paths made absolute).
FORWARDED_ENV = ("DRDFL_DATA_DIR", "DRDFL_CACHE_DIR", "DRDFL_OFFLINE")
FAIL_ENV = "DRDFL_SWEEP_FAIL"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class InjectedFailure(RuntimeError):
    """A failure requested through ``DRDFL_SWEEP_FAIL``."""


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.tune  # Ray without its tune extra lacks Tune's dependencies
    except ImportError:
        raise DrdflError(
            "drdfl sweep needs Ray Tune, which is not installed; install it with "
            "pip install 'drdfl[sweep]' (or pip install 'ray[tune]')"
        ) from None
    return ray


# ----------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class Point:
    """One combination of grid values and the config it gives."""

    id: str
    label: str
    values: dict[str, Any]
    cfg: ExperimentConfig


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``--grid key.path=v1,v2,…`` options as ``{key: [values]}`` (values parsed like
    ``--set``'s)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--grid {item!r}: expected key.path=value1,value2,…")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        node: Any = apply_overrides({}, [f"{key}={text.strip()}"])
        for part in key.split("."):
            node = node[part]
        grid[key] = node if isinstance(node, list) else [node]
    return grid


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest suffix that no other key ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o == suffix or o.endswith("." + suffix) for o in keys if o != key):
                break
        short[key] = suffix
    return short


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"--grid {key}: {'.'.join(parts[: depth + 1])} is a value, not a section"
            )
        node = child
    node[parts[-1]] = value


def expand_grid(cfg: ExperimentConfig, grid: dict[str, list[Any]]) -> list[Point]:
    """Every point of ``grid`` over ``cfg`` (the cartesian product, in the order given),
    each validated; no grid gives the single point of ``cfg`` itself."""
    if not grid:
        return [Point("", "", {}, cfg)]
    for key, values in grid.items():
        if key in NOT_GRIDDED:
            raise ConfigError(
                f"--grid {key}: every point already runs all {key}; set them with --set {key}=…"
            )
        if not values:
            raise ConfigError(f"--grid {key}: no values")
        shown = [_format_value(v) for v in values]
        if len(set(shown)) < len(shown):
            raise ConfigError(f"--grid {key}: a value is repeated ({', '.join(shown)})")
    keys = list(grid)
    short = _short_keys(keys)
    base = cfg.model_dump(mode="json")
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        data = copy.deepcopy(base)
        for key, value in zip(keys, combo, strict=True):
            _set_path(data, key, value)
        label = ",".join(f"{short[k]}={_format_value(v)}" for k, v in zip(keys, combo, strict=True))
        try:
            point_cfg = parse_model(ExperimentConfig, data)
        except ConfigError as exc:
            raise ConfigError(f"grid point {label}: {exc}") from None
        assert isinstance(point_cfg, ExperimentConfig)
        values = dict(zip(keys, combo, strict=True))
        points.append(Point(_UNSAFE.sub("_", label), label, values, point_cfg))
    ids = [p.id for p in points]
    if len(set(ids)) < len(ids):
        raise ConfigError(
            f"--grid: values that differ only in characters unsafe in a folder name ({ids})"
        )
    return points


# ----------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class Trial:
    """One Tune trial: a unit of a point, or the reference diffusion model of a seed."""

    id: str
    point: int
    kind: Literal["unit", "reference"]
    seed: int
    unit: Unit | None = None
    needs: tuple[str, ...] = ()


def _trial_id(point: Point, name: str) -> str:
    return f"{point.id}/{name}" if point.id else name


def plan_trials(points: list[Point], runs: list[Run], resume: bool = False) -> list[list[Trial]]:
    """The trials still to run, in two waves: the second needs trials of the first.

    Reference diffusion models are shared by points whose data and diffusion settings
    agree (same cache directory), so each is trained by one trial.
    """
    from drdfl.pipeline import COLD, GENERATIVE, Unit

    first: list[Trial] = []
    second: list[Trial] = []
    references: dict[Path, str] = {}
    for index, (point, run) in enumerate(zip(points, runs, strict=True)):
        for unit in run.units:
            if resume and run.is_done(unit):
                continue
            needs = []
            if run.cfg.warm_start_from_dfl and unit.method not in COLD:
                dfl = Unit("dfl", unit.seed, "dfl")
                if not (resume and run.is_done(dfl)):
                    needs.append(_trial_id(point, dfl.key))
            if unit.method in GENERATIVE and "diffusion" not in unit.params:
                path = run.reference_dir(unit.seed)
                if path not in references:
                    references[path] = _trial_id(point, f"reference-s{unit.seed}")
                    first.append(Trial(references[path], index, "reference", unit.seed))
                needs.append(references[path])
            trial = Trial(_trial_id(point, unit.key), index, "unit", unit.seed, unit, tuple(needs))
            (second if needs else first).append(trial)
    return [wave for wave in (first, second) if wave]


def _fail_rules(text: str | None) -> list[tuple[int, str]]:
    """``DRDFL_SWEEP_FAIL`` as (attempts to fail, glob) pairs."""
    rules = []
    for entry in (text or "").split(";"):
        if not entry.strip():
            continue
        count, sep, pattern = entry.strip().partition(":")
        if not sep or not count.isdigit() or not pattern:
            raise ConfigError(f"{FAIL_ENV}={text!r}: expected N:GLOB[;N:GLOB…]")
        rules.append((int(count), pattern))
    return rules


def _attempt_file(out: Path, trial_id: str) -> Path:
    return out / "tune" / "attempts" / (trial_id.replace("/", "__") + ".log")


def _attempts(out: Path, trial_id: str) -> int:
    path = _attempt_file(out, trial_id)
    return len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0


def run_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable: run one trial described by ``config["trial"]``."""
    from ray import tune

    spec = config["trial"]
    # Tune starts a trial in its own working directory; relative paths in the config
    # (data_dir, test files) mean what they meant to the caller.
    if os.path.isdir(spec["cwd"]):
        os.chdir(spec["cwd"])
    os.environ.update(spec["env"])
    out = Path(spec["out"])
    attempts = _attempt_file(out, spec["id"])
    attempts.parent.mkdir(parents=True, exist_ok=True)
    with attempts.open("a", encoding="utf-8") as handle:
        handle.write(f"{time.time():.3f} {socket.gethostname()} {os.getpid()}\n")
    attempt = _attempts(out, spec["id"])
    if attempt <= spec["fail"]:
        raise InjectedFailure(f"{spec['id']}: injected failure of attempt {attempt} ({FAIL_ENV})")

    import torch

    from drdfl.pipeline import Run

    torch.set_num_threads(spec["threads"])
    cfg = ExperimentConfig.model_validate(spec["config"])
    run = Run(cfg, spec["dir"], resume=True, progress=False, cache=spec["cache"])
    start = time.perf_counter()
    if spec["kind"] == "reference":
        path, trained = run.reference(spec["seed"])
        summary: dict[str, Any] = {"reference": str(path), "train_s": trained}
        line = f"{spec['id']}: reference model {'trained' if trained else 'cached'} in {path}"
    else:
        unit = next(u for u in run.units if u.key == spec["unit"])
        summary = run.run_unit(unit)
        line = (
            f"{spec['id']}: train {summary['train_s']:.1f}s, normalized regret avg "
            f"{summary['avg_normalized_regret']:.4f} max {summary['max_normalized_regret']:.4f}"
        )
    handler = logging.FileHandler(Path(spec["dir"]) / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    unit_log = logging.getLogger("drdfl")
    unit_log.addHandler(handler)
    unit_log.setLevel(logging.INFO)
    unit_log.info(line)
    unit_log.removeHandler(handler)
    handler.close()
    tune.report(
        {**summary, "line": line, "attempt": attempt, "seconds": time.perf_counter() - start}
    )


# ----------------------------------------------------------------------------- sweep


@dataclass
class SweepResult:
    """What a sweep left: the combined table, every trial's record, and the failures."""

    out: Path
    results: pd.DataFrame
    points: list[Point]
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Trials that failed (after their retry) or were not run for a failed need."""
        return [t for t in self.trials if t["status"] != "done"]


class Sweep:
    """A grid of runs into ``out`` whose units run as Ray Tune trials."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        out: str | Path,
        grid: dict[str, list[Any]] | None = None,
        resume: bool = False,
        address: str | None = None,
        cpus_per_trial: int = 1,
        num_cpus: int | None = None,
        progress: bool = True,
        cache: str | Path | None = None,
    ) -> None:
        if cpus_per_trial < 1:
            raise ConfigError(f"cpus_per_trial: must be at least 1 (got {cpus_per_trial})")
        from drdfl.pipeline import Run

        self.cfg = cfg
        self.out = Path(out).resolve()
        self.grid = dict(grid or {})
        self.resume = resume
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.num_cpus = num_cpus
        self.progress = progress
        if cache is None:
            from drdfl.data.registry import cache_dir

            cache = cache_dir() / "diffusion"
        self.cache = Path(cache).resolve()
        self.points = expand_grid(cfg, self.grid)
        self.runs = [
            Run(p.cfg, self.point_dir(p), resume, progress=False, cache=self.cache)
            for p in self.points
        ]
        self.fail_rules = _fail_rules(os.environ.get(FAIL_ENV))

    def point_dir(self, point: Point) -> Path:
        return self.out / "points" / point.id if point.id else self.out

    # ---------------------------------------------------------------- setup
    def prepare(self) -> None:
        """Create ``out`` and every point's directory (refusing to mix with another sweep
        unless resuming the same grid)."""
        spec = {
            "grid": {k: [_format_value(v) for v in vs] for k, vs in self.grid.items()},
            "points": [{"id": p.id, "label": p.label} for p in self.points],
        }
        previous = self.out / "sweep.json"
        if previous.is_file():
            if not self.resume:
                raise ConfigError(
                    f"{self.out} already holds a sweep; pass --resume to continue it or "
                    "choose another --out"
                )
            if json.loads(previous.read_text(encoding="utf-8")) != spec:
                raise ConfigError(
                    f"{previous}: the grid differs from this sweep's; resume with the same --grid"
                )
        elif self.grid and (self.out / "units").is_dir() and not self.resume:
            raise ConfigError(f"{self.out} already holds a run; choose another --out")
        drdfl_log = logging.getLogger("drdfl")
        for run in self.runs:
            before = set(drdfl_log.handlers)
            run.prepare_dir()
            # Trials log into their point's run.log themselves; the driver logs to sweep.log.
            for handler in set(drdfl_log.handlers) - before:
                drdfl_log.removeHandler(handler)
                handler.close()
        if self.grid:
            write_text(self.out / "config.toml", config_to_toml(self.cfg))
        write_json(previous, spec)
        handler = logging.FileHandler(self.out / "sweep.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.handlers = [handler]
        log.setLevel(logging.INFO)
        log.propagate = False

    def _spec(self, trial: Trial) -> dict[str, Any]:
        run = self.runs[trial.point]
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        for key in ("DRDFL_DATA_DIR", "DRDFL_CACHE_DIR"):
            if key in env:
                env[key] = str(Path(env[key]).resolve())
        return {
            "id": trial.id,
            "point": self.points[trial.point].label,
            "kind": trial.kind,
            "seed": trial.seed,
            "unit": trial.unit.key if trial.unit else None,
            "dir": str(run.out),
            "out": str(self.out),
            "config": run.cfg.model_dump(mode="json"),
            "cache": str(self.cache),
            "threads": self.cpus_per_trial,
            "cwd": os.getcwd(),
            "env": env,
            "fail": max(
                (n for n, pattern in self.fail_rules if fnmatch.fnmatchcase(trial.id, pattern)),
                default=0,
            ),
        }

    # ---------------------------------------------------------------- waves
    def _run_wave(self, index: int, trials: list[Trial]) -> list[dict[str, Any]]:
        """Run ``trials`` as one Tune experiment; one record per trial."""
        from ray import tune

        for trial in trials:
            _attempt_file(self.out, trial.id).unlink(missing_ok=True)
        specs = {t.id: self._spec(t) for t in trials}
        use_gpu = any(s["config"]["device"].startswith("cuda") for s in specs.values())
        resources = {"cpu": self.cpus_per_trial, **({"gpu": 1} if use_gpu else {})}
        bar = tqdm(
            total=len(trials), desc=f"wave {index + 1}", unit="trial", disable=not self.progress
        )
        tuner = tune.Tuner(
            tune.with_resources(run_trial, resources),
            param_space={"trial": tune.grid_search(list(specs.values()))},
            # Trials run in worker processes, never in the driver. A finished trial's
            # worker is reused by the next one (saving the import of torch & co.); a failed
            # trial's worker is discarded by Tune, so its retry starts in a fresh process.
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(
                name=f"{time.strftime('%Y%m%d-%H%M%S')}-wave{index + 1}",
                storage_path=str(self.out / "tune"),
                failure_config=tune.FailureConfig(max_failures=1),
                callbacks=[_progress_callback(bar)],
                verbose=0,
            ),
        )
        grid = tuner.fit()
        bar.close()
        records = []
        for result in grid:
            spec = result.config["trial"]
            record = {
                "trial": spec["id"],
                "point": spec["point"],
                "kind": spec["kind"],
                "unit": spec["unit"],
                "seed": spec["seed"],
                "attempts": _attempts(self.out, spec["id"]),
                "tune_dir": str(result.path),
            }
            metrics = result.metrics or {}
            if result.error is None and "line" in metrics:
                record.update(status="done", seconds=metrics["seconds"])
            else:
                # An interrupted experiment leaves trials with neither a result nor an error.
                text = _ANSI.sub("", str(result.error or "did not finish (interrupted)")).strip()
                record.update(
                    status="failed", error=_last_error_line(text), traceback=text, seconds=None
                )
                log.error(
                    "%s failed after %d attempts: %s",
                    spec["id"],
                    record["attempts"],
                    record["error"],
                )
            records.append(record)
        order = {t.id: i for i, t in enumerate(trials)}
        return sorted(records, key=lambda r: order[r["trial"]])

    def execute(self) -> SweepResult:
        """Run every trial not yet done, then assemble the tables and reports."""
        self.prepare()
        try:
            waves = plan_trials(self.points, self.runs, self.resume)
            log.info(
                "sweep of %d point(s): %d trial(s) in %d wave(s)",
                len(self.points),
                sum(len(w) for w in waves),
                len(waves),
            )
            records = self._run_waves(waves) if waves else []
            result = self.assemble(records)
            log.info(
                "sweep finished: %d trial(s) done, %d failed or not run",
                len(records) - len(result.failed),
                len(result.failed),
            )
            return result
        finally:
            for handler in log.handlers:
                handler.close()
            log.handlers = []

    def _run_waves(self, waves: list[list[Trial]]) -> list[dict[str, Any]]:
        """Run the waves on Ray (joining ``address`` or starting a local instance unless
        one is running); a trial whose need failed is recorded as not run."""
        ray = require_ray()
        started = not ray.is_initialized()
        if started:
            init: dict[str, Any] = {"address": self.address, "log_to_driver": False}
            if self.address is None:
                init.update(num_cpus=self.num_cpus, include_dashboard=False)
            ray.init(**init)
        records: list[dict[str, Any]] = []
        failed: set[str] = set()
        try:
            for index, wave in enumerate(waves):
                runnable = []
                for trial in wave:
                    blocked = [n for n in trial.needs if n in failed]
                    if blocked:
                        failed.add(trial.id)
                        records.append(_not_run(trial, self.points[trial.point].label, blocked))
                        log.error("%s not run: %s failed", trial.id, ", ".join(blocked))
                    else:
                        runnable.append(trial)
                if runnable:
                    done = self._run_wave(index, runnable)
                    failed.update(r["trial"] for r in done if r["status"] != "done")
                    records.extend(done)
        finally:
            if started:
                ray.shutdown()
        return records

    # ---------------------------------------------------------------- assemble
    def assemble(self, records: list[dict[str, Any]]) -> SweepResult:
        """Each point's tables and report, then (with a grid) the combined ones in ``out``;
        ``trials.json`` and ``failed.json``."""
        import pandas as pd

        from drdfl.evaluation.report import build_report
        from drdfl.pipeline import versions

        write_json(self.out / "trials.json", records)
        write_json(self.out / "failed.json", [r for r in records if r["status"] != "done"])
        tables = []
        for run in self.runs:
            table = run.assemble()
            if len(table):
                build_report(run.out)
            tables.append(table)
        if not self.grid:
            return SweepResult(self.out, tables[0], self.points, records)
        combined = {name: [] for name in ("results.csv", "histories.csv", "timings.csv")}
        for point, run in zip(self.points, self.runs, strict=True):
            for name, parts in combined.items():
                path = run.out / name
                if path.is_file() and path.stat().st_size > 1:
                    frame = pd.read_csv(path, dtype={"method": str})
                    frame["method"] = frame["method"] + f"[{point.label}]"
                    parts.append(frame)
        frames = {}
        for name, parts in combined.items():
            frames[name] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            with atomic_open(self.out / name, "w", newline="") as handle:
                frames[name].to_csv(handle, index=False)
        table = frames["results.csv"]
        write_json(
            self.out / "results.json",
            {
                "profile": self.cfg.name,
                "config": self.cfg.model_dump(mode="json"),
                "grid": {k: [_format_value(v) for v in vs] for k, vs in self.grid.items()},
                "points": [
                    {"id": p.id, "label": p.label, "values": p.values, "dir": f"points/{p.id}"}
                    for p in self.points
                ],
                "failed": [r["trial"] for r in records if r["status"] != "done"],
                "versions": versions(),
                "results": table.to_dict("records"),
                "timings": frames["timings.csv"].to_dict("records"),
            },
        )
        if len(table):
            build_report(self.out)
        return SweepResult(self.out, table, self.points, records)


def _not_run(trial: Trial, point_label: str, blocked: list[str]) -> dict[str, Any]:
    return {
        "trial": trial.id,
        "point": point_label,
        "kind": trial.kind,
        "unit": trial.unit.key if trial.unit else None,
        "seed": trial.seed,
        "attempts": 0,
        "status": "not run",
        "error": f"needs {', '.join(blocked)}, which failed",
        "seconds": None,
    }


def _trial_dirname(trial: Any) -> str:
    """Tune's directory of a trial: its id, not the (long) flattened config."""
    return trial.config["trial"]["id"].replace("/", "__")


def _last_error_line(text: str) -> str:
    """The exception line of a (Ray-wrapped) traceback."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Failure)\b", line)]
    return errors[-1] if errors else (lines[-1] if lines else "unknown error")


def _progress_callback(bar: tqdm) -> Any:
    """A Tune callback that advances ``bar`` and writes one line per finished trial."""
    from ray import tune

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            line = trial.last_result.get("line", trial.config["trial"]["id"])
            log.info(line)
            bar.update(1)
            if not bar.disable:
                tqdm.write(line)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            line = f"{trial.config['trial']['id']}: failed, retrying once"
            log.warning(line)
            if not bar.disable:
                tqdm.write(line)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            bar.update(1)
            if not bar.disable:
                tqdm.write(f"{trial.config['trial']['id']}: failed again; see failed.json")

    return Progress()


def sweep(
    config: ExperimentConfig,
    out: str | Path = "runs/sweep",
    grid: dict[str, list[Any]] | None = None,
    resume: bool = False,
    address: str | None = None,
    cpus_per_trial: int = 1,
    progress: bool = True,
) -> SweepResult:
    """Run ``config`` over ``grid`` as Ray Tune trials into ``out``; see :class:`Sweep`."""
    return Sweep(config, out, grid, resume, address, cpus_per_trial, progress=progress).execute()
