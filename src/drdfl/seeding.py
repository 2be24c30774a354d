"""Seeds: every random choice in drdfl takes a seed or a generator derived from one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def randn(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal draws made by ``generator`` on its own device, placed on ``device``.

    drdfl's generators live on the CPU, so a seed gives the same numbers whichever device
    the computation runs on (and a CUDA generator works as well).
    """
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, dtype=dtype, device=where).to(device)


@contextlib.contextmanager
def seeded(seed: int | None, device: str | torch.device = "cpu") -> Iterator[None]:
    """Inside the block torch's global generators of the CPU and of ``device`` (when it is
    a CUDA device) start from ``seed`` (``None``: as they are); after it the caller's
    states are back, every other device's untouched.

    For what draws from the global generators: layer constructors, ``nn.Dropout``.
    """
    device = torch.device(device)
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        if seed is not None:
            torch.default_generator.manual_seed(seed)
            for index in cuda:
                torch.cuda.default_generators[index].manual_seed(seed)
        yield


def numpy_rng(seed: int) -> np.random.Generator:
    """A fresh NumPy ``Generator`` seeded with ``seed``."""
    return np.random.default_rng(seed)
