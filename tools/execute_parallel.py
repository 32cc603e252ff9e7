"""Execute the chapter notebooks side by side into the book's execution cache, before ``jupyter-book build``.

Jupyter Book 1 executes the notebooks one after another while Sphinx reads them, and every chapter runs its
PyTorch work on one thread (small networks are fastest that way), so a 2-core machine builds the book with
one core idle. This tool runs the notebooks that are not cached yet in ``--jobs`` processes at once, longest
first, exactly as myst-nb's ``cache`` mode would (the notebook's own directory as working directory, the
timeout of ``_config.yml``, errors not allowed), and stores each result in the same jupyter-cache, where the
build then finds it and executes nothing. A notebook that fails stops the tool with its traceback (exit 1),
as the ``-W`` build would.

Usage: python tools/execute_parallel.py --cache _build/.jupyter_cache --jobs 2 chapters/*.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _timeout() -> int:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return int((config.get("execute") or {}).get("timeout", 1800))


def _execute(path: str, timeout: int) -> tuple[str, nbformat.NotebookNode | None, float, str | None]:
    """Run one notebook in its own directory; returns (path, executed notebook, seconds, traceback)."""
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.read(path, as_version=4)
    result = single_nb_execution(notebook, cwd=str(Path(path).parent), allow_errors=False, timeout=timeout,
                                 meta_override=True)
    if result.err is not None:
        return path, None, result.time, result.exc_string
    return path, notebook, result.time, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="the build's jupyter-cache folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="notebooks run at once")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(args.cache))
    todo = []
    for path in args.notebooks:
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            todo.append(path)
    # Longest first, so that the last notebook to finish is a short one: by the runtime of its last execution
    # (kept next to the cache, which is cleared when the package changes), else by the size of its code.
    runtimes_path = args.cache.parent / (args.cache.name + ".runtimes.json")
    runtimes = json.loads(runtimes_path.read_text()) if runtimes_path.is_file() else {}

    def expected(path: Path) -> float:
        code = sum(len(c.source) for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        return runtimes.get(path.name, code / 100)  # about 100 characters of code per second, as a guess

    todo.sort(key=expected, reverse=True)
    if not todo:
        print(f"execute_parallel: all {len(args.notebooks)} notebooks are cached")
        return 0
    print(f"execute_parallel: executing {len(todo)} notebooks, {args.jobs} at a time: "
          f"{', '.join(p.name for p in todo)}", flush=True)
    start, failed = time.perf_counter(), []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_execute, str(p), _timeout()) for p in todo]
        for future in as_completed(futures):
            path, notebook, seconds, traceback = future.result()
            if traceback is not None:
                failed.append(path)
                print(f"execute_parallel: {path} FAILED after {seconds:.0f} s\n{traceback}", flush=True)
                continue
            record = cache.add_nb_to_project(str(Path(path).resolve()))
            bundle = CacheBundleIn(notebook, record.uri, data={"execution_seconds": seconds})
            cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
            runtimes[Path(path).name] = round(seconds, 1)
            runtimes_path.write_text(json.dumps(runtimes, indent=1, sort_keys=True))
            print(f"execute_parallel: {path} executed in {seconds:.0f} s", flush=True)
    print(f"execute_parallel: done in {time.perf_counter() - start:.0f} s"
          + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
