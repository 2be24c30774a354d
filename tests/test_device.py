"""One device policy: a device is checked before any work, random draws do not depend on it,
and scoring runs where the forecaster is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drdfl.cli import main
from drdfl.device import resolve_device
from drdfl.errors import ConfigError
from drdfl.seeding import randn, torch_generator


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_resolves() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_config_error(no_cuda: None, spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"device '{spec}': CUDA is not available"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "tpu:0", "cpu:x"])
def test_unknown_device_names_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"device '{spec}'"):
        resolve_device(spec)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--profile", "quick", "--device", "cuda", "--set", "seeds=0"],
        ["sweep", "--profile", "quick", "--device", "cuda", "--grid", "train.lr=1e-3"],
        ["train", "--suite", "synthetic", "--device", "cuda"],
        ["diffusion", "train", "--train", "no-such-dataset", "--device", "cuda"],
    ],
    ids=["run", "sweep", "train", "diffusion-train"],
)
def test_cli_refuses_cuda_before_any_work(
    no_cuda: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: device 'cuda': CUDA is not available on this machine "
        f"({'no GPU is visible' if torch.version.cuda else 'torch is built without CUDA'}"
        "); use cpu"
    ]
    assert not out.exists()  # nothing was written: the check came first


def test_library_entry_points_check_the_device(no_cuda: None) -> None:
    from conftest import small_training_data

    from drdfl.diffusion.model import get_preset
    from drdfl.diffusion.train import fit_series
    from drdfl.methods import get_method
    from drdfl.methods.settings import TrainConfig
    from drdfl.models.forecasters import build_forecaster
    from drdfl.tasks import get_task

    preset = get_preset("tiny")
    series = np.linspace(1.0, 2.0, 256)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        fit_series(series, preset.model, preset.train, progress=False, device="cuda")
    data = small_training_data(0.1, seed=0)
    method = get_method("dfl", train=TrainConfig(epochs=1, device="cuda"))
    with pytest.raises(ConfigError, match="CUDA is not available"):
        method.fit(data, get_task("provisioning"), build_forecaster("mlp", seed=0))


def test_draws_come_from_the_generator_whatever_the_target_device() -> None:
    expected = torch.randn((3, 5), generator=torch_generator(7))
    drawn = randn((3, 5), torch_generator(7), "cpu")
    assert torch.equal(drawn, expected)
    placed = randn((3, 5), torch_generator(7), "meta", torch.float64)
    assert placed.device.type == "meta"
    assert placed.dtype == torch.float64
    assert torch.equal(randn((3, 5), None, "cpu").isfinite(), torch.ones(3, 5, dtype=torch.bool))


def test_sampling_and_the_denoising_loss_follow_the_seed() -> None:
    from drdfl.diffusion.ddpm import denoising_loss
    from drdfl.diffusion.model import DiffusionModel, get_preset

    model = DiffusionModel(get_preset("tiny").model).eval()
    a = model.sample(3, "ddpm", seed=4).segments
    b = model.sample(3, "ddpm", generator=torch_generator(4)).segments
    c = model.sample(3, "ddpm", seed=5).segments
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    x0 = torch.rand(4, model.segment_length, generator=torch_generator(0))
    with torch.no_grad():
        first = denoising_loss(model.eps, model.schedule, x0, generator=torch_generator(1))
        again = denoising_loss(model.eps, model.schedule, x0, generator=torch_generator(1))
    assert float(first) == float(again)


def test_scoring_runs_where_the_forecaster_is() -> None:
    from drdfl.evaluation.metrics import forecaster_device
    from drdfl.models.forecasters import build_forecaster

    assert forecaster_device(build_forecaster("lstm", seed=0)) == torch.device("cpu")
    assert forecaster_device(torch.nn.Identity()) == torch.device("cpu")
    on_meta = build_forecaster("linear", seed=0).to("meta")
    assert forecaster_device(on_meta) == torch.device("meta")
