"""tools/system_setup.py: what make setup installs or explains, on made-up machines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import system_setup as setup  # noqa: E402

DEBIAN_ROOT = setup.Facts(platform="linux", distro="debian", apt=True, root=True, sudo=False, frames=True,
                          chromium=True)


def facts(**changes) -> setup.Facts:
    import dataclasses

    return dataclasses.replace(DEBIAN_ROOT, **changes)


def test_nothing_to_do_on_a_complete_machine():
    assert setup.plan(DEBIAN_ROOT) == setup.Plan()


def test_debian_as_root_or_with_sudo_installs_what_is_missing():
    for f in (facts(chromium=False, frames=False),
              facts(chromium=False, frames=False, root=False, sudo=True)):
        p = setup.plan(f)
        assert p.browser_packages == ("chromium",) and p.gl_packages == setup.EGL_PACKAGES and not p.messages


def test_a_gl_library_only_when_no_backend_renders():
    assert setup.plan(facts(chromium=False)).gl_packages == ()


@pytest.mark.parametrize("f", [
    facts(root=False, chromium=False, frames=False),                      # no sudo
    facts(platform="darwin", distro="", apt=False, chromium=False, frames=False),
    facts(distro="ubuntu debian", chromium=False, frames=True),           # no deb of chromium on Ubuntu
])
def test_elsewhere_one_line_per_missing_piece_with_the_command(f):
    p = setup.plan(f)
    assert p.browser_packages == () and p.gl_packages == ()
    assert len(p.messages) == (1 if f.frames else 2)
    assert any("browser check" in m for m in p.messages)
    if f.platform == "darwin":
        assert "brew install --cask chromium" in " ".join(p.messages)
    elif not f.frames:
        assert "apt-get install -y libosmesa6" in " ".join(p.messages)


def test_a_users_failing_mujoco_gl_is_explained_not_overruled():
    p = setup.plan(facts(frames=False, user_gl="osmesa"))
    assert p.gl_packages == () and "MUJOCO_GL=osmesa" in p.messages[0]


def test_require_browser_stops_and_dry_run_prints_the_commands(tmp_path):
    env = {**os.environ, "CHROMIUM": str(tmp_path / "no-chromium")}
    run = [sys.executable, str(ROOT / "tools" / "system_setup.py")]
    out = subprocess.run([*run, "--require-browser"], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path) if not setup.can_install(setup.gather()) else None
    if out is not None:  # cannot install here: must stop with the command to run
        assert out.returncode == 1 and "make test` needs Chromium" in out.stderr
    dry = subprocess.run([*run, "--dry-run"], capture_output=True, text=True, env=env, timeout=300)
    assert dry.returncode == 0, dry.stderr
    if setup.can_install(setup.gather()) and "debian" in setup._distro().split():
        assert "apt-get install -y -qq --no-install-recommends chromium" in dry.stdout
    else:
        assert "browser check of `make test` is missing" in dry.stdout
    book = subprocess.run([*run, "--no-browser", "--dry-run"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert book.returncode == 0 and "chromium" not in book.stdout.lower()
