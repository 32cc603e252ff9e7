"""Shared test configuration: the devices to parametrize over, and import access to tools/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def available_devices() -> list:
    """``cpu`` always; ``cuda`` as a skipped case with its reason when this machine has no CUDA device."""
    cuda = pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    )
    return ["cpu", cuda]


DEVICES = available_devices()
