"""The one place that chooses MuJoCo's OpenGL backend for offscreen frames.

MuJoCo reads ``MUJOCO_GL`` when ``mujoco`` is first imported, and a backend whose system library is missing
does not fail politely: with ``MUJOCO_GL=osmesa`` and no ``libosmesa6``, ``import mujoco`` itself raises. So
the choice is made before that import, by trying each candidate in a *subprocess* (a failed OpenGL import
cannot be undone in-process)::

    from meta_rl_lessons import gl
    choice = gl.configure()      # idempotent; meta_rl_lessons.render and .envs call it on import
    choice.frames, choice.backend, choice.note

The rules, in order:

1. ``MUJOCO_GL`` set by the user is respected: it is probed, and if it cannot render, frames are switched off
   (``MUJOCO_GL=disable``, so that ``import mujoco`` still works) and the note says why; no other backend is
   substituted behind the user's back.
2. macOS and Windows: MuJoCo's own default (CGL / WGL), nothing set.
3. Linux with a display (``DISPLAY`` or ``WAYLAND_DISPLAY``): GLFW, as MuJoCo would pick, if it renders.
4. Linux without a display (or whose display cannot render): EGL, then OSMesa.
5. Nothing renders: ``MUJOCO_GL=disable``; rendering helpers show :attr:`Choice.note` (what to install)
   instead of frames, and everything else runs.

The choice goes into ``os.environ`` (``MUJOCO_GL``, and ``PYOPENGL_PLATFORM`` for EGL / OSMesa, which MuJoCo's
EGL and OSMesa modules insist agree with it), so child processes (Jupyter kernels, pytest-xdist workers,
sampler workers) inherit it. Probe results are also cached in a small file keyed on the Python executable,
the MuJoCo version, the display and the system's library cache, so a test run's many processes probe once.
``python -m meta_rl_lessons.gl`` prints the choice (exit status 0 when frames work, 1 when not).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

__all__ = ["Choice", "Probe", "apply", "cached_probe", "choose", "configure", "current", "install_hint",
           "probe"]

#: ``MUJOCO_GL`` values with which MuJoCo imports without any OpenGL.
DISABLED = ("disable", "disabled", "off", "false", "0")
#: Set with the choice so that child processes keep the parent's note (why there are no frames).
NOTE_VARIABLE = "META_RL_GL_NOTE"
#: Set to ``0`` to skip the file cache of probe results.
CACHE_VARIABLE = "META_RL_GL_CACHE"
PROBE_TIMEOUT_S = 60.0

# One small frame of a lit sphere through mujoco.Renderer, which creates its context the way gymnasium's
# renderer does (from MUJOCO_GL); the frame must not be black.
_PROBE_CODE = """
import mujoco
model = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><light pos='0 0 1'/>"
    "<geom type='sphere' size='.1' rgba='1 0 0 1'/></worldbody></mujoco>")
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer = mujoco.Renderer(model, 16, 16)
renderer.update_scene(data)
pixels = renderer.render()
renderer.close()
assert pixels.shape == (16, 16, 3) and pixels.max() > 0, "blank frame"
print("rendered")
"""


@dataclasses.dataclass(frozen=True)
class Probe:
    """Whether one backend rendered a frame in a fresh process; ``detail``: the error's last line if not."""

    backend: str
    ok: bool
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Choice:
    """The backend in use and how it was chosen.

    Attributes:
        frames: whether MuJoCo can render offscreen frames in this process.
        backend: ``egl``, ``osmesa``, ``glfw``, ... or ``"platform default"`` (macOS / Windows, nothing set)
            or ``"none"``.
        source: ``"user"`` (``MUJOCO_GL`` was set), ``"display"``, ``"headless"`` or ``"platform"``.
        mujoco_gl: the value ``MUJOCO_GL`` must have (``None``: leave it unset).
        tried: every probe made, in order.
        note: when there are no frames, what went wrong and what to install; else ``""``.
    """

    frames: bool
    backend: str
    source: str
    mujoco_gl: str | None
    tried: tuple[Probe, ...] = ()
    note: str = ""


def install_hint(platform: str | None = None) -> str:
    """What to install for offscreen frames on ``platform`` (default: this one), as one sentence."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return ("install an offscreen OpenGL library: EGL (`apt-get install -y libegl1 libegl-mesa0` on "
                "Debian/Ubuntu, GPU or software) or OSMesa (`apt-get install -y libosmesa6`); with a "
                "display, GLFW needs `libgl1`")
    if platform == "darwin":
        return "macOS renders with CGL out of the box; unset MUJOCO_GL or set MUJOCO_GL=cgl"
    return "install your GPU's OpenGL driver; unset MUJOCO_GL to use MuJoCo's default"


def choose(environ: Mapping[str, str], platform: str, probe: Callable[[str], Probe]) -> Choice:
    """Choose the backend by the rules of this module's docstring; ``probe(backend)`` tries one backend.

    Pure apart from ``probe``, so the rules are unit-tested with fake probes.
    """
    requested = environ.get("MUJOCO_GL", "").strip().lower()
    if requested in DISABLED:
        note = environ.get(NOTE_VARIABLE) or (f"MuJoCo rendering is switched off (MUJOCO_GL={requested}); "
                                              f"unset MUJOCO_GL to let the package choose a backend.")
        return Choice(False, "none", "user", requested, (), note)
    if requested:
        result = probe(requested)
        if result.ok:
            return Choice(True, requested, "user", requested, (result,))
        note = (f"No frames: MUJOCO_GL={requested} (set in your environment) cannot render here "
                f"({result.detail or 'unknown error'}). Unset MUJOCO_GL to let the package choose, or "
                f"{install_hint(platform)}.")
        return Choice(False, "none", "user", "disable", (result,), note)
    if not platform.startswith("linux"):
        return Choice(True, "platform default", "platform", None)
    tried: list[Probe] = []
    has_display = bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    candidates = (["glfw"] if has_display else []) + ["egl", "osmesa"]
    for backend in candidates:
        result = probe(backend)
        tried.append(result)
        if result.ok:
            source = "display" if backend == "glfw" else "headless"
            return Choice(True, backend, source, backend, tuple(tried))
    failures = "; ".join(f"{p.backend}: {p.detail or 'failed'}" for p in tried)
    note = (f"No frames: no OpenGL backend for MuJoCo works here ({failures}). To see frames, "
            f"{install_hint(platform)}.")
    return Choice(False, "none", "display" if has_display else "headless", "disable", tuple(tried), note)


def probe(backend: str, *, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Render one small frame with ``MUJOCO_GL=backend`` in a fresh Python process."""
    env = dict(os.environ)
    env["MUJOCO_GL"] = backend
    env.pop(NOTE_VARIABLE, None)
    if backend in ("egl", "osmesa"):
        env["PYOPENGL_PLATFORM"] = backend
    else:
        env.pop("PYOPENGL_PLATFORM", None)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE_CODE], env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return Probe(backend, False, f"no frame within {timeout:.0f} s")
    if out.returncode == 0 and "rendered" in out.stdout:
        return Probe(backend, True)
    lines = [line.strip() for line in (out.stderr or out.stdout).splitlines() if line.strip()]
    return Probe(backend, False, lines[-1][:300] if lines else f"exit status {out.returncode}")


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "meta-rl-lessons" / "gl-probes.json"


def _cache_key(backend: str) -> str:
    # Whatever could change the answer: this interpreter, the MuJoCo build, the display, and the system's
    # libraries (apt-get install/remove rewrites /etc/ld.so.cache).
    from importlib import metadata

    try:
        mujoco_version = metadata.version("mujoco")
    except metadata.PackageNotFoundError:
        mujoco_version = "absent"
    try:
        libs = str(os.stat("/etc/ld.so.cache").st_mtime_ns)
    except OSError:
        libs = "-"
    parts = [sys.executable, mujoco_version, os.environ.get("DISPLAY", ""),
             os.environ.get("WAYLAND_DISPLAY", ""), libs, backend]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def cached_probe(backend: str) -> Probe:
    """:func:`probe`, with the result kept in a file cache (see the module docstring)."""
    if os.environ.get(CACHE_VARIABLE, "1") == "0":
        return probe(backend)
    path = _cache_path()
    key = _cache_key(backend)
    try:
        entries = json.loads(path.read_text())
        hit = entries.get(key)
        if hit is not None:
            return Probe(backend, bool(hit["ok"]), str(hit.get("detail", "")))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        entries = {}
    result = probe(backend)
    if not isinstance(entries, dict):
        entries = {}
    entries[key] = {"ok": result.ok, "detail": result.detail}
    try:
        # Several processes may probe at once: write a temporary file and rename it, so a reader never
        # sees half a file (the last writer wins, and all of them wrote the same answers).
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(entries, f)
        os.replace(f.name, path)
    except OSError:
        pass  # a read-only home only costs a probe per process
    return result


_current: Choice | None = None


def apply(choice: Choice, environ: MutableMapping[str, str]) -> None:
    """Write ``choice`` into ``environ`` (``MUJOCO_GL``, ``PYOPENGL_PLATFORM`` and the note variable)."""
    if choice.mujoco_gl is None:
        environ.pop("MUJOCO_GL", None)
    else:
        environ["MUJOCO_GL"] = choice.mujoco_gl
    if choice.mujoco_gl in ("egl", "osmesa"):
        environ["PYOPENGL_PLATFORM"] = choice.mujoco_gl
    elif choice.mujoco_gl == "glfw" and environ.get("PYOPENGL_PLATFORM") in ("egl", "osmesa"):
        del environ["PYOPENGL_PLATFORM"]  # a leftover export would make PyOpenGL look for the wrong library
    if choice.note:
        environ[NOTE_VARIABLE] = choice.note
    else:
        environ.pop(NOTE_VARIABLE, None)


_current: Choice | None = None


def configure() -> Choice:
    """Choose the backend once per process and put it into ``os.environ``; returns the :class:`Choice`.

    Call it before ``mujoco`` is first imported (importing :mod:`meta_rl_lessons.render` or
    :mod:`meta_rl_lessons.envs` does). Later calls return the first answer.
    """
    global _current
    if _current is None:
        choice = choose(os.environ, sys.platform, cached_probe)
        apply(choice, os.environ)
        _current = choice
    return _current


def current() -> Choice:
    """The choice of this process (made now if :func:`configure` has not run yet)."""
    return configure()


def _main() -> int:
    choice = configure()
    tried = ", ".join(f"{p.backend} {'ok' if p.ok else 'failed'}" for p in choice.tried) or "no probe"
    print(f"MuJoCo GL backend: {choice.backend} (chosen by: {choice.source}; {tried})")
    if choice.note:
        print(choice.note)
    return 0 if choice.frames else 1


if __name__ == "__main__":
    sys.exit(_main())
