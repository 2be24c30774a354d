"""``drdfl run``: data → diffusion reference → methods × seeds → evaluation → report.

The grid is cut into *units* (one method, possibly a variant, and one seed). Each unit
writes its results, history and timings under ``OUT/units/<label>-s<seed>/`` and marks
itself done; ``resume`` skips done units. The run's tables are assembled from the unit
files in plan order, so a resumed run writes the same ``results.csv`` as an
uninterrupted one. The sweep (``drdfl sweep``) runs the same units as Ray trials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import drdfl
from drdfl._io import atomic_open, write_json, write_text
from drdfl.artifacts import TrainedModel, load_model
from drdfl.config import ExperimentConfig, config_to_toml
from drdfl.data.windows import Windows
from drdfl.errors import ConfigError
from drdfl.evaluation.suites import Suite, TestSet, corruption_tests, evaluate_tests
from drdfl.runner.steps import build_suite, save_trained, train_model, user_test_sets
from drdfl.methods.base import TrainingData
from drdfl.methods.registry import REGISTRY

log = logging.getLogger("drdfl")

#: methods that start from the reference diffusion model
GENERATIVE = tuple(s.name for s in REGISTRY if s.needs_reference)
#: methods never warm-started from DFL
COLD = tuple(s.name for s in REGISTRY if not s.warm_start)
#: share of each test set that trains the skyline (the rest scores everyone)
SKYLINE_FIT = 0.7


@dataclass(frozen=True)
class Unit:
    """One cell of the grid: a method (or a variant of one) with one seed."""

    method: str
    seed: int
    label: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.label}-s{self.seed}".replace("/", "_")


def plan_units(cfg: ExperimentConfig) -> list[Unit]:
    """Every unit of the run, in execution (and report) order."""
    methods = list(dict.fromkeys(cfg.methods))
    if cfg.warm_start_from_dfl and any(m not in COLD for m in methods) and "dfl" not in methods:
        methods.insert(0, "dfl")  # the warm start of the robust methods
    order = [m for m in ("mse", "dfl") if m in methods] + [m for m in methods if m not in COLD]
    units = []
    for seed in cfg.seeds:
        for m in order:
            units.append(Unit(m, seed, m, dict(cfg.method_params.get(m, {}))))
        if "threed" in methods:
            base = dict(cfg.method_params.get("threed", {}))
            if cfg.report.mse_ablation:
                units.append(Unit("threed", seed, "threed-mse", {**base, "objective": "mse"}))
            if cfg.report.budget_sweep:
                for b in cfg.report.budgets:
                    units.append(Unit("threed", seed, f"threed@{b:g}", {**base, "budget": b}))
        if cfg.evaluation.skyline:
            units.append(Unit("dfl", seed, "skyline"))
    return units


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Run:
    """One experiment run into ``out``: holds the suite, plans units and executes them."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        out: str | Path,
        resume: bool = False,
        progress: bool = True,
        cache: str | Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.resume = resume
        self.progress = progress
        if cache is None:
            from drdfl.data.registry import cache_dir

            cache = cache_dir() / "diffusion"
        self.cache = Path(cache)
        self.units = plan_units(cfg)
        self._suite: Suite | None = None
        self._extra: list[TestSet] | None = None
        self._skyline: dict[str, tuple[Windows, Windows, TestSet]] | None = None
        self._corrupted: list[TestSet] | None = None

    # ---------------------------------------------------------------- setup
    def prepare_dir(self) -> None:
        """Create ``out`` (refusing to mix with another run unless resuming)."""
        units_dir = self.out / "units"
        if units_dir.exists() and any(units_dir.iterdir()) and not self.resume:
            raise ConfigError(
                f"{self.out} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        if self.resume and (self.out / "config.toml").is_file():
            previous = (self.out / "config.toml").read_text(encoding="utf-8")
            if previous != config_to_toml(self.cfg):
                raise ConfigError(
                    f"{self.out}/config.toml differs from this run's configuration; resume "
                    "with the same profile, config file and --set options"
                )
        units_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.out / "config.toml", config_to_toml(self.cfg))
        handler = logging.FileHandler(self.out / "run.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)

    @property
    def suite(self) -> Suite:
        if self._suite is None:
            self._suite = build_suite(self.cfg.data)
        return self._suite

    def extra_tests(self) -> list[TestSet]:
        """The user's own test sets (``--test``), placed with the suite's scaler."""
        if self._extra is None:
            self._extra = []
            if self.cfg.data.extra_tests:
                data = self.suite.data
                self._extra = user_test_sets(
                    self.cfg.data.extra_tests,
                    data.scaler,
                    data.train.window,
                    data.train.horizon,
                    data.interval_s,
                    self.suite.train_series.values,
                    self.cfg.data.data_dir,
                    self.cfg.data.tokens,
                )
        return self._extra

    def corrupted(self) -> list[TestSet]:
        """The in-distribution test set under every corruption (built once per run)."""
        if self._corrupted is None:
            self._corrupted = corruption_tests(
                self.suite, self.cfg.evaluation.corruption_severities, seed=0
            )
        return self._corrupted

    def skyline_parts(self) -> dict[str, tuple[Windows, Windows, TestSet]]:
        """Per main test set: (first 70 % of its windows, last 30 %, the set), in time order."""
        if self._skyline is None:
            parts = {}
            for t in self.suite.tests:
                order = np.argsort(t.windows.start, kind="stable")
                cut = int(SKYLINE_FIT * order.shape[0])
                gap = t.windows.window + t.windows.horizon - 1
                fit, score = order[:cut], order[cut + gap :]
                if fit.shape[0] < 2 or score.shape[0] < 1:
                    continue
                parts[t.name] = (t.windows.subset(fit), t.windows.subset(score), t)
            self._skyline = parts
        return self._skyline

    def reference_dir(self, seed: int) -> Path:
        """Cache directory of the reference diffusion model of ``seed`` (by config hash)."""
        from drdfl.diffusion.train import data_fingerprint

        key = config_hash(
            {
                "diffusion": self.cfg.diffusion.model_dump(mode="json"),
                "data": data_fingerprint(self.suite.data.series),
                "seed": seed,
                "version": drdfl.__version__,
            }
        )
        return self.cache / key

    def reference(self, seed: int) -> tuple[Path, float]:
        """The reference model's directory for ``seed`` (trained once, then cached) and the
        seconds spent training it here (0 when cached)."""
        from drdfl.diffusion.model import DiffusionModel, get_preset
        from drdfl.diffusion.train import fit_series

        path = self.reference_dir(seed)
        if (path / "diffusion.pt").is_file():
            DiffusionModel.load(path)  # fail early on a corrupt cache entry
            return path, 0.0
        preset = get_preset(self.cfg.diffusion.preset)
        update: dict[str, Any] = {"seed": seed}
        if self.cfg.diffusion.iterations is not None:
            update["iterations"] = self.cfg.diffusion.iterations
        data = self.suite.data
        real = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
        start = time.perf_counter()
        tmp = path.with_name(path.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        fit_series(
            real, preset.model, preset.train.model_copy(update=update), tmp, progress=self.progress
        )
        tmp.replace(path)
        return path, time.perf_counter() - start

    # ---------------------------------------------------------------- units
    def unit_dir(self, unit: Unit) -> Path:
        return self.out / "units" / unit.key

    def is_done(self, unit: Unit) -> bool:
        return (self.unit_dir(unit) / "done.json").is_file()

    def run_unit(self, unit: Unit) -> dict[str, Any]:
        """Train and evaluate one unit; write its files; return its summary."""
        cfg = self.cfg
        folder = self.unit_dir(unit)
        if folder.exists():
            shutil.rmtree(folder)  # a unit killed half-way starts over
        folder.mkdir(parents=True)
        train_cfg = cfg.train.model_copy(update={"device": cfg.device})
        timings: list[dict[str, Any]] = []
        params = dict(unit.params)
        if unit.method in GENERATIVE and "diffusion" not in params:
            ref_dir, seconds = self.reference(unit.seed)
            params["diffusion"] = str(ref_dir)
            if seconds:
                timings.append(self._timing(unit, "diffusion", seconds))
        if unit.label == "skyline":
            return self._run_skyline(unit, train_cfg, timings)
        warm = None
        if cfg.warm_start_from_dfl and unit.method not in COLD:
            warm = load_model(self.unit_dir(Unit("dfl", unit.seed, "dfl")) / "model")
        start = time.perf_counter()
        model, result = train_model(
            unit.method,
            self.suite,
            task=cfg.task,
            forecaster=cfg.forecaster,
            train=train_cfg,
            seed=unit.seed,
            method_params=params,
            warm_start=warm,
        )
        timings.append(self._timing(unit, "train", time.perf_counter() - start))
        model.method = unit.label
        save_trained(model, self.suite, folder / "model")
        start = time.perf_counter()
        results = self._evaluate(unit, model)
        timings.append(self._timing(unit, "evaluate", time.perf_counter() - start))
        history = pd.DataFrame(result.history)
        history.insert(0, "seed", unit.seed)
        history.insert(0, "method", unit.label)
        worst = result.artifacts.get("worst_case")
        return self._finish(unit, results, history, timings, worst)

    def _run_skyline(
        self, unit: Unit, train_cfg: Any, timings: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """DFL trained on the first 70 % of each test set, scored on its last 30 %."""
        rows = []
        for name, (fit, score, test) in self.skyline_parts().items():
            cut = int(0.85 * len(fit))
            data = TrainingData(
                fit.subset(np.arange(cut)),
                fit.subset(np.arange(cut, len(fit))) if len(fit) - cut > 1 else None,
                test.scaler,
                test.scaler.transform(test.series.values),
                self.suite.data.interval_s,
            )
            local = Suite(f"skyline:{name}", data, [], test.series, name)
            start = time.perf_counter()
            model, _ = train_model(
                "dfl",
                local,
                task=self.cfg.task,
                forecaster=self.cfg.forecaster,
                train=train_cfg,
                seed=unit.seed,
            )
            timings.append(self._timing(unit, "train", time.perf_counter() - start))
            scored = TestSet(name, score, test.scaler, test.series, test.w_distance, test.note)
            table, _ = evaluate_tests(model.forecaster, [scored], model.task, **self._eval_kw(unit))
            table.insert(0, "suite", "skyline")
            rows.append(table)
        results = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        results.insert(0, "seed", unit.seed)
        results.insert(0, "method", "skyline")
        return self._finish(unit, results, pd.DataFrame(), timings, None)

    def _eval_kw(self, unit: Unit) -> dict[str, Any]:
        ev = self.cfg.evaluation
        return {"alpha": ev.cvar_alpha, "n_boot": ev.bootstrap, "seed": unit.seed}

    def _evaluate(self, unit: Unit, model: TrainedModel) -> pd.DataFrame:
        """Every test of the run for one trained model, as tidy rows."""
        cfg, suite, kw = self.cfg, self.suite, self._eval_kw(unit)
        groups: list[tuple[str, list[TestSet]]] = [(suite.name, suite.tests)]
        if cfg.evaluation.corruptions:
            groups.append(("corruptions", self.corrupted()))
        if cfg.data.extra_tests:
            groups.append(("user", self.extra_tests()))
        if cfg.evaluation.skyline:
            groups.append(
                (
                    "skyline",
                    [
                        TestSet(n, score, t.scaler, t.series, t.w_distance, t.note)
                        for n, (_, score, t) in self.skyline_parts().items()
                    ],
                )
            )
        tables = []
        for suite_name, tests in groups:
            table, _ = evaluate_tests(model.forecaster, tests, model.task, **kw)
            table.insert(0, "suite", suite_name)
            tables.append(table)
        results = pd.concat(tables, ignore_index=True)
        results.insert(0, "seed", unit.seed)
        results.insert(0, "method", unit.label)
        return results

    def _timing(self, unit: Unit, stage: str, seconds: float) -> dict[str, Any]:
        return {"method": unit.label, "seed": unit.seed, "stage": stage, "seconds": seconds}

    def _finish(
        self,
        unit: Unit,
        results: pd.DataFrame,
        history: pd.DataFrame,
        timings: list[dict[str, Any]],
        worst: np.ndarray | None,
    ) -> dict[str, Any]:
        folder = self.unit_dir(unit)
        for name, frame in (
            ("results.csv", results),
            ("history.csv", history),
            ("timings.csv", pd.DataFrame(timings)),
        ):
            with atomic_open(folder / name, "w", newline="") as handle:
                frame.to_csv(handle, index=False)
        if worst is not None:
            with atomic_open(folder / "worst_case.npy", "wb") as handle:
                np.save(handle, worst)
        scored = "skyline" if unit.label == "skyline" else self.suite.name
        main = results[(results["suite"] == scored) & (results["metric"] == "normalized_regret")]
        summary = {
            "unit": unit.key,
            "train_s": sum(t["seconds"] for t in timings if t["stage"] == "train"),
            "avg_normalized_regret": float(main["value"].mean()) if len(main) else float("nan"),
            "max_normalized_regret": float(main["value"].max()) if len(main) else float("nan"),
        }
        write_json(folder / "done.json", summary)
        return summary

    # ---------------------------------------------------------------- assemble
    def assemble(self) -> pd.DataFrame:
        """Gather the finished units' files into the run's tables (plan order)."""
        results, histories, timings = [], [], []
        for unit in self.units:
            folder = self.unit_dir(unit)
            if not (folder / "done.json").is_file():
                continue
            results.append(pd.read_csv(folder / "results.csv"))
            for name, bucket in (("history.csv", histories), ("timings.csv", timings)):
                path = folder / name
                if path.stat().st_size > 1:
                    bucket.append(pd.read_csv(path))
        table = (
            pd.concat(results, ignore_index=True)
            if results
            else pd.DataFrame(columns=["method", "seed", "suite", "test_set", "metric", "value"])
        )
        with atomic_open(self.out / "results.csv", "w", newline="") as handle:
            table.to_csv(handle, index=False)
        for name, parts in (("histories.csv", histories), ("timings.csv", timings)):
            frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            with atomic_open(self.out / name, "w", newline="") as handle:
                frame.to_csv(handle, index=False)
        self._write_samples()
        write_json(
            self.out / "results.json",
            {
                "profile": self.cfg.name,
                "config": self.cfg.model_dump(mode="json"),
                "notes": self.suite.notes,
                "test_sets": [
                    {"name": t.name, "w_distance": t.w_distance, "note": t.note}
                    for t in self.suite.tests
                ],
                "versions": versions(),
                "results": table.to_dict("records"),
                "timings": pd.concat(timings, ignore_index=True).to_dict("records")
                if timings
                else [],
            },
        )
        return table

    def _write_samples(self) -> None:
        """Real and generated segments and the worst cases 3D-Learning found."""
        arrays: dict[str, np.ndarray] = {}
        seed = self.cfg.seeds[0]
        ref = self.reference_dir(seed)
        if (ref / "diffusion.pt").is_file():
            from drdfl.diffusion.model import DiffusionModel
            from drdfl.diffusion.segments import random_segments

            model = DiffusionModel.load(ref)
            data = self.suite.data
            real = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
            n = 16
            rng = np.random.default_rng(seed)
            arrays["real"] = data.scaler.transform(
                random_segments(real, model.segment_length, n, rng)
            )
            arrays["generated"] = data.scaler.transform(model.sample_series(n, seed=seed))
        worst = self.unit_dir(Unit("threed", seed, "threed")) / "worst_case.npy"
        if worst.is_file():
            arrays["worst_case"] = np.load(worst)
        if arrays:
            with atomic_open(self.out / "samples.npz", "wb") as handle:
                np.savez(handle, **arrays)

    # ---------------------------------------------------------------- main
    def execute(self) -> pd.DataFrame:
        """Run every unit not yet done, then assemble the tables and the report."""
        self.prepare_dir()
        if self.cfg.threads is not None:
            torch.set_num_threads(self.cfg.threads)
        log.info("run %s: %d units into %s", self.cfg.name, len(self.units), self.out)
        todo = [u for u in self.units if not (self.resume and self.is_done(u))]
        skipped = len(self.units) - len(todo)
        if skipped:
            tqdm.write(f"resuming: {skipped} of {len(self.units)} units already done")
        bar = tqdm(todo, desc="units", disable=not self.progress, unit="unit")
        for unit in bar:
            bar.set_postfix_str(unit.key)
            summary = self.run_unit(unit)
            line = (
                f"{unit.key}: train {summary['train_s']:.1f}s, normalized regret avg "
                f"{summary['avg_normalized_regret']:.4f} max {summary['max_normalized_regret']:.4f}"
            )
            log.info(line)
            if self.progress:
                tqdm.write(line)
        table = self.assemble()
        from drdfl.evaluation.report import build_report

        build_report(self.out)
        log.info("report written to %s", self.out / "report.md")
        return table


def versions() -> dict[str, str]:
    """Versions of what produced the numbers."""
    return {
        "drdfl": drdfl.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(
    config: ExperimentConfig,
    out: str | Path = "runs/latest",
    resume: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the whole pipeline for ``config`` into ``out``; returns the tidy results."""
    return Run(config, out, resume, progress).execute()
