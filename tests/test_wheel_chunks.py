"""bench/wheel_chunks.py: the split and reassembly bench/gpu_check.sh uses to carry the Warp wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("wheel_chunks", ROOT / "bench" / "wheel_chunks.py")
wheel_chunks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheel_chunks)


def test_split_then_join_gives_the_same_bytes_in_chunks_under_the_limit(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, size=2_500_000, dtype=np.uint8).tobytes()
    wheel = tmp_path / "warp_lang-1.19.0-py3-none-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(data)
    parts = wheel_chunks.split(wheel, tmp_path / "chunks", chunk_mib=1.0)
    assert len(parts) == 3 and all(p.stat().st_size <= 1 << 20 for p in parts)
    out = wheel_chunks.join(tmp_path / "chunks", wheel.name, tmp_path / "joined")
    assert out.read_bytes() == data


def test_join_refuses_a_missing_or_corrupt_chunk(tmp_path):
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(bytes(range(256)) * 10_000)
    parts = wheel_chunks.split(wheel, tmp_path / "c", chunk_mib=1.0)
    parts[1].write_bytes(parts[1].read_bytes()[:-1] + b"\x00")  # one byte changed
    with pytest.raises(ValueError, match="SHA-256"):
        wheel_chunks.join(tmp_path / "c", "w.whl", tmp_path / "j")
    assert not (tmp_path / "j" / "w.whl").exists()
    parts[1].unlink()
    with pytest.raises(ValueError, match="incomplete"):
        wheel_chunks.join(tmp_path / "c", "w.whl", tmp_path / "j")
