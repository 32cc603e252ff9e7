"""Split a file into chunks under a size limit and join them back, checked by SHA-256.

The lent GPU machine can be sent at most 64 MiB per call, and the ``warp-lang`` wheel is 149 MB, so
``bench/gpu_check.sh`` carries it in pieces (see ``bench/README.md``)::

    python bench/wheel_chunks.py split WHEEL DIR [--mib 55]   # DIR/<name>.part000, ... and DIR/<name>.sha256
    python bench/wheel_chunks.py join DIR NAME OUT_DIR          # OUT_DIR/<name>, verified
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

#: Default chunk size in MiB: under the 60 MiB a carried path may take, with room for the rest of a call.
CHUNK_MIB = 55


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split(path: str | Path, out_dir: str | Path, chunk_mib: float = CHUNK_MIB) -> list[Path]:
    """Write ``path`` as ``out_dir/<name>.partNNN`` chunks of at most ``chunk_mib`` MiB, plus
    ``<name>.sha256``; returns the chunk paths in order."""
    path, out_dir = Path(path), Path(out_dir)
    size = int(chunk_mib * (1 << 20))
    if size < 1:
        raise ValueError(f"chunk_mib must give at least one byte per chunk, got {chunk_mib}")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with path.open("rb") as f:
        for i, block in enumerate(iter(lambda: f.read(size), b"")):
            part = out_dir / f"{path.name}.part{i:03d}"
            part.write_bytes(block)
            parts.append(part)
    (out_dir / f"{path.name}.sha256").write_text(_sha256(path) + "\n")
    return parts


def join(chunk_dir: str | Path, name: str, out_dir: str | Path) -> Path:
    """Reassemble ``chunk_dir/<name>.part*`` into ``out_dir/<name>`` and check it against
    ``<name>.sha256``. Raises ``ValueError`` (naming what is missing or wrong) on a gap or a bad checksum."""
    chunk_dir, out_dir = Path(chunk_dir), Path(out_dir)
    parts = sorted(chunk_dir.glob(f"{name}.part*"))
    expected = [f"{name}.part{i:03d}" for i in range(len(parts))]
    if not parts or [p.name for p in parts] != expected:
        raise ValueError(f"chunks of {name} in {chunk_dir} are incomplete: found {[p.name for p in parts]}")
    digest_file = chunk_dir / f"{name}.sha256"
    if not digest_file.exists():
        raise ValueError(f"{digest_file} is missing (carry it with the chunks)")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / name
    with out.open("wb") as f:
        for p in parts:
            f.write(p.read_bytes())
    want, got = digest_file.read_text().split()[0], _sha256(out)
    if got != want:
        out.unlink()
        raise ValueError(f"{name}: SHA-256 of the joined chunks is {got}, expected {want} (a chunk is stale "
                         "or truncated; carry it again)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("file")
    s.add_argument("out_dir")
    s.add_argument("--mib", type=float, default=CHUNK_MIB)
    j = sub.add_parser("join")
    j.add_argument("chunk_dir")
    j.add_argument("name")
    j.add_argument("out_dir")
    args = parser.parse_args()
    if args.cmd == "split":
        for p in split(args.file, args.out_dir, args.mib):
            print(p)
    else:
        print(join(args.chunk_dir, args.name, args.out_dir))


if __name__ == "__main__":
    main()
