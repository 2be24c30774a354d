"""Benchmark: wall time and peak memory of each stage of the ``paper`` profile, the robustness
overhead of 3D-Learning, scaling with training length, and an estimate of a full run.

Stages, each measured with the ``paper`` profile's settings on the paper suite (peak RSS
per stage is ``VmHWM``, reset before the stage):

* **diffusion pre-training**: a few iterations of the ``paper`` preset after a warm-up,
  extrapolated to 1,000 iterations and to the preset's 7,000;
* **sampling**: a few full DDPM chains of the ``paper`` preset, extrapolated to 1,000
  segments (CPU cost is linear in the segments);
* **DFL epoch**: one epoch of ``dfl`` on the whole training split, validation included;
* **other methods' epochs**: one epoch of each gradient method on the same prefix of the
  training windows, as a ratio to DFL's time on that prefix (applied to the DFL epoch);
* **3D-Learning outer epoch**: the inner maximisation, the adversarial data and the
  decision-focused pass. The reference θ₀ has the ``paper`` preset's U-Net but T = T′, so
  that θ₀'s trajectory pool is drawn in seconds (every call of the outer epoch sees the
  paper's shapes; drawing the paper's pool of full 500-step chains is a one-time setup,
  estimated from the sampling stage). ``--inner-epochs`` inner epochs are measured
  and the paper's ten are extrapolated (each inner epoch is the same work);
* **evaluation**: scoring (with bootstrap CIs) of a few test sets, fitted as
  ``a + b·windows`` to estimate every test set of a unit.

The robustness overhead is 3D-Learning's training time over DFL's for the same number of
epochs. Scaling repeats a DFL epoch and a (reduced) 3D-Learning outer epoch on the
synthetic workload at ×1, ×4 and ×16 its base length. Finally the full ``paper`` profile
with one seed is *estimated* from the stages (diffusion 7,000 iterations + every unit's
epochs × its epoch cost + evaluation) between the earliest early stop and the epoch
limit, and checked against the speed targets. Results go to
``benchmarks/results/pipeline.json``.

    python benchmarks/bench_pipeline.py [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS_DIR, Stage, data_dir, machine, timed

from drdfl._io import write_json
from drdfl.config import ExperimentConfig, TrainConfig, resolve_config
from drdfl.diffusion.ddpm import score_matching_loss
from drdfl.diffusion.model import DiffusionModel, get_preset
from drdfl.diffusion.samplers import tail_with_noise
from drdfl.diffusion.train import fit_series
from drdfl.evaluation.suites import Suite, corruption_tests, evaluate_tests, synthetic_suite
from drdfl.methods import get_method
from drdfl.methods.augment import DiffusionAugmentParams
from drdfl.methods.base import FitResult, TrainingData
from drdfl.methods.threed import ThreeDLearning, ThreeDParams
from drdfl.models.forecasters import build_forecaster
from drdfl.runner.plan import plan_units
from drdfl.runner.steps import build_suite, train_model
from drdfl.runner.unit import SKYLINE_FIT
from drdfl.tasks import get_task

COMMAND = "python benchmarks/bench_pipeline.py"
#: the speed targets on 2 cores
TARGET_TOTAL_S = 15 * 60
TARGET_OVERHEAD = 3.0
#: gradient methods whose epoch cost is measured relative to DFL on the same windows
SIMPLE_METHODS = (
    "dfl",
    "mse",
    "kldro",
    "cvar",
    "chi2",
    "wdro",
    "augment-gaussian",
    "augment-perlin",
    "augment-cutout",
    "augment-level",
    "augment-burst",
    "revin-dfl",
)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much of each stage is measured (full mode vs. the quick smoke check)."""

    preset: str
    diffusion_iterations: int
    sample_segments: int
    dfl_prefix_batches: int | None  # None: the whole split
    method_prefix_batches: int
    inner_epochs: int
    threed_overrides: dict[str, int]
    eval_sets: tuple[str, ...]
    threads_probe_batches: int
    scaling_base_days: float
    scaling_preset: str
    scaling_threed: dict[str, int]


FULL = Sizes(
    preset="paper",
    diffusion_iterations=3,
    sample_segments=2,
    dfl_prefix_batches=None,
    method_prefix_batches=21,
    inner_epochs=1,
    threed_overrides={},
    eval_sets=("23V(Test)", "23D", "24V"),
    threads_probe_batches=10,
    scaling_base_days=1 / 16,
    scaling_preset="fast",
    scaling_threed={"pool": 16, "trajectories": 16, "minibatch": 16, "adversarial_samples": 16},
)
QUICK = Sizes(
    preset="tiny",
    diffusion_iterations=2,
    sample_segments=4,
    dfl_prefix_batches=5,
    method_prefix_batches=2,
    inner_epochs=1,
    threed_overrides={
        "pool": 8,
        "trajectories": 8,
        "minibatch": 8,
        "adversarial_samples": 8,
        "j_segments": 8,
    },
    eval_sets=("23V(Test)",),
    threads_probe_batches=0,
    scaling_base_days=1 / 128,
    scaling_preset="tiny",
    scaling_threed={
        "pool": 4,
        "trajectories": 4,
        "minibatch": 4,
        "adversarial_samples": 4,
        "j_segments": 4,
    },
)


class TimedThreeD(ThreeDLearning):
    """3D-Learning with stopwatches on its phases (setup, inner maximisation, pricing)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock: dict[str, float] = {}
        self._in_maximise = False

    def prepare(self, *args: Any) -> None:
        with timed(self.clock, "prepare"):
            super().prepare(*args)

    def maximise(self, forecaster: torch.nn.Module, generator: torch.Generator) -> None:
        self._in_maximise = True
        try:
            with timed(self.clock, "maximise"):
                super().maximise(forecaster, generator)
        finally:
            self._in_maximise = False

    def segment_losses(self, segments: torch.Tensor, forecaster: torch.nn.Module) -> torch.Tensor:
        key = "pricing_in_maximise" if self._in_maximise else "pricing_adversarial"
        with timed(self.clock, key):
            return super().segment_losses(segments, forecaster)

    def epoch_windows(self, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with timed(self.clock, "epoch_windows"):
            return super().epoch_windows(*args)


def with_windows(suite: Suite, batches: int | None, batch_size: int, val: bool = True) -> Suite:
    """``suite`` training on its first ``batches`` batches of windows (None: all)."""
    d = suite.data
    train = d.train if batches is None else d.train.subset(np.arange(batches * batch_size))
    data = TrainingData(train, d.val if val else None, d.scaler, d.series, d.interval_s)
    return dataclasses.replace(suite, data=data)


def short_reference(suite: Suite, preset: str, t_prime: int, seed: int = 0) -> DiffusionModel:
    """A ``preset`` U-Net with T = T′ fitted for one iteration (its weights do not change
    the cost of a call; its scaler maps samples to real units as θ₀'s does)."""
    p = get_preset(preset)
    real = suite.data.scaler.inverse_transform(np.asarray(suite.data.series, dtype=np.float64))
    model, _ = fit_series(
        real,
        p.model.model_copy(update={"T": t_prime}),
        p.train.model_copy(update={"iterations": 1, "seed": seed}),
        progress=False,
    )
    return model


def threed_epoch(
    suite: Suite, cfg: ExperimentConfig, train: TrainConfig, preset: str, params: dict[str, Any]
) -> tuple[TimedThreeD, FitResult, Stage]:
    """One outer epoch of 3D-Learning on ``suite`` against a short-T reference."""
    t_prime = ThreeDParams(**params).t_prime or 10
    reference = short_reference(suite, preset, t_prime)
    method = TimedThreeD(train=train, diffusion=reference, **params)
    model = build_forecaster(cfg.forecaster, suite.data.train.window, suite.data.train.horizon)
    with Stage() as stage:
        result = method.fit(suite.data, get_task(cfg.task), model)
    return method, result, stage


def inner_step_split(method: TimedThreeD, forecaster: torch.nn.Module) -> dict[str, Any]:
    """The parts of one pathwise adversary step, each forward + backward on its own: the
    diffusion tail (T′ U-Net steps on a minibatch of trajectories), pricing every window
    of those segments with the forecaster, and the score-matching budget J."""
    p = method.params
    traj = method.pool.subset(torch.arange(min(len(method.pool), p.minibatch)))
    noise = torch.randn((len(traj), traj.n_steps, traj.states.shape[-1]))
    forecaster.eval()
    for q in forecaster.parameters():
        q.requires_grad_(False)
    with Stage() as unet:
        tail = tail_with_noise(method.adversary, traj, noise)
        tail.sum().backward()
    segments = method.to_forecaster_units(tail.detach()).requires_grad_(True)
    with Stage() as pricing:
        method.window_losses(segments, forecaster).mean().backward()
    with Stage() as budget:
        gen = torch.Generator().manual_seed(0)
        score_matching_loss(method.adversary, method.j_batch, (1, p.t_prime), gen).backward()
    per_segment = segments.shape[1] - method.window - method.horizon + 1
    return {
        "trajectories": len(traj),
        "diffusion_tail": unet.record(unet_calls=len(traj) * traj.n_steps),
        "forecaster_pricing": pricing.record(windows=len(traj) * per_segment),
        "budget_J": budget.record(segments=p.j_segments),
    }


# ------------------------------------------------------------------------- stages
def diffusion_stages(suite: Suite, sizes: Sizes) -> dict[str, Any]:
    """Pre-training speed and DDPM sampling speed of the reference preset."""
    p = get_preset(sizes.preset)
    real = suite.data.scaler.inverse_transform(np.asarray(suite.data.series, dtype=np.float64))
    warm = p.train.model_copy(update={"iterations": 1})
    fit_series(real, p.model, warm, progress=False)  # warm-up
    cfg = p.train.model_copy(update={"iterations": sizes.diffusion_iterations})
    with Stage() as stage:
        model, result = fit_series(real, p.model, cfg, progress=False)
    per_1000 = 1000 * result.seconds / sizes.diffusion_iterations
    train = stage.record(
        preset=sizes.preset,
        measured_iterations=sizes.diffusion_iterations,
        s_per_1000_iterations=round(per_1000, 1),
        preset_iterations=p.train.iterations,
        preset_total_s=round(per_1000 * p.train.iterations / 1000, 1),
        extrapolated=True,
    )
    model.eval()
    n = sizes.sample_segments
    with Stage() as stage:
        model.sample(n, "ddpm", seed=0, batch_size=n)
    sampling = stage.record(
        preset=sizes.preset,
        sampler="ddpm",
        steps=model.T,
        segment_length=model.segment_length,
        measured_segments=n,
        s_per_segment=round(stage.seconds / n, 3),
        s_per_1000_segments=round(1000 * stage.seconds / n, 1),
        extrapolated=True,
    )
    return {"diffusion_pretraining": train, "sampling": sampling}


def method_epochs(suite: Suite, cfg: ExperimentConfig, train: TrainConfig, sizes: Sizes) -> dict:
    """One epoch of every simple method on the same prefix of windows (no validation)."""
    part = with_windows(suite, sizes.method_prefix_batches, train.batch_size, val=False)
    task = get_task(cfg.task)
    out: dict[str, Any] = {}
    for name in SIMPLE_METHODS:
        model = build_forecaster(cfg.forecaster, part.data.train.window, part.data.train.horizon)
        method = get_method(name, train=train, **dict(cfg.method_params.get(name, {})))
        out[name] = round(method.fit(part.data, task, model).wall_time_s, 3)
    base = out["dfl"]
    return {
        "prefix_windows": len(part.data.train),
        "seconds": out,
        "ratio_to_dfl": {k: round(v / base, 3) for k, v in out.items()},
    }


def threed_stage(
    suite: Suite,
    cfg: ExperimentConfig,
    train: TrainConfig,
    sizes: Sizes,
    sampling: dict[str, Any],
    scale: float,
) -> dict[str, Any]:
    """One 3D-Learning outer epoch with ``sizes.inner_epochs`` inner epochs, extrapolated to
    the profile's inner epochs and to ``scale`` times the training windows of ``suite``."""
    # The paper's ambiguity set: this stage measures the paper's inner epochs.
    paper = ThreeDParams(**{**cfg.method_params.get("threed", {}), "ambiguity": "paper"})
    params = {
        **cfg.method_params.get("threed", {}),
        "ambiguity": "paper",
        "inner_epochs": sizes.inner_epochs,
        **sizes.threed_overrides,
    }
    measured = ThreeDParams(**params)
    method, result, stage = threed_epoch(suite, cfg, train, sizes.preset, params)
    outer_s = result.wall_time_s
    split = inner_step_split(method, result.forecaster)
    clock = method.clock
    inner = (clock["maximise"] - clock.get("pricing_in_maximise", 0.0)) / sizes.inner_epochs
    dfl_pass = outer_s - clock["epoch_windows"]
    # The inner epochs are the same work each; only the decision-focused pass grows with
    # the training windows (measured on all of them in full mode).
    outer = outer_s + (paper.inner_epochs - sizes.inner_epochs) * inner + (scale - 1) * dfl_pass
    setup = paper.pool * sampling["s_per_segment"] + clock["prepare"] * paper.pool / measured.pool
    return stage.record(
        preset_unet=sizes.preset,
        reference_T=method.t_prime,
        params=measured.model_dump(exclude={"diffusion"}),
        measured_inner_epochs=sizes.inner_epochs,
        paper_inner_epochs=paper.inner_epochs,
        paper_pool=paper.pool,
        phases_s={k: round(v, 3) for k, v in clock.items()},
        measured_outer_epoch_s=round(outer_s, 3),
        inner_epoch_s=round(inner, 3),
        outer_epoch_paper_s=round(outer, 1),
        setup_paper_s=round(setup, 1),
        dfl_pass_s=round(dfl_pass, 3),
        inner_step_split=split,
        note=f"outer epoch at K = {paper.inner_epochs} = measured + "
        f"{paper.inner_epochs - sizes.inner_epochs} x inner epoch; setup = {paper.pool} full "
        f"DDPM chains (sampling stage) + the measured setup x {paper.pool}/{measured.pool} "
        "(log-likelihoods of the pool)",
    )


def evaluation_stage(
    suite: Suite, cfg: ExperimentConfig, forecaster: torch.nn.Module, sizes: Sizes
) -> dict[str, Any]:
    """Scoring time of some test sets and a linear fit ``seconds ≈ a + b·windows``."""
    ev = cfg.evaluation
    task = get_task(cfg.task)
    sets = []
    for name in sizes.eval_sets:
        test = suite.test(name)
        with Stage() as stage:
            evaluate_tests(forecaster, [test], task, ev.cvar_alpha, ev.bootstrap, 0)
        sets.append(stage.record(test_set=name, windows=len(test.windows)))
    n = np.array([s["windows"] for s in sets], dtype=float)
    t = np.array([s["seconds"] for s in sets])
    if len(sets) >= 2 and np.ptp(n) > 0:
        b, a = np.polyfit(n, t, 1)
        a = max(a, 0.0)
    else:
        a, b = 0.0, float(t.sum() / n.sum())
    return {
        "bootstrap": ev.bootstrap,
        "sets": sets,
        "fit": {"a_s": round(float(a), 4), "b_s_per_window": float(b)},
    }


def unit_test_windows(suite: Suite, cfg: ExperimentConfig) -> dict[str, list[int]]:
    """Window counts of every test set one unit is scored on, by group (as the pipeline)."""
    main = [len(t.windows) for t in suite.tests]
    corrupted = [
        len(t.windows) for t in corruption_tests(suite, cfg.evaluation.corruption_severities, 0)
    ]
    skyline_fit, skyline_score = [], []
    for t in suite.tests:
        n = len(t.windows)
        cut = int(SKYLINE_FIT * n)
        gap = t.windows.window + t.windows.horizon - 1
        skyline_fit.append(cut)
        skyline_score.append(max(n - cut - gap, 0))
    return {
        "main": main,
        "corruptions": corrupted if cfg.evaluation.corruptions else [],
        "skyline_score": skyline_score if cfg.evaluation.skyline else [],
        "skyline_fit": skyline_fit if cfg.evaluation.skyline else [],
    }


def threads_probe(suite: Suite, cfg: ExperimentConfig, train: TrainConfig, batches: int) -> dict:
    """The same DFL prefix with 1 and with 2 intra-op threads (oversubscription check)."""
    part = with_windows(suite, batches, train.batch_size, val=False)
    task = get_task(cfg.task)
    out = {}
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = build_forecaster(
                cfg.forecaster, part.data.train.window, part.data.train.horizon
            )
            out[str(threads)] = round(
                get_method("dfl", train=train).fit(part.data, task, model).wall_time_s, 3
            )
    finally:
        torch.set_num_threads(before)
    return {"batches": batches, "seconds_by_threads": out}


def scaling(cfg: ExperimentConfig, train: TrainConfig, sizes: Sizes) -> list[dict[str, Any]]:
    """DFL epoch and a reduced 3D-Learning outer epoch at ×1, ×4, ×16 the base length."""
    rows = []
    for factor in (1, 4, 16):
        suite = synthetic_suite(sizes.scaling_base_days * factor, seed=0)
        with Stage() as dfl:
            _, result = train_model("dfl", suite, forecaster=cfg.forecaster, train=train, seed=0)
        params = {"inner_epochs": 1, **sizes.scaling_threed}
        method, fitted, stage = threed_epoch(suite, cfg, train, sizes.scaling_preset, params)
        rows.append(
            {
                "factor": factor,
                "days": sizes.scaling_base_days * factor,
                "train_slots": len(suite.data.series),
                "train_windows": len(suite.data.train),
                "dfl_epoch_s": round(result.wall_time_s, 3),
                "dfl_peak_rss_mib": dfl.peak_rss_mib,
                "threed_setup_s": round(method.clock["prepare"], 3),
                "threed_outer_epoch_s": round(fitted.wall_time_s, 3),
                "threed_peak_rss_mib": stage.peak_rss_mib,
            }
        )
    return rows


# ------------------------------------------------------------------------- estimate
def estimate(m: dict[str, Any], cfg: ExperimentConfig, windows: dict[str, list[int]]) -> dict:
    """The ``paper`` profile with one seed, from the stage measurements (an estimate)."""
    dfl_epoch = m["dfl_epoch"]["epoch_s"]
    per_window = dfl_epoch / m["dfl_epoch"]["train_windows"]
    ratios = m["method_epochs"]["ratio_to_dfl"]
    th = m["threed"]
    ddpm_segment = m["sampling"]["s_per_segment"]
    fit = m["evaluation"]["fit"]

    def eval_s(counts: list[int]) -> float:
        return sum(fit["a_s"] + fit["b_s_per_window"] * n for n in counts)

    unit_eval = eval_s(windows["main"] + windows["corruptions"] + windows["skyline_score"])
    da_params = dict(cfg.method_params.get("diffusion-augment", {}))
    da_params.pop("diffusion", None)
    # segments drawn from θ₀ every epoch (None there means: enough for one epoch)
    da = DiffusionAugmentParams(**da_params)
    per_segment = m["sampling"]["segment_length"] - m["suite"]["window"] - m["suite"]["horizon"] + 1
    generated = (1 - da.real_fraction) * m["dfl_epoch"]["train_windows"]
    da_samples = da.samples or math.ceil(generated / per_segment)
    one_seed = cfg.model_copy(update={"seeds": [0]})
    units = plan_units(one_seed)
    lo_epochs = min(cfg.train.epochs, (cfg.train.patience or cfg.train.epochs) + 1)
    out: dict[str, Any] = {
        "units": [u.label for u in units],
        "epochs_bounds": [lo_epochs, cfg.train.epochs],
        "threed_setup_s": th["setup_paper_s"],
        "threed_outer_epoch_s": th["outer_epoch_paper_s"],
        "diffusion_augment_epoch_s": round(dfl_epoch + da_samples * ddpm_segment, 1),
        "unit_evaluation_s": round(unit_eval, 1),
    }
    for bound, epochs in zip(("low", "high"), (lo_epochs, cfg.train.epochs), strict=True):
        groups = {
            "data (suite build)": m["suite"]["seconds"],
            "diffusion pre-training": m["diffusion_pretraining"]["preset_total_s"],
            "threed + threed-mse training": 0.0,
            "diffusion-augment training": 0.0,
            "skyline training": 0.0,
            "other methods training": 0.0,
            "evaluation": 0.0,
        }
        for u in units:
            if u.label == "skyline":
                groups["skyline training"] += epochs * per_window * sum(windows["skyline_fit"])
                groups["evaluation"] += eval_s(windows["skyline_score"])
                continue
            groups["evaluation"] += unit_eval
            if u.method == "threed":
                groups["threed + threed-mse training"] += (
                    th["setup_paper_s"] + epochs * th["outer_epoch_paper_s"]
                )
            elif u.method == "diffusion-augment":
                groups["diffusion-augment training"] += epochs * (
                    dfl_epoch + da_samples * ddpm_segment
                )
            else:
                groups["other methods training"] += epochs * dfl_epoch * ratios[u.method]
        total = sum(groups.values())
        dominant = max(groups, key=lambda k: groups[k])
        threed_train = th["setup_paper_s"] + epochs * th["outer_epoch_paper_s"]
        out[bound] = {
            "epochs": epochs,
            "stages_s": {k: round(v, 1) for k, v in groups.items()},
            "total_s": round(total, 1),
            "dominant_stage": dominant,
            "dominant_share": round(groups[dominant] / total, 3),
            "overhead_ratio": round(threed_train / (epochs * dfl_epoch), 2),
        }
    out["overhead_ratio_per_epoch"] = round(th["outer_epoch_paper_s"] / dfl_epoch, 2)
    out["targets"] = {
        "total_s_max": TARGET_TOTAL_S,
        "total_met": out["low"]["total_s"] <= TARGET_TOTAL_S,
        "overhead_max": TARGET_OVERHEAD,
        "overhead_met": out["low"]["overhead_ratio"] <= TARGET_OVERHEAD,
        "note": "estimate; 'met' is judged at the lower epoch bound (the earliest early "
        f"stop, patience + 1 = {lo_epochs} epochs), so a miss there is a miss for any run",
    }
    return out


# ------------------------------------------------------------------------- main
def run(threads: int, sizes: Sizes) -> dict[str, Any]:
    """Every measurement and the estimate, as a JSON-ready dict."""
    info = machine(threads)
    cfg = resolve_config("paper", overrides=[f"data.data_dir={data_dir()}"])
    train = cfg.train.model_copy(update={"epochs": 1})
    m: dict[str, Any] = {}
    with Stage() as stage:
        suite = build_suite(cfg.data)
    m["suite"] = stage.record(
        train_windows=len(suite.data.train),
        window=suite.data.train.window,
        horizon=suite.data.train.horizon,
        tests=len(suite.tests),
    )
    m.update(diffusion_stages(suite, sizes))

    measured = with_windows(suite, sizes.dfl_prefix_batches, train.batch_size)
    warm = with_windows(suite, 2, train.batch_size)
    train_model("dfl", warm, forecaster=cfg.forecaster, train=train)  # warm-up
    with Stage() as stage:
        dfl_model, result = train_model(
            "dfl", measured, task=cfg.task, forecaster=cfg.forecaster, train=train, seed=0
        )
    scale = len(suite.data.train) / len(measured.data.train)
    val_windows = len(suite.data.val) if suite.data.val is not None else 0
    m["dfl_epoch"] = stage.record(
        train_windows=len(suite.data.train),
        measured_windows=len(measured.data.train),
        validation_windows=val_windows,
        epoch_s=round(result.wall_time_s * scale, 3),
        extrapolated=scale != 1.0,
    )
    m["method_epochs"] = method_epochs(suite, cfg, train, sizes)

    m["evaluation"] = evaluation_stage(suite, cfg, dfl_model.forecaster, sizes)
    if sizes.threads_probe_batches:
        m["threads_probe"] = threads_probe(suite, cfg, train, sizes.threads_probe_batches)
    m["scaling"] = scaling(cfg, train, sizes)
    # Last: its peak memory is by far the largest, and freed memory stays with the process.
    m["threed"] = threed_stage(measured, cfg, train, sizes, m["sampling"], scale)
    windows = unit_test_windows(suite, cfg)
    m["test_windows"] = {k: int(sum(v)) for k, v in windows.items()}
    m["estimate"] = estimate(m, cfg, windows)
    info["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return {
        "benchmark": "paper profile: stage costs, robustness overhead, scaling, full-run estimate",
        "command": COMMAND,
        "machine": info,
        "profile": "paper",
        "train_config": train.model_dump(mode="json"),
        "stages": m,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="tiny measurement (smoke check)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "pipeline.json")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    result = run(args.threads, sizes)
    result["quick"] = args.quick
    result["sizes"] = dataclasses.asdict(sizes)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.output, result)
    est = result["stages"]["estimate"]
    print(
        f"paper profile, one seed (estimate): {est['low']['total_s'] / 60:.0f}-"
        f"{est['high']['total_s'] / 60:.0f} min, dominated by {est['low']['dominant_stage']}; "
        f"3D-Learning / DFL training {est['low']['overhead_ratio']:.1f}-"
        f"{est['high']['overhead_ratio']:.1f}x; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
