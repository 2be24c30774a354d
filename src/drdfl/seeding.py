"""Seeds: every random choice in drdfl takes a seed or a generator derived from one."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (for code outside drdfl's control)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding legacy global state on purpose
    torch.manual_seed(seed)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def numpy_rng(seed: int) -> np.random.Generator:
    """A fresh NumPy ``Generator`` seeded with ``seed``."""
    return np.random.default_rng(seed)
