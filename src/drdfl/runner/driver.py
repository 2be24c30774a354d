"""``drdfl run``: one configuration's plan executed into one output directory.

The front end validates everything first (configuration, data, every ``--test`` file)
and only then claims ``OUT``; nothing is written when validation fails. It runs the
plan's nodes that are not done yet on an executor, assembles the run's tables from the
unit folders in plan order (so a resumed run writes the same ``results.csv`` as an
uninterrupted one) and writes the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from drdfl.config import ExperimentConfig, config_to_toml
from drdfl.errors import ModelError
from drdfl.records import RESULT_COLUMNS, SAMPLES_FILE, WORST_CASES, quality_path, unit_key
from drdfl.runner.local import LocalExecutor, Outcome
from drdfl.runner.plan import Plan, build_plan
from drdfl.runner.reference import ReferenceCache
from drdfl.runner.store import (
    RunStore,
    code_state,
    file_fingerprint,
    joined,
    naming,
    write_record,
    write_tables,
)
from drdfl.runner.unit import Job, RunData, online_settings, run_data

log = logging.getLogger("drdfl")


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[None]:
    """``drdfl``'s log lines also go to ``path`` inside the block."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = log.level
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        handler.close()


def default_cache() -> Path:
    """The reference-model cache under drdfl's cache directory."""
    from drdfl.data.registry import cache_dir

    return cache_dir() / "diffusion"


def available_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _digest(values: Any) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()[:16]


def input_fingerprint(cfg: ExperimentConfig, data: RunData) -> dict[str, Any]:
    """What a run's numbers depend on besides its configuration: the data it read (the
    resolved data directory and a hash of every series), the ``--test`` files (path, size,
    sha256) and the code (version, git commit, local changes)."""
    from drdfl.data.registry import data_dir, resolve

    suite = data.suite
    series = {"train": _digest(suite.train_series.values)}
    for test in suite.tests:
        series[f"test {test.name}"] = _digest(test.series.values)
    tests = {}
    for spec in cfg.data.extra_tests:
        path, _ = resolve(spec, cfg.data.data_dir, download=False)
        tests[spec] = file_fingerprint(path)
    reads_files = cfg.data.suite != "synthetic" or bool(cfg.data.extra_tests)
    directory = data_dir(cfg.data.data_dir) if reads_files else None
    return {
        "data_dir": str(Path(directory).resolve()) if directory else None,
        "data": series,
        "tests": tests,
        "code": code_state(),
    }


class Run:
    """One experiment run into ``out``: plans once, executes what is not done, assembles."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        out: str | Path,
        resume: bool = False,
        progress: bool = True,
        cache: str | Path | None = None,
        jobs: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.resume = resume
        self.progress = progress
        self.cache = Path(cache) if cache is not None else default_cache()
        self.plan: Plan = build_plan(cfg)
        self.units = list(self.plan.units)
        self.store = RunStore(self.out)
        self.jobs = jobs or cfg.jobs or available_cores()
        #: the inputs' fingerprint, once validated
        self.fingerprint: dict[str, Any] | None = None
        #: what the task changed to fit the training data (e.g. its capacity range)
        self.task_note: str | None = None

    @property
    def data(self) -> RunData:
        return run_data(self.cfg)

    def validate(self) -> dict[str, Any]:
        """Build the data, the task for it and every user test set (raising on any
        problem) and return the inputs' fingerprint. Writes nothing."""
        from drdfl.runner.steps import fitted_task

        _ = self.data.extra_tests
        suite = self.data.suite
        _, self.task_note = fitted_task(
            self.cfg.task, self.cfg.task_params, suite.train_series.values, suite.data.interval_s
        )
        if self.task_note is not None:
            log.warning(self.task_note)
        if self.cfg.evaluation.online:
            from drdfl.evaluation.online import check_online

            settings = online_settings(self.cfg)
            for test in [*suite.tests, *self.data.extra_tests]:
                check_online(len(test.windows), test.name, settings)
        self.fingerprint = input_fingerprint(self.cfg, self.data)
        return self.fingerprint

    def pending(self) -> list[Job]:
        """The jobs of the nodes not done yet (a reference model is skipped when every unit
        that needs it is done; a cached one costs only its check)."""
        jobs = []
        for node in self.plan.nodes:
            if node.kind == "unit":
                if self.resume and self.store.is_done(node.id):
                    continue
            else:
                users = [n for n in self.plan.nodes if node.id in n.needs]
                if all(self.resume and self.store.is_done(n.id) for n in users):
                    continue
            jobs.append(self.job(node))
        return jobs

    def job(self, node: Any) -> Job:
        return Job(node, self.cfg, self.out.resolve(), self.cache.resolve())

    def execute(self, executor: Any = None) -> Any:
        """Run every node not yet done, then assemble the tables and write the report.

        The first failure stops the run after the running nodes finish and is raised.
        """
        fingerprint = self.validate()
        with (
            self.store.open(config_to_toml(self.cfg), fingerprint, self.resume),
            run_log(self.out / "run.log"),
        ):
            outcomes = self.run_nodes(executor)
            for outcome in outcomes.values():
                if outcome.status == "failed" and outcome.error is not None:
                    raise outcome.error
            return self.finish()

    def run_nodes(self, executor: Any = None) -> dict[str, Outcome]:
        """The pending nodes on ``executor`` (default: local, ``jobs`` processes)."""
        todo = self.pending()
        units = sum(1 for n in self.plan.nodes if n.kind == "unit")
        log.info("run %s: %d units into %s", self.cfg.name, units, self.out)
        skipped = units - sum(1 for j in todo if j.node.kind == "unit")
        if skipped:
            tqdm.write(f"resuming: {skipped} of {units} units already done")
        if executor is None:
            jobs = min(self.jobs, max(1, len(todo)))
            threads = self.cfg.threads if jobs == 1 else 1
            executor = LocalExecutor(jobs, threads)
        bar = tqdm(total=len(todo), desc="units", disable=not self.progress, unit="node")

        def done(job: Job, summary: dict[str, Any]) -> None:
            log.info(summary["line"])
            bar.update(1)
            if self.progress:
                tqdm.write(summary["line"])

        try:
            return executor.run(todo, done)
        finally:
            bar.close()

    # ---------------------------------------------------------------- assemble
    def finish(self) -> Any:
        """Assemble the run's tables and, when it has results, write its report."""
        from drdfl.report import write_report

        table = self.assemble()
        if len(table):
            write_report(self.out)
            log.info("report written to %s", self.out / "report.md")
        return table

    def assemble(self) -> Any:
        """Gather the finished units' files into the run's tables (plan order)."""
        results, histories, timings = [], [], []
        for unit in self.units:
            if not self.store.is_done(unit.key):
                continue
            tables = self.store.read_unit(unit.key)
            results.append(tables["results"])
            for name, bucket in (("history", histories), ("timings", timings)):
                if tables[name] is not None:
                    bucket.append(tables[name])
        table = joined(results, RESULT_COLUMNS)
        times = joined(timings)
        write_tables(self.out, table, joined(histories), times)
        references = self._references()
        self._write_samples(references.get(self.cfg.seeds[0]))
        self._write_quality(references)
        if self.cfg.evaluation.backtest:
            self._write_backtest()
        suite = self.data.suite
        write_record(
            self.out,
            self.cfg,
            self.code(),  # the code the run started with (the one --resume insists on)
            table,
            times,
            # every planned unit: the report insists on each (or on its failure record)
            units=[{"label": u.label, "seed": u.seed} for u in self.units],
            notes=[*suite.notes, *([self.task_note] if self.task_note else [])],
            test_sets=[
                {"name": t.name, "w_distance": t.w_distance, "note": t.note} for t in suite.tests
            ],
            in_distribution=suite.in_distribution,
        )
        return table

    def _write_backtest(self) -> None:
        """The first seed's models replayed over the in-distribution test series
        (``OUT/backtest``, for the report)."""
        from drdfl.runner.operate import run_backtest

        suite = self.data.suite
        labels = list(dict.fromkeys(u.label for u in self.units))
        series = suite.test(suite.in_distribution).series
        ev = self.cfg.evaluation
        with naming(self.out / "backtest"):
            run_backtest(self.out, labels, self.cfg.seeds[0], series, ev.backtest_slo_target, True)

    def code(self) -> dict[str, Any]:
        """Version, git commit and dirty flag of the code that made the results."""
        if self.fingerprint is not None:
            return dict(self.fingerprint["code"])
        return code_state()

    def _references(self) -> dict[int, Any]:
        """Each seed's checked reference-model cache entry (none when no method needs one)."""
        if not any(n.kind == "reference" for n in self.plan.nodes):
            return {}
        cache, series = ReferenceCache(self.cache), self.data.reference_series()
        found = {s: cache.lookup(self.cfg.diffusion, series, s) for s in self.cfg.seeds}
        return {s: entry for s, entry in found.items() if entry is not None}

    def _write_quality(self, references: dict[int, Any]) -> None:
        """Each seed's reference-model quality-gate verdict, for the report:
        ``reference/s<seed>/quality.json``."""
        from drdfl._io import write_json

        for seed, entry in references.items():
            verdict = entry.gate
            if verdict is not None:
                path = quality_path(self.out, seed)
                with naming(path):
                    write_json(path, verdict)

    def _write_samples(self, entry: Any) -> None:
        """Real and generated segments (of the first seed's reference ``entry``, if any) and
        the worst cases 3D-Learning found."""
        import numpy as np

        from drdfl._io import atomic_open

        arrays: dict[str, np.ndarray] = {}
        seed = self.cfg.seeds[0]
        data = self.data.suite.data
        if entry is not None:
            from drdfl.diffusion.model import DiffusionModel
            from drdfl.diffusion.segments import random_segments

            model = DiffusionModel.load(entry.path)
            real = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
            n = 16
            rng = np.random.default_rng(seed)
            arrays["real"] = data.scaler.transform(
                random_segments(real, model.segment_length, n, rng)
            )
            arrays["generated"] = data.scaler.transform(model.sample_series(n, seed=seed))
        from drdfl.artifacts import load_array

        for name in WORST_CASES:
            path = self.store.unit_dir(unit_key("threed", seed)) / f"{name}.npy"
            if path.is_file():
                try:
                    arrays[name] = load_array(path)
                except ModelError as exc:  # said the same in any command: how, in a run
                    raise ModelError(
                        f"{str(exc).partition('; delete it')[0]}; delete it and resume the run "
                        "(--resume) to redo its unit"
                    ) from None
        if arrays:
            with (
                naming(self.out / SAMPLES_FILE),
                atomic_open(self.out / SAMPLES_FILE, "wb") as handle,
            ):
                np.savez(handle, **arrays)


def run(
    config: ExperimentConfig,
    out: str | Path = "runs/latest",
    resume: bool = False,
    progress: bool = True,
    jobs: int | None = None,
) -> Any:
    """Run the whole experiment for ``config`` into ``out``; returns the tidy results."""
    return Run(config, out, resume, progress, jobs=jobs).execute()


__all__ = ["Run", "available_cores", "default_cache", "input_fingerprint", "run", "run_log"]
