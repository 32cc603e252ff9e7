"""Keep the install cell of every chapter notebook in step with the repository named in ``_config.yml``.

The book's launch buttons open a chapter on Colab or Binder, where ``meta_rl_lessons`` is not installed. Each
notebook therefore starts (right after its title) with one code cell, marked in its metadata and hidden from
the rendered page by the ``remove-cell`` tag, that does nothing where the package is importable and otherwise

* on Binder (the notebook sits in the repository's ``chapters/``), puts the checkout on ``sys.path``;
* on Colab, clones the repository (the package *and* the ``results/`` logs some chapters read) and installs
  its dependencies with pip; PyTorch is already there, so nothing multi-GB is downloaded.

The repository URL and branch are set in one place, ``repository:`` in ``_config.yml`` (which also drives the
launch buttons); this tool writes them into the cells::

    python tools/launch_cell.py            # insert or update the cell in chapters/*.ipynb
    python tools/launch_cell.py --check    # exit 1 naming every notebook whose cell is missing or stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
#: The metadata key that marks the install cell (so the tool finds it again).
MARKER = "meta_rl_lessons_install"

_TEMPLATE = '''\
# Colab or Binder: make the package importable when it is missing (this cell does nothing otherwise).
import importlib.util
import os
import subprocess
import sys

# The repository and branch are written here from _config.yml by tools/launch_cell.py.
REPOSITORY = "{url}"
BRANCH = "{branch}"
if importlib.util.find_spec("meta_rl_lessons") is None:
    if os.path.isdir(os.path.join("..", "meta_rl_lessons")):  # Binder: this notebook is inside the checkout
        checkout = os.path.abspath("..")
    else:  # Colab: clone the package and the results/ logs the chapters read, then install its requirements
        checkout = os.path.abspath("meta-rl-lessons")
        if not os.path.isdir(checkout):
            subprocess.run(["git", "clone", "--depth", "1", "--branch", BRANCH, REPOSITORY, checkout],
                           check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", checkout], check=True)
    sys.path.insert(0, checkout)  # an editable install is only seen by a new interpreter
'''


def repository() -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``'s ``repository:`` section."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config.get("repository") or {}
    if not repo.get("url"):
        raise ValueError("_config.yml has no repository.url: the install cell needs the repository to clone")
    return str(repo["url"]).rstrip("/"), str(repo.get("branch") or "main")


def cell_source(url: str, branch: str) -> str:
    return _TEMPLATE.format(url=url, branch=branch).rstrip("\n")


def _install_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get(MARKER)]


def problems(notebook: Path, source: str) -> list[str]:
    """What is wrong with ``notebook``'s install cell (empty: it is there, once, right after the title)."""
    nb = nbformat.read(notebook, as_version=4)
    found = _install_cells(nb)
    if not found:
        return [f"{notebook.name}: no install cell (run python tools/launch_cell.py)"]
    out = []
    if len(found) > 1:
        out.append(f"{notebook.name}: {len(found)} install cells, expected one")
    cell = nb.cells[found[0]]
    if found[0] != 1 or nb.cells[0].cell_type != "markdown":
        out.append(f"{notebook.name}: the install cell is cell {found[0]}, expected cell 1 (after the title)")
    if cell.source != source:
        out.append(f"{notebook.name}: the install cell is stale (run python tools/launch_cell.py)")
    if "remove-cell" not in cell.metadata.get("tags", []):
        out.append(f"{notebook.name}: the install cell lacks the remove-cell tag")
    return out


def write(notebook: Path, source: str) -> bool:
    """Insert or update the install cell; returns whether the file changed."""
    nb = nbformat.read(notebook, as_version=4)
    for i in reversed(_install_cells(nb)):
        del nb.cells[i]
    cell = nbformat.v4.new_code_cell(source, metadata={MARKER: True, "tags": ["remove-cell"]})
    cell.id = "install-package"
    nb.cells.insert(1, cell)
    before = notebook.read_text()
    nbformat.write(nb, notebook)
    return notebook.read_text() != before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report missing or stale cells, change nothing")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: chapters/*.ipynb")
    args = parser.parse_args(argv)
    source = cell_source(*repository())
    notebooks = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
    if args.check:
        found = [p for nb in notebooks for p in problems(nb, source)]
        print("\n".join(found) or f"launch_cell: {len(notebooks)} notebooks up to date")
        return 1 if found else 0
    changed = [nb.name for nb in notebooks if write(nb, source)]
    print(f"launch_cell: updated {', '.join(changed) if changed else 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
