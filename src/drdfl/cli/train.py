"""``drdfl train`` and ``drdfl evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from drdfl.cli.common import DataDirOption, ProgressOption, echo_table, load_config_file

SUITE_HELP = "synthetic (built-in, no files) | paper | honest"


def train(
    out: Annotated[Path, typer.Option("-o", "--out", help="Model directory to write.")],
    method: Annotated[str, typer.Option("--method", "-m", help="Training method.")] = "dfl",
    suite: Annotated[str, typer.Option("--suite", help=SUITE_HELP)] = "synthetic",
    forecaster: Annotated[str, typer.Option(help="lstm | mlp | linear")] = "lstm",
    task: Annotated[str, typer.Option(help="task[:preset], e.g. provisioning:paper-text")] = (
        "provisioning"
    ),
    epochs: Annotated[int | None, typer.Option(min=1, help="Override train.epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    config: Annotated[Path | None, typer.Option(help="TOML experiment config.")] = None,
    warm_start: Annotated[
        Path | None, typer.Option("--warm-start", help="MODEL_DIR to start from.")
    ] = None,
    diffusion: Annotated[
        Path | None, typer.Option(help="DIFF_DIR of a diffusion model (threed, diffusion-augment).")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="Robustness budget ε.")] = None,
    data_dir: DataDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train one forecaster with one method and save it to a model directory."""
    from drdfl.runner.steps import build_suite, save_trained, train_model

    cfg = load_config_file(config)
    data = cfg.data.model_copy(update={"suite": suite})
    if data_dir is not None:
        data.data_dir = str(data_dir)
    train_cfg = cfg.train if epochs is None else cfg.train.model_copy(update={"epochs": epochs})
    params = dict(cfg.method_params.get(method, {}))
    if diffusion is not None:
        params["diffusion"] = str(diffusion)
    if budget is not None:
        params["budget"] = budget
    built = build_suite(data)
    model, result = train_model(
        method,
        built,
        task=task,
        forecaster=forecaster,
        train=train_cfg,
        seed=seed,
        method_params=params,
        warm_start=warm_start,
        checkpoint=out / "checkpoint.pt",
        progress=progress,
    )
    save_trained(model, built, out)
    last = result.history[-1] if result.history else {}
    typer.echo(
        f"{method}: {len(result.history)} epochs in {result.wall_time_s:.1f}s, "
        f"best epoch {result.artifacts.get('best_epoch')}, "
        f"last val regret {last.get('val_regret', float('nan')):.4g} → {out}"
    )


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by drdfl train.")],
    suite: Annotated[str | None, typer.Option(help=SUITE_HELP + " | corruptions")] = None,
    test: Annotated[
        list[str] | None, typer.Option("--test", help="Extra test set: dataset name or file.")
    ] = None,
    data_dir: DataDirOption = None,
    per_window: Annotated[
        bool, typer.Option("--per-window", help="Also write per-window rows.")
    ] = (False),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate a saved model; writes MODEL_DIR/eval-<suite>.csv."""
    from drdfl._io import atomic_open
    from drdfl.runner.steps import evaluate_model

    tests = list(test or [])
    table, windows, notes = evaluate_model(model_dir, suite, tests, data_dir, per_window)
    label = suite or ("user" if tests else "default")
    with atomic_open(model_dir / f"eval-{label}.csv", "w", newline="") as handle:
        table.to_csv(handle, index=False)
    if windows is not None:
        with atomic_open(model_dir / f"windows-{label}.csv", "w", newline="") as handle:
            windows.to_csv(handle, index=False)
    if as_json:
        typer.echo(json.dumps({"results": table.to_dict("records"), "notes": notes}, indent=2))
        return
    wide = table.pivot_table(index="test_set", columns="metric", values="value", sort=False)
    cols = ["normalized_regret", "normalized_regret_ratio", "regret", "mse", "w_distance"]
    echo_table(wide[[c for c in cols if c in wide.columns]], title=f"{model_dir} — {label}")
    for note in notes:
        typer.echo(f"note: {note}")
