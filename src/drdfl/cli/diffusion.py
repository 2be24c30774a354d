"""``drdfl diffusion …``: train, sample and evaluate the diffusion model of a workload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import numpy as np
import pandas as pd
import torch
import typer

from drdfl._io import write_text
from drdfl.errors import ConfigError

app = typer.Typer(no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory of trace files (default: $DRDFL_DATA_DIR)."),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads", min=1, help="torch CPU threads (1 is often fastest on a busy machine)."
    ),
]
SamplerOpt = Annotated[str, typer.Option("--sampler", help="ddpm (ancestral, all T steps) | ddim")]
StepsOpt = Annotated[
    int | None, typer.Option("--steps", help="Reverse steps (default: T for ddpm, 50 for ddim).")
]


def _fraction(value: float, option: str) -> float:
    if not 0 < value <= 1:
        raise ConfigError(f"{option} must be in (0, 1], got {value}")
    return value


@app.command("train")
def train(
    train_spec: Annotated[
        str, typer.Option("--train", help="Training series: dataset name or file.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Diffusion directory to write.")],
    preset: Annotated[str, typer.Option(help="paper | paper-2d | fast | tiny")] = "fast",
    iterations: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Most training iterations; the quality gate may end sooner "
            "(default: the preset's).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    head: Annotated[
        float, typer.Option(help="Train on the first fraction of the series (e.g. 0.7).")
    ] = 1.0,
    layout: Annotated[
        str | None, typer.Option(help="Denoiser layout 1d | 2d (default: the preset's).")
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Stop after this many seconds.")
    ] = None,
    data_dir: DataDir = None,
    threads: Threads = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N | mps")] = "cpu",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Fit a diffusion model to a demand series until it passes the preset's quality gate
    (resumes a matching checkpoint in OUT); the verdict is saved with the model."""
    from drdfl.data.loading import load_series
    from drdfl.device import resolve_device
    from drdfl.diffusion.model import DiffusionModelConfig, get_preset
    from drdfl.diffusion.train import fit_series
    from drdfl.schema import parse_model

    target = resolve_device(device)
    chosen = get_preset(preset)
    model_cfg = chosen.model
    if layout is not None:
        model_cfg = cast(
            DiffusionModelConfig,
            parse_model(DiffusionModelConfig, {**model_cfg.model_dump(), "layout": layout}),
        )
    updates: dict[str, int] = {"seed": seed}
    if iterations is not None:
        updates["iterations"] = iterations
    train_cfg = chosen.train.model_copy(update=updates)
    if threads is not None:
        torch.set_num_threads(threads)
    series = load_series(train_spec, data_dir=data_dir)
    cut = int(len(series) * _fraction(head, "--head"))
    series = series.slice(0, cut, series.name)
    _, result = fit_series(series, model_cfg, train_cfg, out, time_budget, progress, target)
    tail = result.losses[-100:]
    typer.echo(
        f"trained {preset} diffusion on {series.name} ({len(series)} slots): "
        f"{result.iterations} iterations in {result.seconds:.1f} s"
        + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
        + f", final loss {tail.mean():.4f} -> {out}"
    )
    if result.quality is not None:
        typer.echo(result.quality.summary())


@app.command("sample")
def sample(
    diff_dir: Annotated[
        Path | None, typer.Argument(help="Diffusion directory (or --run OUT instead).")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Number of segments to generate.")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="CSV file to write.")] = None,
    sampler: SamplerOpt = "ddpm",
    steps: StepsOpt = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the sampling noise (with --run: the unit's seed).")
    ] = None,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace", help="Write a replayable trace (slot, tokens, segment): segments end to end."
        ),
    ] = False,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run", help="A drdfl run's OUT: write its 3D-Learning segments as a trace instead."
        ),
    ] = None,
    which: Annotated[
        str,
        typer.Option(
            "--which",
            help="With --run: worst-case (the adversary's) | reference (θ₀'s from the same "
            "states).",
        ),
    ] = "worst-case",
    threads: Threads = None,
) -> None:
    """Generate segments (segment, slot, demand in real units clipped at 0, normalized), or
    write them, or a 3D-Learning run's worst cases (--run), as a replayable stress trace
    (slot, tokens, segment) for drdfl backtest, simulators and load generators."""
    from drdfl.serve import trace_frame

    if out is None:
        raise ConfigError("-o/--out: give the CSV file to write")
    if (diff_dir is None) == (run is None):
        raise ConfigError("give a diffusion directory or --run OUT (one of them)")
    if run is not None:
        from drdfl.runner.operate import run_segments

        if n is not None or trace:
            raise ConfigError("--run writes the run's own segments as a trace: drop --n/--trace")
        segments, interval_s, source = run_segments(run, which, seed)
        write_text(out, trace_frame(segments).to_csv(index=False, float_format="%.10g"))
        typer.echo(
            f"wrote {segments.shape[0]} segments of {segments.shape[1]} slots of {interval_s:g} s "
            f"({which}, {source}) as a trace -> {out}"
        )
        return
    from drdfl.diffusion.model import DiffusionModel
    from drdfl.diffusion.samplers import get_sampler

    if n is None or n <= 0:
        raise ConfigError(f"--n must be a positive number of segments, got {n}")
    rule = get_sampler(sampler)
    if threads is not None:
        torch.set_num_threads(threads)
    assert diff_dir is not None
    model = DiffusionModel.load(diff_dir)
    u = model.sample(n, rule, steps, seed=seed or 0, progress=True).segments.numpy()
    demand = model.to_demand(u)
    length = model.segment_length
    if trace:
        frame = trace_frame(demand)
    else:
        frame = pd.DataFrame(
            {
                "segment": np.repeat(np.arange(n), length),
                "slot": np.tile(np.arange(length), n),
                "demand": demand.reshape(-1),
                "normalized": u.reshape(-1),
            }
        )
    write_text(out, frame.to_csv(index=False))
    what = "as a trace " if trace else ""
    typer.echo(f"wrote {n} segments of {length} slots ({rule.name}) {what}-> {out}")


@app.command("evaluate")
def evaluate(
    diff_dir: Annotated[Path, typer.Argument(help="Diffusion directory.")],
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Held-out series: dataset name or file (optional)."),
    ] = None,
    tail: Annotated[
        float, typer.Option(help="Use the last fraction of the reference (e.g. 0.3).")
    ] = 1.0,
    n: Annotated[
        int | None, typer.Option("--n", help="Segments to generate (default: as in training).")
    ] = None,
    sampler: Annotated[
        str, typer.Option("--sampler", help="ddpm (what the methods sample with) | ddim")
    ] = "ddpm",
    steps: StepsOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling and the discriminator.")] = 0,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threads: Threads = None,
) -> None:
    """The quality gate on the model's own training data, and generated segments against the
    training data (and a held-out series: next to held-out vs. training)."""
    from drdfl.cli.common import echo_table
    from drdfl.data.loading import load_series
    from drdfl.diffusion.model import DiffusionModel
    from drdfl.diffusion.quality import QualityGate, gate_split, model_floor, quality_report
    from drdfl.diffusion.samplers import get_sampler
    from drdfl.diffusion.train import TRAIN_VALUES_FILE
    from drdfl.diffusion.verdict import GateConfig
    from drdfl.seeding import torch_generator

    if n is not None and n <= 0:
        raise ConfigError(f"--n must be a positive number of segments, got {n}")
    get_sampler(sampler)
    if threads is not None:
        torch.set_num_threads(threads)
    model = DiffusionModel.load(diff_dir)
    train_path = Path(diff_dir) / TRAIN_VALUES_FILE
    if model.scaler is None or not train_path.is_file():
        raise ConfigError(
            f"{diff_dir}: needs the scaler and {TRAIN_VALUES_FILE} written by 'diffusion train'"
        )
    train_values = np.load(train_path)
    saved = (model.meta.get("train_config") or {}).get("gate")
    gate_cfg = GateConfig.model_validate({**(saved or {}), "sampler": sampler, "steps": steps})
    split = gate_split(train_values, model.segment_length, gate_cfg)
    gate = QualityGate(
        split, model.segment_length, model_floor(model), gate_cfg, torch_generator(seed)
    )(model)
    heldout = None
    ref_name = None
    if reference is not None:
        ref = load_series(reference, data_dir=data_dir)
        start = len(ref) - int(len(ref) * _fraction(tail, "--tail"))
        ref = ref.slice(start, len(ref), ref.name)
        heldout = model.scaler.transform(ref.values)
        ref_name = ref.name
    report = quality_report(model, train_values, heldout, n, sampler, steps, seed)
    report["reference"] = ref_name
    report["gate"] = gate.to_dict()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    rows = {
        k: report[k]
        for k in ("generated_vs_train", "heldout_vs_train", "generated_vs_heldout")
        if k in report
    }
    frame = pd.DataFrame(rows).T
    frame.index.name = "comparison"
    echo_table(
        frame,
        title=f"diffusion quality ({report['n_generated']} generated segments, {sampler}); "
        "discriminative: 0.5 is perfect",
    )
    if gate.criteria:
        crit = pd.DataFrame([c.__dict__ for c in gate.criteria]).set_index("name")
        echo_table(crit, title=f"quality gate ({sampler}, split {gate.split['kind']})")
    typer.echo(gate.summary())
