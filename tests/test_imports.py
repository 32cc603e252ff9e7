"""The package's import structure, read from the source with ``ast`` (nothing is imported):

* no import circle between the package's modules;
* ``meta_rl_lessons/envs/`` imports nothing from ``meta_rl_lessons.rl`` (the environments are the lower
  layer: the RL code builds on them, never the other way round).

Every ``import`` counts, also those inside functions (a lazy import only hides a circle until the function
runs), except those under ``if TYPE_CHECKING:``. An edge goes to the module named; ``from pkg import name``
goes to ``pkg.name`` when that is a module, else to ``pkg``. A parent package's ``__init__`` is not an edge
of its submodules (Python runs it first anyway; counting it would make every package a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "meta_rl_lessons"

def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, source: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` (its ``source``) imports (rules: the module docstring)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def target(mod: str) -> str | None:
        while mod and mod not in modules:  # ``import a.b.c`` of a non-module attribute: its module
            mod = mod.rpartition(".")[0]
        return mod or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE and (t := target(alias.name)):
                    found.add(t)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == PACKAGE:
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    t = sub if sub in modules else target(mod)
                    if t:
                        found.add(t)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source, name))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", modules)
            for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _path_in(graph: dict[str, set[str]], component: list[str]) -> str:
    """One circle through the component's first module, for the message: ``a -> b -> a``."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [start]
                    while v != start:
                        path.append(v)
                        v = previous[v]
                    return " -> ".join([start, *reversed(path[1:]), start])
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return " <-> ".join(component)  # pragma: no cover - a component always has a circle


def test_the_graph_sees_the_package() -> None:
    graph = _graph()
    assert "meta_rl_lessons.envs.sampler" in graph
    assert "meta_rl_lessons.envs.base" in graph["meta_rl_lessons.envs.sampler"]
    assert "meta_rl_lessons.trainer" in graph


def test_no_import_circles() -> None:
    graph = _graph()
    circles = _circles(graph)
    assert not circles, "import circles:\n" + "\n".join(_path_in(graph, c) for c in circles)


def test_envs_import_nothing_from_rl() -> None:
    graph = _graph()
    bad = {m: sorted(t for t in targets if t == f"{PACKAGE}.rl" or t.startswith(f"{PACKAGE}.rl."))
           for m, targets in graph.items() if m == f"{PACKAGE}.envs" or m.startswith(f"{PACKAGE}.envs.")}
    bad = {m: t for m, t in bad.items() if t}
    assert not bad, f"envs/ imports from rl/: {bad}"


def test_the_checks_see_a_circle_and_an_rl_import() -> None:
    """The checks above would fail on a circle and on an envs -> rl import (they do not pass vacuously)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _path_in(graph, ["a", "b", "c"]) == "a -> b -> c -> a"
    modules = _modules()
    lazy = "def f():\n    from ..rl.batch import EpisodeBatch\n"
    assert _imports(f"{PACKAGE}.envs.fake", lazy, False, modules) == {f"{PACKAGE}.rl.batch"}
    hidden = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..rl import utils\n"
    assert _imports(f"{PACKAGE}.envs.fake", hidden, False, modules) == set()
    package = "from . import FAMILIES\nfrom .sampler import MetaBatchSampler\n"
    assert _imports(f"{PACKAGE}.envs.fake", package, False, modules) == {f"{PACKAGE}.envs",
                                                                          f"{PACKAGE}.envs.sampler"}
