"""Shared fixtures. The real traces come from the data directory (``DRDFL_DATA_DIR``,
default ``../shared/data`` next to the project root); tests that need them fail, never
skip, when they are missing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

if TYPE_CHECKING:
    from drdfl.data.training import TrainingData
    from drdfl.diffusion.model import DiffusionModel

ROOT = Path(__file__).resolve().parents[1]

# Test models are tiny: one intra-op thread is faster than two and never oversubscribes
# a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory holding the real traces (see ``../shared/data/README.md``)."""
    configured = os.environ.get("DRDFL_DATA_DIR")
    path = (Path(configured) if configured else ROOT.parent / "shared" / "data").resolve()
    if not (path / "azure-llm-2023").is_dir():
        pytest.fail(
            f"real traces not found in {path} (set DRDFL_DATA_DIR to the shared data directory)"
        )
    return path


def small_training_data(days: float, seed: int) -> TrainingData:
    """Synthetic chat demand split 80/20 into training and validation windows (7 → 1)."""
    from drdfl.data.synthetic import generate
    from drdfl.data.training import TrainingData
    from drdfl.data.windows import Scaler, make_windows, split_series

    train, val = split_series(generate(days, "chat", seed=seed), (0.8, 0.2))
    scaler = Scaler.fit(train.values)
    series = scaler.transform(train.values)
    return TrainingData(
        make_windows(series, 7, 1, name="train"),
        make_windows(scaler.transform(val.values), 7, 1, name="val"),
        scaler,
        series,
    )


def tiny_diffusion(data: TrainingData, iterations: int) -> DiffusionModel:
    """A barely trained ``tiny`` diffusion model on ``data``'s normalized series."""
    from drdfl.diffusion.model import DiffusionModel, get_preset
    from drdfl.diffusion.train import train_diffusion

    preset = get_preset("tiny")
    model = DiffusionModel(preset.model, data.scaler)
    train_diffusion(
        model,
        data.series,
        preset.train.model_copy(update={"iterations": iterations}),
        progress=False,
    )
    return model


def tiny_method_kwargs(name: str, diffusion: DiffusionModel) -> dict[str, Any]:
    """Constructor arguments that make method ``name`` tiny (those not listed: defaults)."""
    return {
        "wdro": {"radius": 0.5, "steps": 3},
        "naive-seasonal": {"period": 7},  # one day of 5-s slots is longer than the windows
        "diffusion-augment": {"diffusion": diffusion, "sampler": "ddim", "steps": 5},
        "threed": {
            "diffusion": diffusion,
            "t_prime": 2,
            "minibatch": 4,
            "adversarial_samples": 4,
            "keep_worst": 2,
        },
    }.get(name, {})


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``drdfl ARGS`` in this process: its exit status, stdout and stderr."""
    from drdfl.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def flaky(failures: dict[str, int], marks: Path) -> Any:
    """The real task function, but the first ``failures[id]`` attempts of node ``id`` raise;
    every attempt of every node leaves its count in ``marks`` (``/`` read as ``__``). For
    a Ray cluster's workers, pickle this module by value (they cannot import it)."""
    from drdfl.runner import unit as unit_module

    real = unit_module.execute_task
    marks.mkdir(parents=True, exist_ok=True)

    def task(job: Any, *needs: Any) -> Any:
        mark = marks / job.node.id.replace("/", "__")
        tries = int(mark.read_text()) if mark.exists() else 0
        mark.write_text(str(tries + 1))
        if tries < failures.get(job.node.id, 0):
            raise RuntimeError(f"{job.node.id}: injected failure {tries + 1}")
        return real(job, *needs)

    return task


def attempts(marks: Path) -> dict[str, int]:
    """The attempts :func:`flaky` counted, by node id."""
    return {p.name.replace("__", "/"): int(p.read_text()) for p in marks.iterdir()}


def group_members(pgid: int) -> list[int]:
    """The live processes of the process group ``pgid`` (zombies not counted), from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members
