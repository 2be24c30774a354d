"""``drdfl train`` and ``drdfl evaluate``."""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from drdfl.cli.common import (
    DataDirOption,
    DeviceOption,
    ProgressOption,
    echo_table,
    load_config_file,
)
from drdfl.schema import MAX_SEED

SUITE_HELP = "synthetic (built-in, no files) | paper | honest"
# Seconds per training iteration of each reference diffusion preset on one CPU thread,
# enough for "roughly": measured at d0088d5 on a 2-core x86-64 machine (torch 2.13 CPU) as
# (a 60-iteration fit − a 10-iteration fit) / 50 with the gate off, the median of three
# after a warm-up fit; the gate's checks come on top.
_CPU_S_PER_ITERATION = {"tiny": 0.024, "fast": 0.059, "paper": 0.020, "paper-2d": 0.61}


def train(
    out: Annotated[Path, typer.Option("-o", "--out", help="New model directory to write.")],
    method: Annotated[str, typer.Option("--method", "-m", help="Training method.")] = "dfl",
    suite: Annotated[
        str | None, typer.Option("--suite", help=SUITE_HELP + " (default: the config's)")
    ] = None,
    forecaster: Annotated[
        str | None,
        typer.Option(help="lstm | mlp | linear (default: lstm, or the --warm-start model's)"),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(help="none | last | mean | ets: the rule the forecaster corrects"),
    ] = None,
    task: Annotated[
        str, typer.Option(help="task[:preset], e.g. provisioning:paper-text or replicas:strict")
    ] = "provisioning",
    horizon: Annotated[
        int | None, typer.Option(min=1, max=64, help="Slots forecast and decided (data.horizon).")
    ] = None,
    lead: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=4096,
            help="Slots between the decision and the first slot it is for, e.g. a new "
            "replica's start-up time (data.lead).",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override train.epochs.")] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=MAX_SEED, help="Seed of every random choice.")
    ] = 0,
    config: Annotated[Path | None, typer.Option(help="TOML experiment config.")] = None,
    warm_start: Annotated[
        Path | None, typer.Option("--warm-start", help="MODEL_DIR to start from.")
    ] = None,
    diffusion: Annotated[
        Path | None, typer.Option(help="DIFF_DIR of a diffusion model (threed, diffusion-augment).")
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            help="threed's budget: nats per segment slot for the default path-KL set, the "
            "score-matching excess ε with method_params ambiguity=paper."
        ),
    ] = None,
    device: DeviceOption = None,
    data_dir: DataDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train one forecaster with one method and save it to a new model directory."""
    from drdfl.artifacts import ensure_new_model_dir
    from drdfl.device import resolve_device
    from drdfl.runner.steps import build_suite, save_trained, train_model

    ensure_new_model_dir(out)
    forecaster = _forecaster_of(warm_start, forecaster)
    cfg = load_config_file(config)
    chosen_device = str(resolve_device(device or cfg.device))
    data = cfg.data if suite is None else cfg.data.model_copy(update={"suite": suite})
    if data_dir is not None:
        data = data.model_copy(update={"data_dir": str(data_dir)})
    shape = {k: v for k, v in (("horizon", horizon), ("lead", lead)) if v is not None}
    data = data.model_copy(update=shape)
    update: dict[str, object] = {"device": chosen_device}
    if epochs is not None:
        update["epochs"] = epochs
    train_cfg = cfg.train.model_copy(update=update)
    params = dict(cfg.method_params.get(method, {}))
    if diffusion is not None:
        params["diffusion"] = str(diffusion)
    if budget is not None:
        params["budget"] = budget
    with _warnings_as_lines():
        built = build_suite(data)
        if method == "threed" and params.get("diffusion") is None:
            typer.echo(_reference_note(params), err=True)
        model, result = train_model(
            method,
            built,
            task=task,
            task_params=cfg.task_params,
            forecaster=forecaster,
            anchor=anchor or cfg.anchor,
            anchor_alpha=cfg.anchor_alpha,
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


def _forecaster_of(warm_start: Path | None, forecaster: str | None) -> str:
    """The forecaster to train: a warm start continues its own, which ``--forecaster`` may
    name but not change."""
    if warm_start is None:
        return forecaster or "lstm"
    from drdfl.artifacts import load_model
    from drdfl.errors import ConfigError
    from drdfl.models.forecasters import REVIN_PREFIX, forecaster_spec

    spec = forecaster_spec(load_model(warm_start).forecaster)
    own = (REVIN_PREFIX if spec.get("revin") else "") + str(spec["name"])
    if forecaster is not None and forecaster != own:
        raise ConfigError(
            f"--forecaster {forecaster}: the --warm-start model {warm_start} is a {own} "
            f"forecaster, and training continues it; drop --forecaster or pass {own}"
        )
    return own


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
    """Evaluate a saved model on the suite it was trained on (or --suite) and on --test
    sets; writes MODEL_DIR/eval-<what>.csv, named after the suite and the --test files
    (numbered when that name holds another evaluation)."""
    from drdfl._io import atomic_open
    from drdfl.runner.steps import evaluate_model

    tests = list(test or [])
    _check_writable(model_dir)
    with _warnings_as_lines():
        table, windows, notes = evaluate_model(model_dir, suite, tests, data_dir, per_window)
    label = output_label(model_dir, suite, tests)
    written = model_dir / f"eval-{label}.csv"
    with atomic_open(written, "w", newline="") as handle:
        table.to_csv(handle, index=False)
    if windows is not None:
        with atomic_open(model_dir / f"windows-{label}.csv", "w", newline="") as handle:
            windows.to_csv(handle, index=False)
    if as_json:
        payload = {"results": table.to_dict("records"), "notes": notes, "file": str(written)}
        typer.echo(json.dumps(payload, indent=2))
        return
    # dropna=False: a metric that came out NaN is shown as such, never silently left out.
    wide = table.pivot_table(
        index="test_set", columns="metric", values="value", sort=False, dropna=False
    )
    cols = ["normalized_regret", "normalized_regret_ratio", "regret", "mse", "w_distance"]
    echo_table(wide[[c for c in cols if c in wide.columns]], title=f"{model_dir} — {label}")
    for note in notes:
        typer.echo(f"note: {note}")
    typer.echo(f"written: {written}")


def _check_writable(model_dir: Path) -> None:
    """Refuse, before any work, a model directory the evaluation cannot write into."""
    import os
    import tempfile

    from drdfl.errors import ConfigError

    if not model_dir.is_dir():
        return  # said by the evaluation: not found, or not a model directory
    try:
        fd, probe = tempfile.mkstemp(prefix=".drdfl-write-check.", dir=model_dir)
    except OSError as exc:
        raise ConfigError(
            f"{model_dir}: cannot write the evaluation's files there ({exc.strerror}); copy "
            "the model directory somewhere writable"
        ) from None
    os.close(fd)
    os.unlink(probe)


#: in a model directory: which evaluation each eval-<label>.csv holds
EVALUATIONS_FILE = "evaluations.json"


def evaluation_label(suite: str | None, tests: list[str]) -> str:
    """The name part of an evaluation's output files: the suite (``default`` for the
    model's own) and the stems of the --test files, joined by ``+``; letters of any
    alphabet are kept, anything unsafe in a file name becomes ``_``."""
    parts = [suite] if suite else [] if tests else ["default"]
    parts += [Path(spec).name.split(".")[0] or spec for spec in tests]
    return re.sub(r"[^\w.+-]", "_", "+".join(parts))


def output_label(model_dir: Path, suite: str | None, tests: list[str]) -> str:
    """:func:`evaluation_label`, numbered (``-2``, ``-3`` …) when ``model_dir`` holds an
    evaluation of that label from other test files (two ``code.csv`` in different
    folders): one never overwrites the other. Recorded in ``evaluations.json``."""
    from drdfl._io import write_json

    base = evaluation_label(suite, tests)
    sources = {
        "suite": suite,
        "tests": [str(Path(t).resolve()) if Path(t).exists() else t for t in tests],
    }
    path = model_dir / EVALUATIONS_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    number = 1
    while True:
        label = base if number == 1 else f"{base}-{number}"
        # An unrecorded file (an older drdfl's) is taken for this evaluation, as before.
        if label not in record or record[label] == sources:
            break
        number += 1
    if record.get(label) != sources:
        write_json(path, {**record, label: sources})
    return label


def _reference_note(params: dict[str, Any]) -> str:
    """The one line said before threed fits its own reference model (a long, quiet stage)."""
    from drdfl.diffusion.model import get_preset

    preset = str(params.get("preset", "fast"))
    iterations = params.get("diffusion_iterations") or get_preset(preset).train.iterations
    per_iteration = _CPU_S_PER_ITERATION.get(preset)
    if per_iteration is None:
        took = "no estimate for this preset"
    else:
        seconds = int(iterations) * per_iteration
        rough = f"{max(1, round(seconds))} s" if seconds < 90 else f"{round(seconds / 60)} min"
        took = f"roughly {rough} on one CPU core"
    return (
        f"threed: fitting its own reference diffusion model θ₀ first (preset {preset}, "
        f"{int(iterations):,} iterations; {took}); --diffusion DIFF_DIR reuses a fitted one"
    )


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Warnings about the user's data print as one ``warning:`` line, as they happen."""
    from drdfl.runner.steps import DegenerateDataWarning

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, DegenerateDataWarning):
            typer.echo(f"warning: {message}", err=True)
        else:
            original(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        original = warnings.showwarning
        warnings.showwarning = show
        yield
