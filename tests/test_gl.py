"""meta_rl_lessons.gl: the backend rules (fake probes), the environment it leaves, the probe cache, and in
fresh processes: a frame with nothing set, the note where nothing renders, gym.make without the import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from meta_rl_lessons import gl


def fake(working: set[str]):
    """A probe under which exactly the backends in ``working`` render; records what it was asked."""
    asked: list[str] = []

    def probe(backend: str) -> gl.Probe:
        asked.append(backend)
        return gl.Probe(backend, backend in working, "" if backend in working else f"{backend} missing")

    probe.asked = asked
    return probe


HEADLESS: dict[str, str] = {}
DISPLAY = {"DISPLAY": ":0"}


@pytest.mark.parametrize(("working", "backend", "asked"), [
    ({"egl", "osmesa"}, "egl", ["egl"]),          # EGL first: it needs nothing beyond Mesa, and it is faster
    ({"egl"}, "egl", ["egl"]),
    ({"osmesa"}, "osmesa", ["egl", "osmesa"]),
])
def test_headless_linux_probes_egl_then_osmesa(working, backend, asked):
    probe = fake(working)
    choice = gl.choose(HEADLESS, "linux", probe)
    assert (choice.frames, choice.backend, choice.mujoco_gl) == (True, backend, backend)
    assert choice.source == "headless"
    assert probe.asked == asked and choice.note == ""


def test_no_backend_disables_gl_and_says_what_to_install():
    probe = fake(set())
    choice = gl.choose(HEADLESS, "linux", probe)
    assert not choice.frames and choice.mujoco_gl == "disable" and probe.asked == ["egl", "osmesa"]
    assert "libosmesa6" in choice.note and "libegl1" in choice.note and "egl missing" in choice.note


def test_user_choice_is_respected_and_not_replaced_when_it_fails():
    probe = fake({"egl", "osmesa"})
    choice = gl.choose({"MUJOCO_GL": "osmesa"}, "linux", probe)
    assert (choice.frames, choice.backend, choice.source, probe.asked) == (True, "osmesa", "user", ["osmesa"])
    probe = fake({"egl"})
    choice = gl.choose({"MUJOCO_GL": "OSMesa "}, "linux", probe)
    # no silent switch to EGL; frames off so that `import mujoco` still works, and the note names the cause
    assert (choice.frames, choice.mujoco_gl, probe.asked) == (False, "disable", ["osmesa"])
    assert "MUJOCO_GL=osmesa" in choice.note and "set in your environment" in choice.note


def test_user_disabled_gl_is_not_probed():
    probe = fake({"egl"})
    choice = gl.choose({"MUJOCO_GL": "disable"}, "linux", probe)
    assert not choice.frames and probe.asked == [] and "switched off" in choice.note
    # a child process keeps its parent's reason
    choice = gl.choose({"MUJOCO_GL": "disable", gl.NOTE_VARIABLE: "why"}, "linux", probe)
    assert choice.note == "why"


def test_display_present_uses_glfw_and_falls_back_to_headless_backends():
    probe = fake({"glfw", "egl"})
    choice = gl.choose(DISPLAY, "linux", probe)
    assert (choice.backend, choice.source, probe.asked) == ("glfw", "display", ["glfw"])
    probe = fake({"egl"})  # e.g. ssh with a stale DISPLAY
    choice = gl.choose({"WAYLAND_DISPLAY": "wayland-0"}, "linux", probe)
    assert (choice.backend, probe.asked) == ("egl", ["glfw", "egl"])


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_other_platforms_keep_mujocos_default_without_probing(platform):
    probe = fake(set())
    choice = gl.choose(HEADLESS, platform, probe)
    assert choice.frames and choice.mujoco_gl is None and probe.asked == []


def test_apply_keeps_pyopengl_consistent():
    env = {"PYOPENGL_PLATFORM": "osmesa", gl.NOTE_VARIABLE: "old"}
    gl.apply(gl.choose(env, "linux", fake({"egl"})), env)
    assert env == {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
    env = {"DISPLAY": ":0", "PYOPENGL_PLATFORM": "egl"}
    gl.apply(gl.choose(env, "linux", fake({"glfw"})), env)
    assert env == {"DISPLAY": ":0", "MUJOCO_GL": "glfw"}
    env = {}
    gl.apply(gl.choose(env, "linux", fake(set())), env)
    assert env["MUJOCO_GL"] == "disable" and "libosmesa6" in env[gl.NOTE_VARIABLE]


def test_probe_results_are_cached_per_display(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(gl.CACHE_VARIABLE, raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(gl, "probe", lambda b: calls.append(b) or gl.Probe(b, b == "egl", "no"))
    assert gl.cached_probe("egl").ok and not gl.cached_probe("osmesa").ok
    assert gl.cached_probe("egl").ok and gl.cached_probe("osmesa").detail == "no"
    assert calls == ["egl", "osmesa"]  # the second round came from the file
    assert len(json.loads((tmp_path / "meta-rl-lessons" / "gl-probes.json").read_text())) == 2
    monkeypatch.setenv("DISPLAY", ":1")  # another display may answer differently
    gl.cached_probe("egl")
    assert calls == ["egl", "osmesa", "egl"]


def _fresh(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY", gl.NOTE_VARIABLE):
        env.pop(key, None)
    env[gl.CACHE_VARIABLE] = "0"  # probe for real
    for key, value in env_changes.items():
        if value is not None:
            env[key] = value
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the headless rules are Linux's")
def test_no_backend_means_a_note_instead_of_frames_and_the_rest_runs():
    # GLFW without a display cannot render on any machine: a backend that fails for sure.
    out = _fresh("""
        import os
        import gymnasium as gym, numpy as np
        from meta_rl_lessons.render import (frame_row, frame_strip, frames_available, render_episode,
                                            render_frame)
        import mujoco  # must still import
        assert not frames_available() and os.environ["MUJOCO_GL"] == "disable"
        env = gym.make("MetaRL/HalfCheetahVel-v0", render_mode="rgb_array", width=32, height=24)
        ep = render_episode(env, lambda obs: np.zeros(6), frame_steps=[0, 5], info_keys=["x_position"])
        assert ep.frames == [] and len(ep.rewards) == 5 and len(ep.info["x_position"]) == 5
        assert render_frame(env) is None
        texts = [t.get_text() for f in (frame_strip({"a": ep}), frame_row([None])) for t in f.axes[0].texts]
        assert all("MUJOCO_GL=glfw" in t and "libosmesa6" in t for t in texts) and len(texts) == 2, texts
        print("ok")
    """, MUJOCO_GL="glfw", MPLBACKEND="Agg")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="offscreen rendering without a display")
def test_a_frame_with_nothing_set():
    out = _fresh("""
        import os
        import gymnasium as gym, numpy as np
        from meta_rl_lessons.render import render_frame
        env = gym.make("MetaRL/HalfCheetahDir-v0", render_mode="rgb_array", width=32, height=24)
        env.reset(seed=0)
        frame = render_frame(env)
        assert frame.shape == (24, 32, 3) and frame.std() > 0, frame
        print(os.environ["MUJOCO_GL"])
    """)
    if out.returncode != 0 and "No frames" in out.stderr:
        pytest.skip("no OpenGL backend renders on this machine")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() in ("egl", "osmesa")


def test_every_id_is_made_in_a_fresh_interpreter_without_importing_the_package(tmp_path):
    from meta_rl_lessons.registration import ENV_IDS

    code = f"""
        import sys
        import gymnasium as gym
        assert "meta_rl_lessons.envs" not in sys.modules and "mujoco" not in sys.modules
        for env_id in {list(ENV_IDS)!r}:
            env = gym.make(env_id)
            env.reset(seed=0)
            task = env.unwrapped.get_task()
            env.get_wrapper_attr("set_task")(task)  # the task methods through gymnasium's wrappers
            env.close()
        print("made", len({list(ENV_IDS)!r}))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # not the repository: the installed package only
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == f"made {len(ENV_IDS)}"


def test_the_hook_registers_when_gymnasium_is_already_imported(monkeypatch):
    import gymnasium as gym

    from meta_rl_lessons import _gym_hook

    monkeypatch.delitem(gym.registry, "MetaRL/Navigation2D-v0")
    _gym_hook.install()
    assert "MetaRL/Navigation2D-v0" in gym.registry
    assert _gym_hook._FINDER not in sys.meta_path
