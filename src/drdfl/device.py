"""The compute device every stage runs on, checked once before any work."""

from __future__ import annotations

import torch

from drdfl.errors import ConfigError

DEVICE_HELP = "cpu | cuda | cuda:N | mps"


def resolve_device(spec: str | torch.device) -> torch.device:
    """``spec`` as a torch device that exists on this machine, else :class:`ConfigError`."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {spec!r}: not a device name; expected {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "no GPU is visible" if torch.version.cuda else "torch is built without CUDA"
            raise ConfigError(
                f"device {spec!r}: CUDA is not available on this machine ({why}); use cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {spec!r}: this machine has {count} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {spec!r}: MPS is not available on this machine; use cpu")
    elif device.type != "cpu":
        raise ConfigError(f"device {spec!r}: unsupported; expected {DEVICE_HELP}")
    return device
