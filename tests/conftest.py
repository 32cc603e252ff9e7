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


def run_cli(*args: str) -> int:
    """``meta-rl ARGS`` in this process (much faster than a subprocess: no torch import), with
    ``--no-progress`` for train and resume; the caller's torch thread count is restored afterwards."""
    from meta_rl_lessons import cli

    threads = torch.get_num_threads()
    try:
        return cli.main([*args, "--no-progress"] if args[0] in ("train", "resume") else list(args))
    finally:
        torch.set_num_threads(threads)
