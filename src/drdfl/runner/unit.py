"""One node of the plan, done: the reference model of a seed, or a unit (train one method
with one seed, evaluate it on every test set of the run, write its folder).

:func:`execute_task` is what every executor calls, in whatever process it runs: its
inputs are a picklable :class:`Job`, its outputs files and a small summary. It works in
the caller's directory and with the caller's drdfl settings (a Ray worker may start
elsewhere) and leaves the process's own as they were. Within a process the run's data
(suite, user test sets, corruptions, skyline splits) is built once per data settings and
reused by the units that process runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from drdfl.config import DataConfig, EvaluationConfig, ExperimentConfig
from drdfl.errors import ModelError
from drdfl.methods.labels import online_label, read_label
from drdfl.methods.registry import SKYLINE
from drdfl.records import WORST_CASES
from drdfl.runner.plan import Node, Unit, warm_start_of
from drdfl.runner.reference import ReferenceCache, ReferenceEntry
from drdfl.runner.store import DONE_FILE, write_unit

#: share of each test set that trains the skyline (the rest scores everyone)
SKYLINE_FIT = 0.7


class RunData:
    """The data of a run: its suite, the user's test sets, the corrupted and skyline test
    sets; each built on first use."""

    def __init__(self, data: DataConfig, evaluation: EvaluationConfig) -> None:
        self.config = data
        self.evaluation = evaluation

    @cached_property
    def suite(self) -> Any:
        from drdfl.runner.steps import build_suite

        return build_suite(self.config)

    @cached_property
    def extra_tests(self) -> list[Any]:
        """The user's own test sets (``--test``), placed with the suite's scaler; two with
        the same name are an error."""
        if not self.config.extra_tests:
            return []
        from drdfl.runner.steps import user_test_sets

        data = self.suite.data
        tests = user_test_sets(
            self.config.extra_tests,
            data.scaler,
            data.train.window,
            data.train.horizon,
            data.interval_s,
            self.suite.train_series.values,
            self.config.data_dir,
            self.config.tokens,
            self.config.lead,
        )
        return tests

    @cached_property
    def corrupted(self) -> list[Any]:
        """The in-distribution test set under every corruption."""
        from drdfl.data.suites import corruption_tests

        return corruption_tests(self.suite, self.evaluation.corruption_severities, seed=0)

    @cached_property
    def skyline_parts(self) -> dict[str, tuple[Any, Any, Any]]:
        """Per main test set: (the skyline's training windows, the last 30 % of its windows,
        the set), in time order.

        The skyline trains on the distinct windows of the set's first 70 %, at most as many
        as the methods train and validate on (evenly spaced in time): the same training
        budget as theirs, and a tiled test file (one hour repeated) is not trained on dozens
        of times over.
        """
        from drdfl.evaluation.metrics import unique_windows

        data = self.suite.data
        budget = len(data.train) + (len(data.val) if data.val is not None else 0)
        parts = {}
        for t in self.suite.tests:
            order = np.argsort(t.windows.start, kind="stable")
            cut = int(SKYLINE_FIT * order.shape[0])
            gap = t.windows.span - 1
            fit, score = order[:cut], order[cut + gap :]
            if fit.shape[0] < 2 or score.shape[0] < 1:
                continue
            first, _ = unique_windows(t.windows.subset(fit))
            fit = fit[first]
            if fit.shape[0] > budget:
                fit = fit[np.linspace(0, fit.shape[0] - 1, budget).round().astype(np.int64)]
            parts[t.name] = (t.windows.subset(fit), t.windows.subset(score), t)
        return parts

    def reference_series(self) -> np.ndarray:
        """The normalized training series the reference model is fitted to."""
        return np.asarray(self.suite.data.series)


#: the environment that decides where data and downloads are found (taken to a task's
#: process with its job, paths made absolute)
FORWARDED_ENV = ("DRDFL_DATA_DIR", "DRDFL_CACHE_DIR", "DRDFL_OFFLINE")
#: run data kept per process (the most recently used): a sweep whose points differ in
#: their data builds each point's once while it runs at most this many such points at a time
KEEP_RUN_DATA = 4
_RUN_DATA: OrderedDict[tuple[str, ...], RunData] = OrderedDict()


def forwarded_env() -> dict[str, str]:
    """This process's drdfl settings (:data:`FORWARDED_ENV`), paths made absolute."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    for key in ("DRDFL_DATA_DIR", "DRDFL_CACHE_DIR"):
        if key in env:
            env[key] = str(Path(env[key]).resolve())
    return env


def run_data(cfg: ExperimentConfig) -> RunData:
    """The run data of ``cfg`` (built on first use), shared by every unit this process runs
    with the same data and evaluation settings, working directory and drdfl settings."""
    key = (
        cfg.data.model_dump_json(),
        cfg.evaluation.model_dump_json(),
        os.getcwd(),
        *(f"{k}={os.environ.get(k)}" for k in FORWARDED_ENV),
    )
    data = _RUN_DATA.pop(key, None) or RunData(cfg.data, cfg.evaluation)
    _RUN_DATA[key] = data
    while len(_RUN_DATA) > KEEP_RUN_DATA:
        _RUN_DATA.popitem(last=False)
    return data


@dataclass(frozen=True)
class Job:
    """Everything a process needs to do one node of a run's plan."""

    node: Node
    cfg: ExperimentConfig
    out: Path
    cache: Path
    progress: bool = False
    #: the caller's working directory and drdfl settings (a Ray worker may start elsewhere)
    cwd: str = field(default_factory=os.getcwd)
    env: dict[str, str] = field(default_factory=forwarded_env)


@contextlib.contextmanager
def callers_state(job: Job) -> Iterator[None]:
    """The caller's working directory and drdfl settings inside the block; this process's
    own again after it."""
    cwd = os.getcwd()
    saved = {k: os.environ.get(k) for k in job.env}
    if os.path.isdir(job.cwd):
        os.chdir(job.cwd)
    os.environ.update(job.env)
    try:
        yield
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_task(job: Job, *needs: Any) -> dict[str, Any]:
    """Do ``job`` (``needs``: the results of the nodes it needs, passed so that an
    executor can order work by them) in the caller's directory and settings, and return
    its summary."""
    with callers_state(job):
        return _execute(job)


def _execute(job: Job) -> dict[str, Any]:
    if job.node.kind == "reference":
        entry = fit_reference(job.cfg, job.node.seed, job.cache, job.progress)
        what = "trained" if entry.seconds else "cached"
        return {
            "node": job.node.id,
            "reference": str(entry.path),
            "train_s": entry.seconds,
            "line": f"{job.node.id}: reference model {what} ({entry.path})",
        }
    assert job.node.unit is not None
    return run_unit(job.cfg, job.node.unit, job.out / "units" / job.node.unit.key, job.cache)


def fit_reference(
    cfg: ExperimentConfig, seed: int, cache: Path, progress: bool = False
) -> ReferenceEntry:
    """The reference model θ₀ of ``seed`` for ``cfg``'s data (trained once, then cached)."""
    data = run_data(cfg)
    return ReferenceCache(cache).get(
        cfg.diffusion,
        data.reference_series(),
        data.suite.data.scaler,
        seed,
        progress=progress,
        device=cfg.device,
    )


def run_unit(cfg: ExperimentConfig, unit: Unit, folder: Path, cache: Path) -> dict[str, Any]:
    """Train and evaluate ``unit`` into ``folder`` (started over if it holds a partial
    unit); returns its summary. A warm start is read from the sibling DFL unit's folder."""
    import pandas as pd

    from drdfl.runner.steps import TaskFitWarning, save_trained, train_model

    data = run_data(cfg)
    if folder.exists():
        shutil.rmtree(folder)  # a unit killed half-way starts over
    folder.mkdir(parents=True)
    train_cfg = cfg.train.model_copy(update={"device": cfg.device})
    timings: list[dict[str, Any]] = []
    params = unit.params
    if unit.needs_reference:
        entry = fit_reference(cfg, unit.seed, cache)
        params = params.model_copy(update={"diffusion": str(entry.path)})
        if entry.seconds:
            timings.append(_timing(unit, "diffusion", entry.seconds))
    if unit.label == SKYLINE:
        return _run_skyline(cfg, data, unit, folder, train_cfg, timings)
    warm = None
    source = warm_start_of(cfg, unit)
    if source is not None:
        warm = _load_warm_start(folder.parent / source.key)
    start = time.perf_counter()
    with warnings.catch_warnings():  # the run said what its task changed, once, up front
        warnings.simplefilter("ignore", TaskFitWarning)
        model, result = train_model(
            unit.method,
            data.suite,
            task=cfg.task,
            task_params=cfg.task_params,
            forecaster=cfg.forecaster,
            anchor=cfg.anchor,
            anchor_alpha=cfg.anchor_alpha,
            train=train_cfg,
            seed=unit.seed,
            method_params=params,
            warm_start=warm,
        )
    timings.append(_timing(unit, "train", time.perf_counter() - start))
    model.method = unit.label
    model.config["evaluation"] = cfg.evaluation.model_dump()  # drdfl evaluate rescores alike
    save_trained(model, data.suite, folder / "model")
    start = time.perf_counter()
    results = _evaluate(cfg, data, unit, model)
    timings.append(_timing(unit, "evaluate", time.perf_counter() - start))
    history = pd.DataFrame(result.history)
    history.insert(0, "seed", unit.seed)
    history.insert(0, "method", unit.label)
    worst = {
        name: result.artifacts[key]
        for name, key in WORST_CASES.items()
        if result.artifacts.get(key) is not None
    }
    return _finish(data, unit, folder, results, history, timings, worst)


def _load_warm_start(folder: Path) -> Any:
    from drdfl.artifacts import load_model

    if not (folder / DONE_FILE).is_file():
        raise ModelError(f"{folder}: the DFL unit this unit is warm-started from is not done")
    try:
        return load_model(folder / "model")
    except Exception as exc:  # a corrupt model.pt raises torch's own errors
        raise ModelError(
            f"{folder / 'model'}: cannot load ({type(exc).__name__}: {str(exc)[:200]}); delete "
            f"{folder} and resume to retrain that unit"
        ) from None


def _run_skyline(
    cfg: ExperimentConfig,
    data: RunData,
    unit: Unit,
    folder: Path,
    train_cfg: Any,
    timings: list[dict[str, Any]],
) -> dict[str, Any]:
    """DFL trained on the first 70 % of each test set, scored on its last 30 %."""
    import pandas as pd

    from drdfl.data.suites import Suite, TestSet
    from drdfl.data.training import TrainingData
    from drdfl.evaluation.suites import evaluate_tests
    from drdfl.runner.steps import TaskFitWarning, train_model

    rows = []
    for name, (fit, score, test) in data.skyline_parts.items():
        cut = int(0.85 * len(fit))
        local_data = TrainingData(
            fit.subset(np.arange(cut)),
            fit.subset(np.arange(cut, len(fit))) if len(fit) - cut > 1 else None,
            test.scaler,
            test.scaler.transform(test.series.values),
            data.suite.data.interval_s,
        )
        local = Suite(f"skyline:{name}", local_data, [], test.series, name)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TaskFitWarning)
            model, _ = train_model(
                "dfl",
                local,
                task=cfg.task,
                task_params=cfg.task_params,
                forecaster=cfg.forecaster,
                train=train_cfg,
                seed=unit.seed,
            )
        timings.append(_timing(unit, "train", time.perf_counter() - start))
        scored = TestSet(name, score, test.scaler, test.series, test.w_distance, test.note)
        start = time.perf_counter()
        table, _ = evaluate_tests(model.forecaster, [scored], model.task, **_eval_kw(cfg, unit))
        timings.append(_timing(unit, "evaluate", time.perf_counter() - start))
        table.insert(0, "suite", SKYLINE)
        rows.append(table)
    results = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    results.insert(0, "seed", unit.seed)
    results.insert(0, "method", SKYLINE)
    return _finish(data, unit, folder, results, pd.DataFrame(), timings, {})


def _eval_kw(cfg: ExperimentConfig, unit: Unit) -> dict[str, Any]:
    ev = cfg.evaluation
    return {"alpha": ev.cvar_alpha, "n_boot": ev.bootstrap, "seed": unit.seed}


def _evaluate(cfg: ExperimentConfig, data: RunData, unit: Unit, model: Any) -> Any:
    """Every test of the run for one trained model, as tidy rows."""
    import pandas as pd

    from drdfl.data.suites import TestSet
    from drdfl.evaluation.suites import score_tests, summary_frame

    groups: list[tuple[str, list[Any]]] = [(data.suite.name, data.suite.tests)]
    if cfg.evaluation.corruptions:
        groups.append(("corruptions", data.corrupted))
    if cfg.data.extra_tests:
        groups.append(("user", data.extra_tests))
    if cfg.evaluation.skyline:
        groups.append(
            (
                SKYLINE,
                [
                    TestSet(n, score, t.scaler, t.series, t.w_distance, t.note)
                    for n, (_, score, t) in data.skyline_parts.items()
                ],
            )
        )
    # One scoring pass over every group: a window several sets hold is forecast once.
    flat = [(name, t) for name, tests in groups for t in tests]
    scores = score_tests(model.forecaster, [t for _, t in flat], model.task)
    tables = []
    for (suite_name, test), scored in zip(flat, scores, strict=True):
        table = summary_frame(test, scored, **_eval_kw(cfg, unit))
        table.insert(0, "suite", suite_name)
        table.insert(0, "method", unit.label)
        tables.append(table)
    if cfg.evaluation.online and read_label(unit.label).budget is None:
        tables += _evaluate_online(cfg, unit, model, flat, scores)
    results = pd.concat(tables, ignore_index=True)
    results.insert(1, "seed", unit.seed)
    return results


def online_settings(cfg: ExperimentConfig) -> Any:
    """The online recalibration settings of ``cfg``."""
    from drdfl.evaluation.online import OnlineSettings

    ev = cfg.evaluation
    return OnlineSettings(halflife=ev.online_halflife, rules=tuple(ev.online_rules))


def _evaluate_online(
    cfg: ExperimentConfig, unit: Unit, model: Any, flat: list[tuple[str, Any]], scores: list[Any]
) -> list[Any]:
    """The rows of ``<label>+online``: the suite's and the user's test sets, recalibrated."""
    from drdfl.evaluation.online import anchor_rules, recalibrate
    from drdfl.evaluation.suites import summary_frame

    settings = online_settings(cfg)
    rule = anchor_rules(model.forecaster, settings.rules)
    tables = []
    for (suite_name, test), scored in zip(flat, scores, strict=True):
        if suite_name not in (cfg.data.suite, "user"):
            continue
        online = recalibrate(scored, test.windows, test.scaler, model.task, rule, settings)
        table = summary_frame(test, online, **_eval_kw(cfg, unit))
        table.insert(0, "suite", suite_name)
        table.insert(0, "method", online_label(unit.label))
        tables.append(table)
    return tables


def _timing(unit: Unit, stage: str, seconds: float) -> dict[str, Any]:
    return {"method": unit.label, "seed": unit.seed, "stage": stage, "seconds": seconds}


def _finish(
    data: RunData,
    unit: Unit,
    folder: Path,
    results: Any,
    history: Any,
    timings: list[dict[str, Any]],
    worst: dict[str, np.ndarray],
) -> dict[str, Any]:
    import pandas as pd

    scored = SKYLINE if unit.label == SKYLINE else data.suite.name
    main = results[(results["suite"] == scored) & (results["metric"] == "normalized_regret")]
    summary = {
        "node": unit.key,
        "train_s": sum(t["seconds"] for t in timings if t["stage"] == "train"),
        "avg_normalized_regret": float(main["value"].mean()) if len(main) else float("nan"),
        "max_normalized_regret": float(main["value"].max()) if len(main) else float("nan"),
        "rows": len(results),
    }
    summary["line"] = (
        f"{unit.key}: train {summary['train_s']:.1f}s, normalized regret avg "
        f"{summary['avg_normalized_regret']:.4f} max {summary['max_normalized_regret']:.4f}"
    )
    write_unit(folder, results, history, pd.DataFrame(timings), worst, summary)
    return summary


__all__ = [
    "FORWARDED_ENV",
    "KEEP_RUN_DATA",
    "SKYLINE_FIT",
    "Job",
    "RunData",
    "callers_state",
    "execute_task",
    "fit_reference",
    "forwarded_env",
    "run_data",
    "run_unit",
]
