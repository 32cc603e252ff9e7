"""environment.yml (the versions CI tests) and pyproject.toml (the ranges users get) must agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from pins import pins

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra in ("book", "test", "distributed", "bench", "warp"):
        requirements += project["optional-dependencies"][extra]
    return {canonical(Requirement(r).name): Requirement(r) for r in requirements}


def pinned() -> dict[str, Version]:
    return {canonical(p.split("==")[0]): Version(p.split("==")[1]) for p in pins(ROOT / "environment.yml")}


def test_environment_yml_is_a_conda_environment_with_python_311():
    deps = ENVIRONMENT["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-e .[book,test,distributed,bench]" in pip_section


def test_every_declared_dependency_is_pinned():
    missing = sorted(set(declared()) - set(pinned()))
    assert not missing, f"environment.yml pins nothing for {missing}"


@pytest.mark.parametrize("name", sorted(declared()))
def test_pin_satisfies_declared_range(name):
    requirement = declared()[name]
    version = pinned()[name]
    assert requirement.specifier.contains(version, prereleases=True), (
        f"environment.yml pins {name}=={version}, outside pyproject's range {requirement}"
    )


def test_torch_pin_matches_makefile():
    makefile = (ROOT / "Makefile").read_text()
    torch_pin = re.search(r"TORCH_PIN\s*\?=\s*(torch==\S+)", makefile).group(1)
    assert torch_pin == f"torch=={pinned()['torch']}"


def test_installed_versions_are_the_pinned_ones():
    # `make setup` installs with environment.yml as constraints; this catches a stale .venv.
    from importlib.metadata import PackageNotFoundError, version

    extras = PYPROJECT["project"]["optional-dependencies"]
    # bench: installed by `make bench` only; warp: installed where it installs (Python >= 3.11)
    bench_only = {canonical(Requirement(r).name) for r in extras["bench"] + extras["warp"]}
    for name, pinned_version in pinned().items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            assert name in bench_only, f"{name} is pinned in environment.yml but not installed: make setup"
            continue
        assert Version(installed.base_version) == Version(pinned_version.base_version), (
            f"{name}: installed {installed}, environment.yml pins {pinned_version}; rerun make setup"
        )
