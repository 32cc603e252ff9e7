"""System set-up for the book and its tests, run by ``make setup`` (and so by ``make book`` / ``make test``).

What the Python packages cannot bring: an OpenGL library for MuJoCo's offscreen frames (only if no backend
renders already) and Chromium for the browser check of ``make test``. On Debian (and Ubuntu for the GL
libraries) as root, or with password-less sudo, missing pieces are installed with apt-get; elsewhere one
line per missing piece says the exact command. Frames are optional (the chapters show a note instead), so a
missing GL library never stops the build; Chromium stops it only with ``--require-browser`` (``make test``).

    python tools/system_setup.py [--require-browser | --no-browser] [--dry-run]

``--no-browser`` (``make book``) leaves Chromium alone. Exit status: 0, or 1 when ``--require-browser`` is
given and Chromium is missing and could not be installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from meta_rl_lessons import doctor, gl  # noqa: E402 - after the path set-up above

# Debian's names; Mesa's EGL renders without a GPU too (software), OSMesa is the fallback.
EGL_PACKAGES = ("libegl1", "libegl-mesa0", "libgl1")
OSMESA_PACKAGES = ("libosmesa6",)
CHROMIUM_PACKAGES = ("chromium",)


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the set-up needs to know about the machine."""

    platform: str           # sys.platform
    distro: str             # /etc/os-release ID and ID_LIKE, e.g. "debian" or "ubuntu debian"
    apt: bool               # apt-get on PATH
    root: bool              # running as root
    sudo: bool              # password-less sudo works
    frames: bool            # some GL backend renders
    chromium: bool          # the browser check's Chromium is there
    user_gl: str = ""       # MUJOCO_GL as the user set it ("" when unset)


@dataclasses.dataclass(frozen=True)
class Plan:
    """apt-get packages to install, lines to print, and whether the browser check can run."""

    gl_packages: tuple[str, ...] = ()
    browser_packages: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()


def can_install(facts: Facts) -> bool:
    """apt-get is there and we may use it without a password prompt."""
    return facts.platform.startswith("linux") and facts.apt and (facts.root or facts.sudo)


def plan(facts: Facts) -> Plan:
    """Decide what to install and what to tell the user (pure: unit-tested on made-up machines)."""
    gl_packages: tuple[str, ...] = ()
    browser: tuple[str, ...] = ()
    messages: list[str] = []
    debian = "debian" in facts.distro.split() and "ubuntu" not in facts.distro.split()
    if not facts.frames and facts.user_gl:
        messages.append(f"setup: MUJOCO_GL={facts.user_gl} is set in your environment and does not render "
                        "(optional; the chapters show a note instead); unset it to let the package "
                        f"choose, or {gl.install_hint(facts.platform)}")
    elif not facts.frames:
        if can_install(facts):
            gl_packages = EGL_PACKAGES
        else:
            messages.append("setup: no OpenGL backend renders MuJoCo frames (optional; the chapters show a "
                            f"note instead): {gl.install_hint(facts.platform)}")
    if not facts.chromium:
        if can_install(facts) and debian:
            browser = CHROMIUM_PACKAGES
        else:
            messages.append("setup: Chromium for the browser check of `make test` is missing (everything "
                            f"else works without it): {doctor.chromium_fix(facts.platform)}")
    return Plan(gl_packages, browser, tuple(messages))


def _distro() -> str:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return ""
    return " ".join(fields.get(k, "").strip('"') for k in ("ID", "ID_LIKE")).strip()


def _frames() -> bool:
    # Not gl.configure(): that answers once per process, and after an install the answer may change
    # (the probe cache is keyed on the system's library cache, so it probes again).
    return gl.choose(os.environ, sys.platform, gl.cached_probe).frames


def _chromium() -> bool:
    path = doctor.chromium_path()
    return os.path.isfile(path) and os.access(path, os.X_OK)


def gather() -> Facts:
    """The facts of this machine."""
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    sudo = False
    if not root and shutil.which("sudo"):
        sudo = subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0
    return Facts(sys.platform, _distro(), shutil.which("apt-get") is not None, root, sudo, _frames(),
                 _chromium(), os.environ.get("MUJOCO_GL", "").strip())


def apt_install(packages: Sequence[str], facts: Facts, dry_run: bool) -> bool:
    """``apt-get install`` the packages (``sudo -n`` unless root); True on success."""
    prefix = [] if facts.root else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = [[*prefix, "apt-get", "update", "-qq"],
                [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]]
    for cmd in commands:
        print("setup: running", " ".join(cmd), flush=True)
        if dry_run:
            continue
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"setup: `{' '.join(cmd)}` failed", flush=True)
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-browser", action="store_true",
                        help="fail when Chromium (for the browser check) is missing and cannot be installed")
    parser.add_argument("--no-browser", action="store_true",
                        help="leave Chromium alone (`make book` does not need it)")
    parser.add_argument("--dry-run", action="store_true", help="print the apt-get commands, run nothing")
    args = parser.parse_args(argv)

    facts = gather()
    if args.no_browser:
        facts = dataclasses.replace(facts, chromium=True)  # nothing to do about it here
    todo = plan(facts)
    for line in todo.messages:
        print(line, flush=True)
    if todo.gl_packages:
        print("setup: no OpenGL backend renders MuJoCo frames; installing Mesa's EGL", flush=True)
        if apt_install(todo.gl_packages, facts, args.dry_run) and not args.dry_run and not _frames():
            print("setup: EGL still does not render; installing OSMesa", flush=True)
            apt_install(OSMESA_PACKAGES, facts, args.dry_run)
        if not args.dry_run and not _frames():
            print(f"setup: still no frames (optional; the chapters show a note): {gl.install_hint()}")
    if todo.browser_packages:
        print("setup: Chromium (for the browser check) is missing; installing it", flush=True)
        apt_install(todo.browser_packages, facts, args.dry_run)
    chromium = _chromium()
    choice = gl.choose(os.environ, sys.platform, gl.cached_probe)
    frames = f"yes ({choice.backend})" if choice.frames else "no (the chapters show a note instead)"
    browser = "" if args.no_browser else f"; Chromium for the browser check: {'yes' if chromium else 'no'}"
    print(f"setup: MuJoCo frames: {frames}{browser}", flush=True)
    if args.require_browser and not chromium and not args.dry_run:
        print("setup: stopping: `make test` needs Chromium for its browser check. "
              + doctor.chromium_fix(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
