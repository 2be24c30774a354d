"""What a run leaves in its process: the data built once per data settings, a task in the
caller's directory and settings with the process's own restored after, and the caller's
random number generators as they were."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from drdfl.config import resolve_config
from drdfl.runner import steps
from drdfl.runner import unit as unit_module
from drdfl.runner.local import LocalExecutor
from drdfl.runner.plan import Node
from drdfl.runner.reference import ReferenceCache, ReferenceEntry
from drdfl.runner.sweep import Sweep
from drdfl.runner.unit import Job, execute_task, run_data

TINY = [
    "seeds=0",
    "methods=naive-last,mse",
    "train.epochs=1",
    "data.synthetic_days=0.3",
    "evaluation.skyline=false",
    "evaluation.corruptions=false",
    "evaluation.online=false",
]


def test_a_sweep_over_data_builds_each_points_suite_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    build = steps.build_suite

    def counted(data, seed=0):  # type: ignore[no-untyped-def]
        built.append(data.window)
        return build(data, seed)

    monkeypatch.setattr(steps, "build_suite", counted)
    cfg = resolve_config("quick", overrides=TINY)
    sweep = Sweep(cfg, tmp_path / "out", {"data.window": [5, 7]}, cache=tmp_path / "c")
    sweep.progress = False
    result = sweep.execute(LocalExecutor(1))
    assert result.failed == []
    assert sorted(built) == [5, 7]  # validated, trained, scored and assembled: once each
    for point, window in zip(result.points, (5, 7), strict=True):
        model = tmp_path / "out" / "points" / point.id / "units" / "mse-s0" / "model"
        assert json.loads((model / "model.json").read_text())["window"] == window


def test_run_data_is_kept_per_data_settings_directory_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = resolve_config("quick", overrides=TINY)
    other = resolve_config("quick", overrides=[*TINY, "data.window=5"])
    first = run_data(cfg)
    assert run_data(other) is not first and run_data(cfg) is first
    monkeypatch.setenv("DRDFL_DATA_DIR", str(tmp_path))
    assert run_data(cfg) is not first  # data_dir none reads the environment's directory
    monkeypatch.delenv("DRDFL_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert run_data(cfg) is not first  # relative paths read elsewhere


def test_a_task_runs_in_the_callers_directory_and_settings_and_restores_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller, data = tmp_path / "caller", tmp_path / "data"
    caller.mkdir(), data.mkdir()
    seen: list[tuple[str, str | None, str | None]] = []

    def fit(cfg, seed, cache, progress=False):  # type: ignore[no-untyped-def]
        seen.append((os.getcwd(), os.environ.get("DRDFL_DATA_DIR"), os.environ.get("HOME")))
        if seed == 1:
            raise RuntimeError("failed in the caller's directory")
        return ReferenceEntry(tmp_path / "entry")

    monkeypatch.setattr(unit_module, "fit_reference", fit)
    monkeypatch.delenv("DRDFL_DATA_DIR", raising=False)
    here, home = os.getcwd(), os.environ.get("HOME")
    cfg = resolve_config("quick", overrides=TINY)
    env = {"DRDFL_DATA_DIR": str(data)}
    for seed in (0, 1):
        node = Node(f"reference-s{seed}", "reference", seed)
        job = Job(node, cfg, tmp_path, tmp_path, cwd=str(caller), env=env)
        if seed == 1:
            with pytest.raises(RuntimeError, match="caller's directory"):
                execute_task(job)
        else:
            assert execute_task(job)["node"] == "reference-s0"
        assert os.getcwd() == here and "DRDFL_DATA_DIR" not in os.environ
        assert os.environ.get("HOME") == home
    assert seen == [(str(caller), str(data), home)] * 2


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
