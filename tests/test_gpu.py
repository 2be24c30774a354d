"""The whole pipeline on a CUDA device. Deselected by the default test command; run on a
machine with a GPU with ``pytest -m gpu`` (they fail, never skip, without CUDA)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drdfl.config import ALL_METHODS

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA device (deselect them with -m 'not gpu')")


def _run(out: Path, profile: str, tmp_path: Path) -> pd.DataFrame:
    env = dict(os.environ, DRDFL_CACHE_DIR=str(tmp_path / "cache"))
    args = [sys.executable, "-m", "drdfl", "run", "--profile", profile, "--device", "cuda"]
    args += ["--set", "seeds=0", "--out", str(out), "--no-progress"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(out / "results.csv")


def _check(table: pd.DataFrame) -> None:
    assert set(table["method"]) == {*ALL_METHODS, "skyline"}
    regret = table[table.metric == "normalized_regret"]["value"]
    assert regret.notna().all() and np.isfinite(regret).all()


def test_quick_profile_runs_every_method_on_cuda(tmp_path: Path) -> None:
    _check(_run(tmp_path / "quick", "quick", tmp_path))


def test_paper_profile_runs_every_method_on_cuda(tmp_path: Path) -> None:
    _check(_run(tmp_path / "paper", "paper", tmp_path))


def test_sampling_draws_the_same_noise_on_cpu_and_cuda() -> None:
    from drdfl.diffusion.model import DiffusionModel, get_preset

    model = DiffusionModel(get_preset("tiny").model).eval()
    on_cpu = model.sample(8, "ddpm", seed=3, keep_last=4)
    on_gpu = model.to("cuda").sample(8, "ddpm", seed=3, keep_last=4)
    assert on_gpu.segments.device.type == "cuda"
    assert on_gpu.transitions is not None and on_cpu.transitions is not None
    torch.testing.assert_close(on_gpu.segments.cpu(), on_cpu.segments, atol=1e-3, rtol=1e-3)
    cuda_generator = torch.Generator(device="cuda").manual_seed(3)
    assert model.sample(2, "ddpm", generator=cuda_generator).segments.isfinite().all()


def test_training_and_scoring_stay_on_cuda() -> None:
    from conftest import small_training_data

    from drdfl.evaluation.metrics import score_windows
    from drdfl.methods import get_method
    from drdfl.methods.settings import TrainConfig
    from drdfl.models.forecasters import build_forecaster
    from drdfl.tasks import get_task

    data = small_training_data(0.2, seed=0)
    task = get_task("provisioning")
    fitted = get_method("dfl", train=TrainConfig(epochs=1, device="cuda")).fit(
        data, task, build_forecaster("lstm", seed=0)
    )
    assert next(fitted.forecaster.parameters()).device.type == "cuda"
    on_gpu = score_windows(fitted.forecaster, data.val, data.scaler, task)
    on_cpu = score_windows(fitted.forecaster.cpu(), data.val, data.scaler, task)
    np.testing.assert_allclose(on_gpu.regret, on_cpu.regret, rtol=1e-4, atol=1e-3)
