"""Noise-prediction networks for the diffusion model over workload segments.

A small U-Net (residual blocks, GroupNorm, SiLU, sinusoidal time embedding) that runs in
1-D over a segment of ``L`` slots, or in 2-D over the paper's layout of a segment as an
image of ``√L`` rows of ``√L`` slots. Sized to train on a couple of CPU cores in minutes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from drdfl.errors import ConfigError

LAYOUTS = ("1d", "2d")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of integer timesteps ``t [B]`` (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    angles = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([angles.cos(), angles.sin()], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class _ResBlock(nn.Module):
    """Two convolutions, time-conditioned in between, plus a skip path.

    The time embedding scales and shifts the *normalized* activations (FiLM, as in
    improved DDPM). Adding it before a GroupNorm instead would be undone by the
    normalization whenever a group holds a single channel, as in narrow networks.
    """

    def __init__(self, dims: int, in_ch: int, out_ch: int, time_dim: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1)
        self.skip = conv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        film = self.time(temb).reshape(temb.shape[0], -1, *([1] * (x.ndim - 2)))
        scale, shift = film.chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return h + self.skip(x)


class _SelfAttention(nn.Module):
    """Single-head self-attention over every position, added to its input.

    The convolutions see a window of the segment; this lets every position see all of it
    (its level, say). The output projection starts at zero: the block starts as the
    identity.
    """

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = conv(channels, 3 * channels, 1)
        self.proj = conv(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        qkv = self.qkv(self.norm(x)).reshape(batch, 3, channels, -1).transpose(-1, -2)
        h = F.scaled_dot_product_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2])
        return x + self.proj(h.transpose(-1, -2).reshape(x.shape))


class UNet(nn.Module):
    """A U-Net over ``[B, C, *spatial]`` in 1-D or 2-D predicting a tensor of the same shape.

    ``channel_mults`` gives one resolution level each (the spatial size is halved between
    levels), so every spatial size must be divisible by ``2 ** (len(channel_mults) - 1)``.
    With ``attention`` the lowest resolution has a self-attention block between its two
    middle residual blocks.
    """

    def __init__(
        self,
        dims: int = 1,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        attention: bool = False,
    ) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ConfigError(f"U-Net: dims must be 1 or 2, got {dims}")
        if base_channels < 1 or not channel_mults or min(channel_mults) < 1:
            raise ConfigError(
                f"U-Net: need base_channels >= 1 and positive channel_mults, "
                f"got {base_channels}, {channel_mults}"
            )
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.dims = dims
        self.base_channels = base_channels
        time_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.stem = conv(in_channels, base_channels, 3, padding=1)
        widths = [base_channels * m for m in channel_mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = base_channels
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(dims, ch, w, time_dim))
            ch = w
            if i < len(widths) - 1:
                self.downsample.append(conv(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([_ResBlock(dims, ch, ch, time_dim) for _ in range(2)])
        self.attention = _SelfAttention(dims, ch) if attention else None
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(_ResBlock(dims, ch + w, w, time_dim))
            ch = w
            if i > 0:
                self.upsample.append(conv(ch, widths[i - 1], 3, padding=1))
                ch = widths[i - 1]
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.out = conv(ch, in_channels, 3, padding=1)
        # A zero output layer starts the network at "predict no noise", a stable start.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.factor = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(t.to(x.device), self.base_channels))
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid[0](h, temb)
        if self.attention is not None:
            h = self.attention(h)
        h = self.mid[1](h, temb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


class SegmentDenoiser(nn.Module):
    """ε-prediction network for segments ``x [B, L]`` at timesteps ``t [B]`` → ``[B, L]``.

    ``layout="1d"`` convolves along the segment; ``layout="2d"`` reshapes it row-major
    into a ``√L × √L`` image first, as the 3D-Learning paper does (28 × 28 = 784 slots).
    """

    def __init__(
        self,
        segment_length: int,
        layout: str = "1d",
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        attention: bool = False,
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown denoiser layout {layout!r}; expected one of {LAYOUTS}")
        factor = 2 ** (len(channel_mults) - 1)
        if layout == "2d":
            side = math.isqrt(segment_length)
            if side * side != segment_length:
                raise ConfigError(
                    f"layout '2d' needs a square segment_length (e.g. 784 = 28 x 28), "
                    f"got {segment_length}"
                )
            self.shape: tuple[int, ...] = (1, side, side)
        else:
            side = segment_length
            self.shape = (1, segment_length)
        if side % factor:
            raise ConfigError(
                f"segment side {side} must be divisible by {factor} "
                f"(2 ** (levels - 1) for channel_mults={tuple(channel_mults)})"
            )
        self.segment_length = segment_length
        self.unet = UNet(
            2 if layout == "2d" else 1, 1, base_channels, tuple(channel_mults), attention
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        out = self.unet(x.reshape(batch, *self.shape), t)
        return out.reshape(batch, self.segment_length)
