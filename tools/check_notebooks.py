"""Fail if a notebook carries outputs or execution counts, or has a cell without an id: chapters are
committed clean.

The book build and nbval execute every chapter, so stored outputs would only go stale (and bloat the diff).
Usage: python tools/check_notebooks.py [PATH ...]   (directories are searched for *.ipynb)
Strip a notebook with: jupyter nbconvert --clear-output --inplace chapters/NN-name.ipynb
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def problems(notebook: Path) -> list[str]:
    """Human-readable reasons why ``notebook`` is not clean (empty when it is)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (json.JSONDecodeError, KeyError) as err:
        return [f"{notebook}: not a readable notebook ({err})"]
    found = []
    ids = [cell.get("id") for cell in cells]
    for index, cell in enumerate(cells):
        # nbformat 4.5 requires an id per cell (a missing one is a warning today, an error in future nbformat)
        if not cell.get("id"):
            found.append(f"{notebook}: cell {index} has no id (add one: nbformat.validator.normalize)")
        elif ids.count(cell["id"]) > 1:
            found.append(f"{notebook}: cell {index} repeats the id {cell['id']!r}")
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            found.append(f"{notebook}: cell {index} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"{notebook}: cell {index} has execution_count {cell['execution_count']}")
    return found


def main(paths: list[str]) -> int:
    notebooks = []
    for raw in paths or ["chapters"]:
        path = Path(raw)
        notebooks += sorted(path.rglob("*.ipynb")) if path.is_dir() else [path]
    notebooks = [nb for nb in notebooks if ".ipynb_checkpoints" not in nb.parts]
    found = [line for nb in notebooks for line in problems(nb)]
    for line in found:
        print(line)
    if found:
        print("Strip outputs with: jupyter nbconvert --clear-output --inplace <notebook>; give every cell "
              "an id with nbformat.validator.normalize")
        return 1
    print(f"check_notebooks: {len(notebooks)} notebook(s) clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
