"""What a run leaves in its process: the caller's random number generators as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drdfl.config import resolve_config
from drdfl.runner import steps
from drdfl.runner.reference import ReferenceCache
from drdfl.runner.unit import run_data

TINY = [
    "seeds=0",
    "methods=naive-last,mse",
    "train.epochs=1",
    "data.synthetic_days=0.3",
    "evaluation.skyline=false",
    "evaluation.corruptions=false",
    "evaluation.online=false",
]


def _states() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states |= {f"cuda:{k}": s for k, s in enumerate(torch.cuda.get_rng_state_all())}
    return states


def _unchanged(before: dict[str, torch.Tensor]) -> bool:
    after = _states()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.fixture
def no_cuda_reseeding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reseeding every CUDA device (``torch.manual_seed`` does) fails the test, on a
    machine without CUDA too."""

    def refuse(seed: int) -> None:
        raise AssertionError("a seeding site reseeded every CUDA device")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", refuse)


def test_seeding_sites_leave_the_callers_generators_as_they_were(
    tmp_path: Path, no_cuda_reseeding: None
) -> None:
    from drdfl.methods import get_method
    from drdfl.methods.settings import TrainConfig
    from drdfl.models.forecasters import build_forecaster
    from drdfl.tasks import get_task

    torch.default_generator.manual_seed(1234)
    before = _states()
    model = build_forecaster("mlp", 7, 1, seed=3)
    assert _unchanged(before)
    suite = steps.build_suite(resolve_config("quick", overrides=TINY).data)
    task = get_task("provisioning")
    method = get_method("dfl", train=TrainConfig(epochs=1, batch_size=256, seed=5))
    method.fit(suite.data, task, model)
    assert _unchanged(before)
    cfg = resolve_config("quick", overrides=[*TINY, "diffusion.preset=tiny"])
    series = run_data(cfg).reference_series()
    scaler = run_data(cfg).suite.data.scaler
    diffusion = cfg.diffusion.model_copy(update={"iterations": 2})
    ReferenceCache(tmp_path / "cache").get(diffusion, series, scaler, 0)
    assert _unchanged(before)


@pytest.mark.gpu
def test_training_on_a_gpu_leaves_the_callers_cuda_generators_as_they_were(
    no_cuda_reseeding: None,
) -> None:
    from drdfl.methods import get_method
    from drdfl.methods.settings import TrainConfig
    from drdfl.models.forecasters import build_forecaster
    from drdfl.tasks import get_task

    torch.cuda.init()
    before = _states()
    assert any(k.startswith("cuda") for k in before)
    model = build_forecaster("mlp", 7, 1, seed=3)
    suite = steps.build_suite(resolve_config("quick", overrides=TINY).data)
    method = get_method("dfl", train=TrainConfig(epochs=1, batch_size=256, device="cuda"))
    method.fit(suite.data, get_task("provisioning"), model)
    assert _unchanged(before)
