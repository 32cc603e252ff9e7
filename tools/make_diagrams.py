"""Write the book's diagrams (``meta_rl_lessons.diagrams``) as SVG files into ``book/_static/diagrams/``.

The SVGs are committed; ``tests/test_diagrams.py`` fails when they differ from what the package draws, so run
this after changing a diagram and commit the result.

Usage:
    python tools/make_diagrams.py              write every diagram
    python tools/make_diagrams.py --check      exit 1 if a committed file is missing or stale (writes nothing)
    python tools/make_diagrams.py --png DIR    also write 100-dpi PNG previews into DIR, to look at
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "_static" / "diagrams"
sys.path.insert(0, str(ROOT))

from meta_rl_lessons import diagrams  # noqa: E402


def stale(directory: Path = OUT) -> list[str]:
    """Names of the diagrams whose file in ``directory`` is missing or differs from a fresh drawing."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = diagrams.write_all(tmp)
        return [p.stem for p in fresh
                if not (directory / p.name).is_file() or (directory / p.name).read_bytes() != p.read_bytes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing or stale files")
    parser.add_argument("--png", type=Path, help="also write PNG previews into this directory")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale or missing: {OUT.relative_to(ROOT)}/{name}.svg")
        return 1 if names else 0
    for path in diagrams.write_all(OUT):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1024:.0f} kB")
    if args.png:
        args.png.mkdir(parents=True, exist_ok=True)
        for name in diagrams.DIAGRAMS:
            print(diagrams.render_png(name, args.png / f"{name}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
