"""The DiffusionModel wrapper, denoiser shapes, segments and windows, the score-matching loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drdfl.data.windows import Scaler, make_windows
from drdfl.diffusion.ddpm import score_matching_loss
from drdfl.diffusion.model import (
    PRESETS,
    DiffusionModel,
    DiffusionModelConfig,
    get_preset,
)
from drdfl.diffusion.segments import (
    check_series,
    cut_segments,
    random_segments,
    segments_to_windows,
)
from drdfl.errors import ConfigError, DataError, ModelError
from drdfl.models.denoiser import SegmentDenoiser, timestep_embedding

CFG = DiffusionModelConfig(
    segment_length=16, T=10, beta_start=0.01, beta_end=0.3, base_channels=4, channel_mults=(1, 2)
)


def test_presets_are_the_documented_settings() -> None:
    paper = get_preset("paper-2d")
    assert (paper.model.T, paper.model.segment_length, paper.model.layout) == (500, 784, "2d")
    assert (paper.model.beta_start, paper.model.beta_end) == (0.05, 0.1)
    assert (paper.train.iterations, paper.train.batch_size, paper.train.lr) == (7000, 64, 1e-4)
    assert get_preset("paper").model.layout == "1d"
    for preset in PRESETS.values():  # every preset builds and ends its training on a gate
        DiffusionModel(preset.model)
        assert preset.train.gate is not None and preset.train.gate.sampler == "ddpm"
        assert preset.train.gate_after < preset.train.iterations
    with pytest.raises(ConfigError, match="unknown diffusion preset 'huge'"):
        get_preset("huge")


@pytest.mark.parametrize(("length", "layout"), [(32, "1d"), (64, "2d"), (784, "2d")])
def test_denoiser_shapes(length: int, layout: str) -> None:
    net = SegmentDenoiser(length, layout, base_channels=4, channel_mults=(1, 2))
    x = torch.randn(3, length)
    out = net(x, torch.tensor([1, 5, 9]))
    assert out.shape == (3, length)
    out.sum().backward()


def test_denoiser_depends_on_time() -> None:
    torch.manual_seed(0)
    net = SegmentDenoiser(16, "1d", 4, (1, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 16)
    assert not torch.allclose(net(x, torch.tensor([1])), net(x, torch.tensor([8])))
    emb = timestep_embedding(torch.tensor([0, 3]), 9)
    assert emb.shape == (2, 9) and torch.allclose(emb[0, :4], torch.ones(4))


@pytest.mark.parametrize(("length", "layout"), [(64, "1d"), (64, "2d")])
def test_attention_starts_as_identity_and_mixes_every_position(length: int, layout: str):
    """The self-attention block changes nothing at initialisation; trained, its output at
    the first position depends on the input at the last one."""
    torch.manual_seed(0)
    net = SegmentDenoiser(length, layout, 4, (1, 2), attention=True)
    block = net.unet.attention
    h = torch.randn(2, 8, *([4] * (1 if layout == "1d" else 2)), requires_grad=True)
    assert torch.equal(block(h), h)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    (grad,) = torch.autograd.grad(block(h).flatten(2)[0, 0, 0], h)
    assert bool(grad.flatten(2)[0, :, -1].abs().sum() > 0)
    assert bool(grad[1].abs().sum() == 0)  # batch members stay apart
    out = net(torch.randn(3, length), torch.tensor([1, 2, 3]))
    assert out.shape == (3, length)
    out.sum().backward()
    assert net.unet.attention.proj.weight.grad is not None


@pytest.mark.parametrize(
    ("length", "layout", "mults", "match"),
    [
        (30, "2d", (1, 2), "square"),
        (18, "1d", (1, 2, 2), "divisible by 4"),
        (16, "3d", (1,), "unknown denoiser layout"),
    ],
)
def test_bad_denoiser_config(length: int, layout: str, mults: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SegmentDenoiser(length, layout, 4, mults)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = DiffusionModel(CFG, Scaler(10.0, 30.0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save(tmp_path / "m", meta={"note": "x"})
    loaded = DiffusionModel.load(tmp_path / "m", expect=CFG)
    assert loaded.config == CFG and loaded.scaler == Scaler(10.0, 30.0)
    assert loaded.meta == {"note": "x"}
    assert torch.equal(model.sample(3, seed=5).segments, loaded.sample(3, seed=5).segments)


def test_checkpoint_from_another_configuration_names_the_field(tmp_path: Path) -> None:
    DiffusionModel(CFG).save(tmp_path / "m")
    other = CFG.model_copy(update={"T": 20})
    with pytest.raises(ModelError, match="T is 10 there, 20 here"):
        DiffusionModel.load(tmp_path / "m", expect=other)


def test_load_bad_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no diffusion model here"):
        DiffusionModel.load(tmp_path)
    (tmp_path / "diffusion.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable diffusion checkpoint"):
        DiffusionModel.load(tmp_path)


def test_sampling_seeds_and_bad_n() -> None:
    model = DiffusionModel(CFG)
    a = model.sample(5, "ddim", steps=4, seed=1).segments
    assert a.shape == (5, 16)
    assert torch.equal(a, model.sample(5, "ddim", steps=4, seed=1).segments)
    assert not torch.equal(a, model.sample(5, "ddim", steps=4, seed=2).segments)
    # Chunked sampling draws the same number of segments.
    assert model.sample(7, "ddpm", seed=0, batch_size=3).segments.shape == (7, 16)
    for n in (0, -3):
        with pytest.raises(ConfigError, match="positive integer"):
            model.sample(n)
    with pytest.raises(ConfigError, match="unknown sampler"):
        model.sample(2, "plms")


def test_model_space_roundtrip() -> None:
    u = torch.tensor([0.0, 0.25, 1.0])
    centered = DiffusionModel(CFG)
    plain = DiffusionModel(CFG.model_copy(update={"centered": False}))
    assert torch.equal(centered.to_model_space(u), torch.tensor([-1.0, -0.5, 1.0]))
    assert torch.equal(centered.from_model_space(centered.to_model_space(u)), u)
    assert torch.equal(plain.to_model_space(u), u)


def test_check_series_bad_input() -> None:
    with pytest.raises(DataError, match="shorter than one segment of 16"):
        check_series(np.ones(10), 16, "s")
    bad = np.ones(40)
    bad[[7, 9]] = np.nan
    with pytest.raises(DataError, match="2 non-finite value.*first at slot 7"):
        check_series(bad, 16, "s")


def test_random_and_cut_segments() -> None:
    values = np.arange(100.0)
    crops = random_segments(values, 10, 50, np.random.default_rng(0))
    assert crops.shape == (50, 10)
    assert np.all(np.diff(crops, axis=1) == 1)  # contiguous slots
    assert crops[:, 0].min() >= 0 and crops[:, -1].max() <= 99
    again = random_segments(values, 10, 50, np.random.default_rng(0))
    assert np.array_equal(crops, again)
    cut = cut_segments(values, 30)
    assert cut.shape == (3, 30) and cut[1, 0] == 30


@pytest.mark.parametrize("stride", [1, 3])
def test_segments_to_windows_matches_make_windows(stride: int) -> None:
    segs = np.random.default_rng(1).random((4, 20)).astype(np.float32)
    got = segments_to_windows(segs, window=7, horizon=2, stride=stride)
    per = [make_windows(s, 7, 2, stride) for s in segs]
    assert np.array_equal(got.x, np.concatenate([w.x for w in per]))
    assert np.array_equal(got.y, np.concatenate([w.y for w in per]))
    assert np.array_equal(got.start, np.concatenate([w.start + 20 * i for i, w in enumerate(per)]))
    with pytest.raises(DataError, match="cannot hold one window"):
        segments_to_windows(segs, window=19, horizon=2)


def test_score_matching_loss_is_differentiable_and_restricted() -> None:
    model = DiffusionModel(CFG)
    segs = torch.rand(256, 16)
    loss = score_matching_loss(
        model, segs, t_range=(1, 3), generator=torch.Generator().manual_seed(0)
    )
    assert loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # The zero-initialised output layer predicts ε = 0, so J is E‖ε‖² ≈ 1.
    assert loss.item() == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ConfigError, match="t_range"):
        score_matching_loss(model, segs, t_range=(0, 3))
    with pytest.raises(ConfigError, match="t_range"):
        score_matching_loss(model, segs, t_range=(2, 11))


def test_loss_draws_timesteps_from_t_range() -> None:
    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            seen.append(t)
            return torch.zeros_like(x)

    model = DiffusionModel(CFG)
    model.denoiser = Recorder()
    score_matching_loss(model, torch.rand(500, 16), t_range=(2, 4))
    t = torch.cat(seen)
    assert set(t.tolist()) == {2, 3, 4}
