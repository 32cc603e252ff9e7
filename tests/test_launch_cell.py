"""The install cell that makes a chapter run on Colab and Binder (tools/launch_cell.py)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import launch_cell
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_the_current_install_cell(notebook):
    source = launch_cell.cell_source(*launch_cell.repository())
    assert launch_cell.problems(notebook, source) == []


def test_the_cell_names_the_repository_of_config_yml():
    url, branch = launch_cell.repository()
    source = launch_cell.cell_source(url, branch)
    assert f'REPOSITORY = "{url}"' in source and f'BRANCH = "{branch}"' in source


def test_check_reports_missing_stale_and_misplaced_cells(tmp_path):
    notebook = tmp_path / "x.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"),
                                         nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(nb, notebook)
    assert "no install cell" in launch_cell.problems(notebook, "new")[0]
    assert launch_cell.write(notebook, "old")
    assert launch_cell.problems(notebook, "old") == []
    assert "stale" in launch_cell.problems(notebook, "new")[0]
    assert launch_cell.write(notebook, "new") and not launch_cell.write(notebook, "new")  # idempotent
    nb = nbformat.read(notebook, as_version=4)
    assert [c.source for c in nb.cells] == ["# Title", "new", "print(1)"]
    nb.cells.insert(0, nb.cells.pop(1))
    nbformat.write(nb, notebook)
    assert any("expected cell 1" in p for p in launch_cell.problems(notebook, "new"))


def _run_cell(monkeypatch, cwd: Path) -> list[list[str]]:
    """Execute the install cell in ``cwd`` as if the package were missing; returns the commands it ran."""
    commands: list[list[str]] = []
    fake = types.ModuleType("subprocess")
    fake.run = lambda cmd, check: commands.append(cmd)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "subprocess", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(cwd)
    exec(launch_cell.cell_source("https://example.invalid/repo", "main"), {})
    return commands


def test_on_binder_the_checkout_goes_on_the_path_without_network(monkeypatch, tmp_path):
    (tmp_path / "meta_rl_lessons").mkdir()
    (tmp_path / "chapters").mkdir()
    assert _run_cell(monkeypatch, tmp_path / "chapters") == []
    assert sys.path[0] == str(tmp_path)


def test_on_colab_the_repository_is_cloned_and_installed(monkeypatch, tmp_path):
    commands = _run_cell(monkeypatch, tmp_path)
    checkout = str(tmp_path / "meta-rl-lessons")
    assert commands[0] == ["git", "clone", "--depth", "1", "--branch", "main", "https://example.invalid/repo",
                           checkout]
    assert commands[1][1:] == ["-m", "pip", "install", "--quiet", "-e", checkout]
    assert sys.path[0] == checkout


def test_the_cell_does_nothing_where_the_package_is_installed(tmp_path):
    # In this environment meta_rl_lessons is importable: the cell must not clone or install anything.
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    namespace: dict = {}
    exec(launch_cell.cell_source("https://example.invalid/repo", "main"), namespace)
    assert "checkout" not in namespace
