"""Shared fixtures. The real traces come from the data directory (``DRDFL_DATA_DIR``,
default ``../shared/data`` next to the project root); tests that need them fail, never
skip, when they are missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Test models are tiny: one intra-op thread is faster than two and never oversubscribes
# a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory holding the real traces (see ``../shared/data/README.md``)."""
    configured = os.environ.get("DRDFL_DATA_DIR")
    path = Path(configured) if configured else ROOT.parent / "shared" / "data"
    if not (path / "azure-llm-2023").is_dir():
        pytest.fail(
            f"real traces not found in {path} (set DRDFL_DATA_DIR to the shared data directory)"
        )
    return path
