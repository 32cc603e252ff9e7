"""Invalidate Jupyter Book's execution cache when anything a notebook's output depends on changes.

jupyter-cache keys a notebook on its cell source only. Our chapters import the package and size their
experiments by ``META_RL_BUDGET``, so a changed package or budget must re-execute them. This script hashes the
package sources, the dependency files and the budget; when the hash differs from the one stored beside the
cache, it deletes the cache (so the next build executes every chapter) and stores the new hash.

Usage: python tools/book_cache.py BUILD_DIR      (BUILD_DIR holds .jupyter_cache; `_build` for `make book`)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ["meta_rl_lessons", "pyproject.toml", "environment.yml", "results"]


def fingerprint(root: Path = ROOT) -> str:
    """SHA-256 over the package's Python files, the dependency files, ``results/`` and the budget."""
    digest = hashlib.sha256()
    digest.update(f"budget={os.environ.get('META_RL_BUDGET', '').strip().lower() or 'book'}\n".encode())
    for name in INPUTS:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.exists() or "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def main(build_dir: str) -> int:
    build = Path(build_dir)
    cache, stamp = build / ".jupyter_cache", build / ".jupyter_cache.fingerprint"
    new = fingerprint()
    old = stamp.read_text().strip() if stamp.exists() else None
    if old != new:
        if cache.exists():
            print(f"book_cache: package, dependencies or budget changed; clearing {cache}")
            shutil.rmtree(cache)
        build.mkdir(parents=True, exist_ok=True)
        stamp.write_text(new + "\n")
    else:
        print(f"book_cache: {cache} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "_build"))
