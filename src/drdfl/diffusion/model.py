"""The diffusion model as one object: denoiser, noise schedule, segment length, scaler.

A :class:`DiffusionModel` is an ``nn.Module`` (its parameters are the denoiser's), so a
method such as 3D-Learning can copy it (θ₀ → θ), optimise it and score trajectories with
it. It works on *normalized* segments (the training series passed through the train-fitted
:class:`~drdfl.data.windows.Scaler`); internally the diffusion runs in "model space",
which is the normalized value itself or, with ``centered=True``, ``2u − 1`` so that the
data straddles 0 like the N(0, I) prior does.

Saved layout of a diffusion directory::

    diffusion.pt   format, config, scaler and the denoiser's (EMA) weights
    config.json    the same configuration, for people
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from drdfl._io import atomic_open, write_json
from drdfl._version import __version__
from drdfl.data.windows import Scaler
from drdfl.diffusion.samplers import Sampler, get_sampler, run_reverse
from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.diffusion.transitions import Transitions
from drdfl.diffusion.verdict import GateConfig
from drdfl.errors import ConfigError, ModelError
from drdfl.models.denoiser import SegmentDenoiser
from drdfl.records import GateResult
from drdfl.schema import StrictModel, parse_model
from drdfl.seeding import randn, torch_generator

FORMAT = "drdfl-diffusion"
FORMAT_VERSION = 1
WEIGHTS_FILE = "diffusion.pt"
CONFIG_FILE = "config.json"


class DiffusionModelConfig(StrictModel):
    """What defines a diffusion model: a checkpoint only loads into the same configuration."""

    segment_length: int = Field(256, ge=4, description="slots per generated segment")
    T: int = Field(100, ge=1, description="noising steps")
    schedule: Literal["linear", "cosine"] = "linear"
    beta_start: float = Field(1e-3, gt=0, lt=1, description="β_1 of the linear schedule")
    beta_end: float = Field(0.1, gt=0, lt=1, description="β_T of the linear schedule")
    variance: Literal["posterior", "forward", "geometric"] = Field(
        "posterior",
        description="noise of a stochastic reverse step: the forward posterior's β̃_t, the "
        "forward process's β_t (larger; more spread in the samples) or their geometric mean",
    )
    layout: Literal["1d", "2d"] = Field("1d", description="'2d': segment as a √L × √L image")
    base_channels: int = Field(32, ge=1)
    channel_mults: tuple[int, ...] = Field((1, 2, 2), min_length=1)
    centered: bool = Field(True, description="diffuse 2u − 1 instead of the normalized u")
    attention: bool = Field(
        False,
        description="self-attention at the U-Net's lowest resolution, so that every slot "
        "sees the whole segment (the convolutions alone see a window of it)",
    )

    @field_validator("channel_mults")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if min(v) < 1:
            raise ValueError("channel multipliers must be >= 1")
        return v


class DiffusionTrainConfig(StrictModel):
    """How a diffusion model is fitted (does not change what the model is)."""

    iterations: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    ema_decay: float = Field(0.995, ge=0, lt=1, description="0 disables the weight average")
    t_range: tuple[int, int] | None = Field(
        None, description="train only on timesteps lo..hi (inclusive); None: 1..T"
    )
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm (None: off)")
    checkpoint_every: int = Field(500, ge=1, description="iterations between checkpoints")
    seed: int = 0
    gate: GateConfig | None = Field(
        None,
        description="end training once the model passes this quality gate ('iterations' is "
        "then the most it may take); None: train for 'iterations'",
    )
    gate_every: int = Field(250, ge=1, description="iterations between quality-gate checks")
    gate_after: int = Field(0, ge=0, description="iterations before the first gate check")


@dataclass(frozen=True)
class Preset:
    """A named model + training configuration."""

    name: str
    model: DiffusionModelConfig
    train: DiffusionTrainConfig
    about: str


# Every preset ends its training on the quality gate; ``iterations`` is the most it takes.
# T = 100 linear steps from β 1e-3 to 0.1 keep each reverse step small enough for the
# sampled segments to carry the data's slot-to-slot noise: a 20- or 50-step schedule
# smoothed it away, and a cosine schedule left segment levels far too dispersed. Reverse
# steps of the posterior variance β̃_t gave samples smoother than the data and those of the
# forward variance β_t rougher; the 1-D presets take their geometric mean.
PRESETS: dict[str, Preset] = {
    "paper-2d": Preset(
        "paper-2d",
        DiffusionModelConfig(
            segment_length=784,
            T=500,
            beta_start=0.05,
            beta_end=0.1,
            layout="2d",
            base_channels=32,
            channel_mults=(1, 2, 2),
            centered=False,
        ),
        DiffusionTrainConfig(
            iterations=7000,
            batch_size=64,
            lr=1e-4,
            ema_decay=0.999,
            gate=GateConfig(),
            gate_every=1000,
            gate_after=3000,
        ),
        "the 3D-Learning paper's exact model: T=500, β 0.05→0.1, 28×28 = 784-slot segments "
        "as images, data in [0, 1], up to 7,000 iterations of batch 64 at lr 1e-4. For a "
        "faithful reproduction; slow on a CPU (recommended on a GPU). On the paper's "
        "training file the gate cannot judge it: one period of the tiled file is shorter "
        "than one segment",
    ),
    "paper": Preset(
        "paper",
        DiffusionModelConfig(
            segment_length=32,
            T=100,
            beta_start=1e-3,
            beta_end=0.1,
            layout="1d",
            base_channels=16,
            channel_mults=(1, 2),
            centered=True,
            variance="geometric",
        ),
        DiffusionTrainConfig(
            iterations=1500,
            batch_size=64,
            lr=3e-3,
            ema_decay=0.99,
            gate=GateConfig(block_segments=2),
            gate_every=250,
            gate_after=250,
        ),
        "what the paper profile uses: a 1-D U-Net over 32-slot segments (T=100, β 1e-3→0.1, "
        "16 channels), a small fraction of the 2-D model's cost. The paper's training file "
        "is one 701-slot hour tiled; 32-slot segments let the gate hold out four whole "
        "segments of that hour and judge the model, which the 784-slot 2-D model "
        "('paper-2d') cannot be",
    ),
    "fast": Preset(
        "fast",
        DiffusionModelConfig(
            segment_length=256,
            T=100,
            beta_start=1e-3,
            # With β_T = 0.2 a fifth of the steps sit at ᾱ_t < 1e-3, where small ε errors
            # are amplified by 1/sqrt(ᾱ_t) and DDIM trajectories diverged; with 0.1,
            # ᾱ_T ≈ 6e-3 is still close enough to the N(0, I) prior.
            beta_end=0.1,
            layout="1d",
            base_channels=16,
            # 16 channels at full and half resolution, 32 at quarter: 1.4x less CPU per
            # iteration than (1, 2, 2), and as good after the same wall time.
            channel_mults=(1, 1, 2),
            centered=True,
            variance="geometric",
        ),
        DiffusionTrainConfig(
            iterations=4000,
            batch_size=64,
            lr=2e-3,
            ema_decay=0.995,
            gate=GateConfig(),
            gate_every=500,
            gate_after=1000,
        ),
        "a few CPU minutes: T=100, β 1e-3→0.1, 256-slot segments, 16-channel 1-D U-Net, "
        "up to 4,000 iterations",
    ),
    "tiny": Preset(
        "tiny",
        DiffusionModelConfig(
            segment_length=64,
            T=100,
            beta_start=1e-3,
            beta_end=0.1,
            layout="1d",
            base_channels=16,
            channel_mults=(1, 2),
            centered=True,
            variance="geometric",
        ),
        DiffusionTrainConfig(
            iterations=1000,
            batch_size=64,
            lr=3e-3,
            ema_decay=0.99,
            gate=GateConfig(),
            # A check (256 DDPM samples and the discriminator) costs several dozen
            # training iterations; checking every 200 rather than 100 halves that cost.
            gate_every=200,
            gate_after=200,
        ),
        "seconds, for the quick profile and tests: T=100, 64-slot segments, 16-channel "
        "1-D U-Net with two levels, up to 1,000 iterations",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown diffusion preset {name!r}; expected one of {', '.join(PRESETS)}"
        )
    return PRESETS[name]


def config_differences(
    found: DiffusionModelConfig, expected: DiffusionModelConfig
) -> list[tuple[str, Any, Any]]:
    """``(field, found value, expected value)`` for every field that differs."""
    a, b = found.model_dump(), expected.model_dump()
    return [(k, a[k], b[k]) for k in b if a.get(k) != b[k]]


@dataclass(frozen=True)
class SampleResult:
    """Generated normalized segments ``[n, L]`` and, on request, their last transitions."""

    segments: torch.Tensor
    transitions: Transitions | None = None


class DiffusionModel(nn.Module):
    """A DDPM over normalized segments of a demand series."""

    def __init__(
        self, config: DiffusionModelConfig, scaler: Scaler | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        self.config = config
        self.scaler = scaler
        self.schedule = NoiseSchedule.build(
            config.schedule, config.T, config.beta_start, config.beta_end, config.variance
        )
        # torch's layer constructors draw from the global generator; isolate them from it,
        # then draw every weight from the model's own seed.
        with torch.random.fork_rng(devices=[]):
            self.denoiser = SegmentDenoiser(
                config.segment_length,
                config.layout,
                config.base_channels,
                config.channel_mults,
                config.attention,
            )
        init_weights(self.denoiser, torch_generator(seed))
        self.meta: dict[str, Any] = {}

    @property
    def segment_length(self) -> int:
        return self.config.segment_length

    @property
    def T(self) -> int:
        return self.config.T

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def quality(self) -> GateResult | None:
        """The quality-gate verdict recorded when the model was fitted (``None``: no gate)."""
        record = self.meta.get("quality")
        return None if record is None else _verdict(record)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise for model-space ``x_t [B, L]`` at timesteps ``t [B]``."""
        return self.denoiser(x_t, t)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps(x_t, t)

    def to_model_space(self, u: torch.Tensor) -> torch.Tensor:
        """Normalized values → the space the diffusion runs in."""
        return 2 * u - 1 if self.config.centered else u

    def from_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """The space the diffusion runs in → normalized values."""
        return (x + 1) / 2 if self.config.centered else x

    @torch.no_grad()
    def sample(
        self,
        n: int,
        sampler: str | Sampler = "ddpm",
        steps: int | None = None,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        keep_last: int = 0,
        batch_size: int = 256,
        progress: bool = False,
    ) -> SampleResult:
        """Draw ``n`` normalized segments (and, with ``keep_last=K``, their last K steps).

        Randomness comes from ``generator`` if given, else from ``seed``. Segments are
        drawn ``batch_size`` at a time to bound memory (the same seed and batch size give
        the same segments).
        """
        if not isinstance(n, int) or n <= 0:
            raise ConfigError(f"number of segments to sample must be a positive integer, got {n!r}")
        if batch_size < 1:
            raise ConfigError(f"sampling batch_size must be >= 1, got {batch_size}")
        rule = get_sampler(sampler) if isinstance(sampler, str) else sampler
        gen = generator if generator is not None else torch_generator(0 if seed is None else seed)
        device = self.device
        xs: list[torch.Tensor] = []
        parts: list[Transitions] = []
        for lo in range(0, n, batch_size):
            size = min(batch_size, n - lo)
            x_T = randn((size, self.segment_length), gen, device)
            x0, tr = run_reverse(
                self.eps, self.schedule, rule, x_T, steps, gen, keep_last, progress
            )
            xs.append(x0)
            if tr is not None:
                parts.append(tr)
        transitions = None
        if parts:
            states = torch.cat([p.states for p in parts])
            transitions = Transitions(states, parts[0].timesteps, rule.eta)
        return SampleResult(self.from_model_space(torch.cat(xs)), transitions)

    def sample_series(
        self, n: int, sampler: str | Sampler = "ddpm", steps: int | None = None, seed: int = 0
    ) -> np.ndarray:
        """``n`` segments in real units ``[n, L]`` (needs the scaler), demand clipped at 0."""
        self._require_scaler()
        return self.to_demand(self.sample(n, sampler, steps, seed).segments.cpu().numpy())

    def to_demand(self, u: np.ndarray) -> np.ndarray:
        """Normalized values → real units, clipped at 0 because demand cannot be negative."""
        scaler = self._require_scaler()
        return np.clip(scaler.inverse_transform(np.asarray(u, dtype=np.float64)), 0.0, None)

    def _require_scaler(self) -> Scaler:
        if self.scaler is None:
            raise ModelError("this diffusion model has no scaler; real units are unknown")
        return self.scaler

    def clone(self) -> DiffusionModel:
        """An independent copy (e.g. θ initialised at the reference θ₀)."""
        return copy.deepcopy(self)

    def save(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write the model into ``directory`` (created if needed); every file atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "drdfl": __version__,
            "config": self.config.model_dump(mode="json"),
            "scaler": None if self.scaler is None else self.scaler.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.denoiser.state_dict().items()},
            "meta": self.meta if meta is None else meta,
        }
        with atomic_open(directory / WEIGHTS_FILE, "wb") as handle:
            torch.save(payload, handle)
        write_json(
            directory / CONFIG_FILE,
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "config": payload["config"],
                "scaler": payload["scaler"],
                "meta": payload["meta"],
            },
        )
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, expect: DiffusionModelConfig | None = None
    ) -> DiffusionModel:
        """Read a model saved by :meth:`save`; with ``expect``, insist on that configuration."""
        payload = read_payload(Path(directory) / WEIGHTS_FILE)
        config = cast(
            DiffusionModelConfig, parse_model(DiffusionModelConfig, payload["config"], "config")
        )
        if expect is not None:
            check_config(config, expect, Path(directory) / WEIGHTS_FILE)
        scaler = None if payload["scaler"] is None else Scaler.from_dict(payload["scaler"])
        model = cls(config, scaler)
        try:
            model.denoiser.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise ModelError(
                f"{directory}: weights do not fit the saved configuration ({exc})"
            ) from None
        model.meta = dict(payload.get("meta") or {})
        return model


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Redraw every convolution and linear layer of ``module`` from ``generator``.

    The distributions are torch's defaults for these layers (Kaiming-uniform weights with
    ``a = √5``, biases uniform in ``±1/√fan_in``), so a seeded model starts like an
    unseeded one would, but never consumes the global torch generator. Layers that the
    network deliberately starts at zero (an all-zero weight) stay zero.
    """
    with torch.no_grad():
        for layer in module.modules():
            if not isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
                continue
            if not layer.weight.any():
                continue
            nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=generator)
            if layer.bias is not None:
                fan_in = layer.weight[0].numel()
                bound = 1 / fan_in**0.5
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def _record(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the diffusion model in ``directory`` (no weights loaded)."""
    path = Path(directory) / CONFIG_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no diffusion model here (expected {CONFIG_FILE})") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable diffusion configuration ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelError(f"{path}: not a drdfl diffusion model (format {FORMAT!r} expected)")
    return record


def read_config(directory: str | Path) -> DiffusionModelConfig:
    """The configuration of the diffusion model in ``directory`` (read from its
    ``config.json``, without loading weights)."""
    record = _record(directory)
    where = str(Path(directory) / CONFIG_FILE)
    try:
        return cast(DiffusionModelConfig, parse_model(DiffusionModelConfig, record["config"]))
    except (KeyError, TypeError, ConfigError) as exc:
        raise ModelError(f"{where}: not a readable diffusion configuration ({exc})") from None


def read_quality(directory: str | Path) -> GateResult | None:
    """The quality-gate verdict saved with the diffusion model in ``directory`` (read from
    its ``config.json``, without loading weights); ``None`` when it was fitted ungated."""
    quality = (_record(directory).get("meta") or {}).get("quality")
    return None if quality is None else _verdict(quality)


def _verdict(record: Any) -> GateResult:
    try:
        return GateResult.from_dict(record)
    except ValueError as exc:
        raise ModelError(f"quality record is malformed ({exc})") from None


def read_payload(path: Path) -> dict[str, Any]:
    """The checked contents of a ``diffusion.pt`` file."""
    if not path.is_file():
        raise ModelError(f"{path}: no diffusion model here (expected the file {WEIGHTS_FILE})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable diffusion checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a drdfl diffusion model (format {FORMAT!r} expected)")
    if payload.get("version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: format version {payload.get('version')}, this drdfl reads {FORMAT_VERSION}"
        )
    return payload


def check_config(found: DiffusionModelConfig, expected: DiffusionModelConfig, where: Path) -> None:
    """Raise :class:`ModelError` naming the first differing field, if any."""
    diffs = config_differences(found, expected)
    if diffs:
        name, got, want = diffs[0]
        more = f" (and {len(diffs) - 1} more field(s))" if len(diffs) > 1 else ""
        raise ModelError(
            f"{where}: checkpoint from another configuration: {name} is {got!r} there, "
            f"{want!r} here{more}"
        )
