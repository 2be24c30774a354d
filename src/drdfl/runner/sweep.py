"""``drdfl sweep``: the plans of a grid of configurations as one graph, run on Ray.

A sweep takes a base configuration and a grid (:func:`drdfl.config.expand_grid` turns it
into one configuration per *point*). Without a grid the only point is the base config
and its run lives in ``OUT`` itself (the layout of ``drdfl run``); with a grid each point
lives in ``OUT/points/<point>/`` with its own tables and report, and ``OUT`` holds the
combined tables, in which every method label carries its point (``dfl[lr=0.003]``), and
the combined report. Points whose data and diffusion settings agree share their
reference models.

Every node of every point's plan runs on the executor (Ray by default): a failed node
is retried, one that fails again is listed in ``OUT/failed.json`` with its error, and
the nodes that needed it are listed there as not run. ``OUT/trials.json`` records every
node's outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drdfl._io import write_json
from drdfl.config import ExperimentConfig, Point, config_to_toml, expand_grid, format_value
from drdfl.errors import ConfigError
from drdfl.records import FAILED_FILE, HISTORIES_FILE, RESULTS_FILE, TIMINGS_FILE
from drdfl.runner.driver import Run, default_cache, run_log
from drdfl.runner.local import Outcome
from drdfl.runner.reference import ReferenceCache
from drdfl.runner.store import OutputDir, joined, write_record, write_tables
from drdfl.runner.unit import Job

SWEEP_FILE = "sweep.json"
log = logging.getLogger("drdfl")


@dataclass
class SweepResult:
    """What a sweep left: the combined table, every node's record, and the failures."""

    out: Path
    results: Any
    points: list[Point]
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Nodes that failed (after their retries) or were not run for a failed need."""
        return [t for t in self.trials if t["status"] != "done"]


class Sweep:
    """A grid of runs into ``out`` whose nodes run on one executor."""

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
        self.cfg = cfg
        self.out = Path(out).resolve()
        self.grid = dict(grid or {})
        self.resume = resume
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.num_cpus = num_cpus
        self.progress = progress
        self.cache = Path(cache).resolve() if cache is not None else default_cache().resolve()
        self.points = expand_grid(cfg, self.grid)
        self.runs = [
            Run(p.cfg, self.point_dir(p), resume, progress=False, cache=self.cache)
            for p in self.points
        ]

    def point_dir(self, point: Point) -> Path:
        return self.out / "points" / point.id if point.id else self.out

    def record(self) -> dict[str, Any]:
        """What the sweep in ``out`` was started from (compared on resume)."""
        return {
            "grid": {k: [format_value(v) for v in vs] for k, vs in self.grid.items()},
            "points": [{"id": p.id, "label": p.label} for p in self.points],
            "config": config_to_toml(self.cfg),
        }

    @contextlib.contextmanager
    def claim(self, fingerprints: list[dict[str, Any]]) -> Any:
        """Hold ``out`` and every point's directory for the block."""
        with contextlib.ExitStack() as stack:
            if self.grid:
                stack.enter_context(
                    OutputDir(self.out, SWEEP_FILE, "sweep").claim(self.record(), self.resume)
                )
            for run, fingerprint in zip(self.runs, fingerprints, strict=True):
                stack.enter_context(
                    run.store.open(config_to_toml(run.cfg), fingerprint, self.resume)
                )
            stack.enter_context(run_log(self.out / "sweep.log"))
            yield

    def jobs(self) -> list[Job]:
        """Every pending node of every point, ids prefixed with the point; a reference
        model shared by points is one node."""
        jobs: list[Job] = []
        shared: dict[Path, str] = {}
        for point, run in zip(self.points, self.runs, strict=True):
            prefix = f"{point.id}/" if point.id else ""
            rename: dict[str, str] = {}
            for job in run.pending():
                node = job.node
                if node.kind == "reference":
                    path = ReferenceCache(self.cache).path(
                        run.cfg.diffusion, run.data.reference_series(), node.seed
                    )
                    if path in shared:
                        rename[node.id] = shared[path]
                        continue
                    shared[path] = rename[node.id] = prefix + node.id
                else:
                    rename[node.id] = prefix + node.id
                needs = tuple(rename.get(n, prefix + n) for n in node.needs)
                moved = dataclasses.replace(node, id=rename[node.id], needs=needs)
                jobs.append(dataclasses.replace(job, node=moved))
        return jobs

    def execute(self, executor: Any = None) -> SweepResult:
        """Validate every point, run every node not yet done, then assemble the tables and
        the reports."""
        connection: Any = contextlib.nullcontext()
        if executor is None:
            from drdfl.runner.distributed import RayExecutor

            executor = RayExecutor(self.address, self.num_cpus, self.cpus_per_trial)
            connection = executor.connected()  # before anything is written
        fingerprints = [run.validate() for run in self.runs]
        with connection, self.claim(fingerprints):
            jobs = self.jobs()
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="sweep", unit="node", disable=not self.progress)

            def done(job: Job, summary: dict[str, Any]) -> None:
                line = f"{job.node.id}: {summary['line'].partition(': ')[2]}"
                log.info(line)
                bar.update(1)
                if self.progress:
                    tqdm.write(line)

            try:
                outcomes = executor.run(jobs, done) if jobs else {}
            finally:
                bar.close()
            records = [self._record(job, outcomes[job.node.id]) for job in jobs]
            return self.assemble(records)

    def _record(self, job: Job, outcome: Outcome) -> dict[str, Any]:
        point = next(
            p for p, r in zip(self.points, self.runs, strict=True) if r.out.resolve() == job.out
        )
        record = {
            "trial": job.node.id,
            "point": point.label,
            "kind": job.node.kind,
            "unit": job.node.unit.key if job.node.unit else None,
            "seed": job.node.seed,
            "status": outcome.status,
        }
        if outcome.status != "done":
            record["error"] = outcome.message
            log.error("%s %s: %s", job.node.id, outcome.status, outcome.message)
        return record

    # ---------------------------------------------------------------- assemble
    def assemble(self, records: list[dict[str, Any]]) -> SweepResult:
        """Each point's tables and report, then (with a grid) the combined ones in ``out``;
        ``trials.json`` and ``failed.json``."""
        import pandas as pd

        from drdfl.report import write_report

        write_json(self.out / "trials.json", records)
        write_json(self.out / FAILED_FILE, [r for r in records if r["status"] != "done"])
        if self.grid:  # each point's report insists on its units, or on their failure records
            for point, run in zip(self.points, self.runs, strict=True):
                mine = [r for r in records if r["point"] == point.label and r["status"] != "done"]
                write_json(run.out / FAILED_FILE, mine)
        tables = [run.finish() for run in self.runs]
        if not self.grid:
            return SweepResult(self.out, tables[0], self.points, records)
        combined: dict[str, list[Any]] = {
            n: [] for n in (RESULTS_FILE, HISTORIES_FILE, TIMINGS_FILE)
        }
        for point, run in zip(self.points, self.runs, strict=True):
            for name, parts in combined.items():
                path = run.out / name
                if path.is_file() and path.stat().st_size > 1:
                    frame = pd.read_csv(path, dtype={"method": str})
                    frame["method"] = frame["method"] + f"[{point.label}]"
                    parts.append(frame)
        table, histories, timings = (joined(parts) for parts in combined.values())
        write_tables(self.out, table, histories, timings)
        write_record(
            self.out,
            self.cfg,
            self.runs[0].code(),
            table,
            timings,
            grid={k: [format_value(v) for v in vs] for k, vs in self.grid.items()},
            points=[
                {"id": p.id, "label": p.label, "values": p.values, "dir": f"points/{p.id}"}
                for p in self.points
            ],
            failed=[r["trial"] for r in records if r["status"] != "done"],
        )
        if len(table):
            write_report(self.out)
        return SweepResult(self.out, table, self.points, records)


def sweep(
    config: ExperimentConfig,
    out: str | Path = "runs/sweep",
    grid: dict[str, list[Any]] | None = None,
    resume: bool = False,
    address: str | None = None,
    cpus_per_trial: int = 1,
    progress: bool = True,
) -> SweepResult:
    """Run ``config`` over ``grid`` on Ray into ``out``; see :class:`Sweep`."""
    return Sweep(config, out, grid, resume, address, cpus_per_trial, progress=progress).execute()


__all__ = ["SWEEP_FILE", "Sweep", "SweepResult", "sweep"]
