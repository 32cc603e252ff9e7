"""What this machine has for the book, piece by piece: the report of ``meta-rl doctor`` and of chapter 0.

:func:`checks` returns one :class:`Check` per piece (Python, torch, the CUDA device, gymnasium and the
package's ids, MuJoCo and the OpenGL backend that renders, Chromium for the browser check of ``make test``,
threads, the budget), each with its status and, when something is missing, what to do. :func:`format_text`
and :func:`format_markdown` lay them out; :func:`all_required_ok` is the exit status of ``meta-rl doctor``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Check", "all_required_ok", "checks", "chromium_fix", "chromium_path", "format_markdown",
           "format_text"]

#: Status of a piece: present; missing and needed to run the chapters; missing but only some things need it.
OK, MISSING, OPTIONAL = "ok", "missing", "optional"


@dataclasses.dataclass(frozen=True)
class Check:
    """One row of the report.

    Attributes:
        name: the piece (``"torch"``, ``"GL backend"``, ...).
        status: ``"ok"``, ``"missing"`` (the chapters cannot run without it) or ``"optional"`` (absent; only
            the thing named in ``fix`` needs it).
        value: what was found (a version, a device name, a path).
        fix: what to do about it; ``""`` when nothing needs doing.
    """

    name: str
    status: str
    value: str
    fix: str = ""


def chromium_path() -> str:
    """The Chromium the browser check uses: ``$CHROMIUM``, else Debian's ``/usr/bin/chromium``."""
    return os.environ.get("CHROMIUM", "/usr/bin/chromium")


def chromium_fix(platform_name: str | None = None) -> str:
    """How to get the Chromium that the browser check of ``make test`` needs, on ``platform_name``."""
    platform_name = platform_name or sys.platform
    if platform_name.startswith("linux"):
        return ("Debian: `apt-get install -y chromium` (`make setup` does it as root); elsewhere "
                "`.venv/bin/playwright install chromium` and point $CHROMIUM at the binary it reports")
    if platform_name == "darwin":
        return ("`brew install --cask chromium`, then "
                "`export CHROMIUM=/Applications/Chromium.app/Contents/MacOS/Chromium`")
    return "install Chromium and point $CHROMIUM at its executable"


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _ids_without_import() -> bool:
    # A fresh interpreter, so that nothing this process imported (meta_rl_lessons.envs registers the ids
    # too) hides a missing gymnasium hook.
    code = "import gymnasium, sys; sys.exit(0 if 'MetaRL/Navigation2D-v0' in gymnasium.registry else 1)"
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _short_path(path: str) -> str:
    """``path`` relative to the checkout when inside it (``.venv/bin/python``), under ``~`` when in the home
    folder: the report then reads the same on every machine, and the book shows no build-machine path."""
    full = Path(path).absolute()
    checkout = Path(__file__).resolve().parent.parent
    for base, shown in ((checkout, ""), (Path.home(), "~/")):
        try:
            return shown + full.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(full)


def checks() -> list[Check]:
    """Inspect this machine; one :class:`Check` per piece, in the order of the report.

    Imports torch, gymnasium and MuJoCo (after choosing the GL backend) and starts a few short Python
    processes (the GL probes, unless cached, and one for the gymnasium ids).
    """
    from meta_rl_lessons import __version__, gl

    rows: list[Check] = []
    py = platform.python_version()
    recent = sys.version_info >= (3, 10)
    rows.append(Check("Python", OK if recent else MISSING, f"{py} ({_short_path(sys.executable)})",
                      "" if recent else "Python 3.10 or newer"))
    rows.append(Check("meta_rl_lessons", OK, __version__))

    try:
        import torch
    except ImportError as err:
        rows.append(Check("torch", MISSING, f"not importable ({err})", "`make setup` (or pip install torch)"))
        torch = None
    else:
        rows.append(Check("torch", OK, torch.__version__))
    if torch is not None and torch.cuda.is_available():
        rows.append(Check("CUDA device", OK, f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} "
                                             f"device(s), CUDA {torch.version.cuda})"))
    else:
        built = getattr(getattr(torch, "version", None), "cuda", None)
        rows.append(Check("CUDA device", OPTIONAL, "none: everything runs on the CPU"
                          + ("" if built else " (CPU build of torch)"),
                          "only `META_RL_BUDGET=full` wants a GPU: an NVIDIA driver and torch's CUDA build"))

    gym_version = _version("gymnasium")
    if gym_version is None:
        rows.append(Check("gymnasium", MISSING, "not installed", "`make setup`"))
    else:
        ids = _ids_without_import()
        rows.append(Check("gymnasium", OK if ids else MISSING,
                          f"{gym_version}; MetaRL/... ids {'' if ids else 'NOT '}registered on import",
                          "" if ids else "reinstall the package: `.venv/bin/pip install -e . --no-deps` (its "
                          "meta_rl_lessons_gym.pth registers the ids); or import meta_rl_lessons.envs first"))

    choice = gl.configure()  # before mujoco is imported below
    mujoco_version = _version("mujoco")
    if mujoco_version is None:
        rows.append(Check("MuJoCo", MISSING, "not installed", "`make setup` (gymnasium[mujoco])"))
    else:
        try:
            import mujoco  # noqa: F401 - the import is the check
        except Exception as err:  # a broken GL library surfaces here as AttributeError/OSError
            rows.append(Check("MuJoCo", MISSING, f"{mujoco_version}, import fails: {err!r}",
                              gl.install_hint()))
        else:
            rows.append(Check("MuJoCo", OK, mujoco_version))
    tried = ", ".join(f"{p.backend} {'ok' if p.ok else 'failed'}" for p in choice.tried)
    if choice.frames:
        rows.append(Check("GL backend", OK, f"{choice.backend} (chosen by: {choice.source}"
                                            + (f"; {tried})" if tried else ")")))
    else:
        rows.append(Check("GL backend", OPTIONAL, f"none ({tried or 'MUJOCO_GL=' + str(choice.mujoco_gl)})",
                          "only the frames need one. " + choice.note))

    path = chromium_path()
    found = os.path.isfile(path) and os.access(path, os.X_OK)
    rows.append(Check("Chromium", OK if found else OPTIONAL, path if found else f"not found at {path}",
                      "" if found else "only the browser check of `make test` needs it: " + chromium_fix()))

    if torch is not None:
        rows.append(Check("threads", OK,
                          f"torch uses {torch.get_num_threads()} of {os.cpu_count()} CPU cores"))
    from meta_rl_lessons import budget

    try:
        rows.append(Check("budget", OK, f"{budget.current()} (from $META_RL_BUDGET, default book)"))
    except ValueError as err:
        rows.append(Check("budget", MISSING, os.environ.get("META_RL_BUDGET", ""), str(err)))
    return rows


def all_required_ok(rows: Sequence[Check]) -> bool:
    """True when nothing required is missing (optional pieces may be absent)."""
    return all(row.status != MISSING for row in rows)


def format_text(rows: Sequence[Check]) -> str:
    """The report as aligned plain text, one line per piece plus an indented line for each fix."""
    width = max(len(r.name) for r in rows)
    lines = []
    for r in rows:
        lines.append(f"{r.name:>{width}}  {r.status.upper():<8}  {r.value}")
        if r.fix:
            lines.append(f"{'':>{width}}  {'':<8}  -> {r.fix}")
    verdict = ("all required pieces are present" if all_required_ok(rows)
               else "something required is missing (see MISSING above)")
    lines.append(f"meta-rl doctor: {verdict}")
    return "\n".join(lines)


def format_markdown(rows: Sequence[Check]) -> str:
    """The report as a Markdown table (for chapter 0)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| piece | status | found | what to do |", "|---|---|---|---|"]
    out += [f"| {r.name} | {r.status} | {cell(r.value)} | {cell(r.fix)} |" for r in rows]
    return "\n".join(out)

