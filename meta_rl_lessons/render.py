"""Offscreen pictures of a policy acting: frame strips of MuJoCo episodes, before and after adaptation.

The chapters show what a policy *does*, not only its return. :func:`render_episode` runs one episode of a
gymnasium environment created with ``render_mode="rgb_array"``, records the frames at chosen steps and any
``info`` values (e.g. HalfCheetah's ``x_position``) at every step; :func:`policy_actor` turns a package
policy with given (e.g. adapted) parameters into the action function it needs; :func:`frame_strip` lays out
several episodes as a grid, one row per policy::

    env = gym.make("MetaRL/HalfCheetahDir-v0", render_mode="rgb_array", camera_name="track")
    env.unwrapped.set_task(task)
    episode = render_episode(env, policy_actor(policy, adapted_params), frame_steps=[25, 50, 75, 100])
    fig = frame_strip({"after one step": episode})

Importing this module chooses MuJoCo's OpenGL backend (:func:`meta_rl_lessons.gl.configure`: the user's
``MUJOCO_GL``, else GLFW with a display, else EGL, else OSMesa), so import it before ``mujoco``. Where no
backend works, the episodes still run and record rewards and ``info``, but carry no frames; the figures of
:func:`frame_strip` and :func:`frame_row` then show :attr:`RenderedEpisode.note` (what to install) instead.
:func:`render_frame` is ``env.render()`` that returns ``None`` in that case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import gl

__all__ = ["RenderedEpisode", "configure_offscreen", "frame_row", "frame_strip", "frames_available",
           "info_title", "policy_actor", "render_episode", "render_frame"]

# Before anything here (or in the caller) imports mujoco: MuJoCo reads MUJOCO_GL at import.
gl.configure()


def configure_offscreen() -> str | None:
    """Choose MuJoCo's OpenGL backend (see :mod:`meta_rl_lessons.gl`); returns ``MUJOCO_GL``'s new value.

    Kept for the chapters that call it; importing this module has already made the choice, so this only
    returns it (``None``: MuJoCo's own default, ``"disable"``: no backend renders here).
    """
    return gl.configure().mujoco_gl


def frames_available() -> bool:
    """Whether MuJoCo can render offscreen frames in this process."""
    return gl.current().frames


def render_frame(env: Any) -> np.ndarray | None:
    """``env.render()``, or ``None`` where no OpenGL backend works (:func:`frames_available` is False)."""
    if not frames_available():
        return None
    return env.render()


@dataclass
class RenderedEpisode:
    """One rendered episode.

    Attributes:
        frames: RGB images ``[H, W, 3]`` (uint8), one per entry of ``frame_steps`` that the episode reached.
        frame_steps: the step after which each frame was taken (0: after reset).
        rewards: reward of every step, ``[T]``.
        info: for each requested key, its value after every step, ``[T]`` (e.g. ``x_position``).
        terminated: whether the episode ended in a terminal state (rather than by its time limit).
        note: why there are no frames (no OpenGL backend works here, and what to install); ``""`` otherwise.
    """

    frames: list[np.ndarray]
    frame_steps: list[int]
    rewards: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)
    terminated: bool = False
    note: str = ""

    @property
    def total_reward(self) -> float:
        return float(self.rewards.sum())


def policy_actor(policy: Any, params: Mapping[str, Any] | None = None, *, deterministic: bool = True,
                 seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """An action function ``obs [obs_dim] -> action`` from a package policy and (optionally) other parameters.

    Args:
        policy: a policy of :mod:`meta_rl_lessons.rl.policies` (``policy(obs, params)``: a distribution).
        params: parameters to act with instead of the policy's own (e.g. MAML's adapted parameters);
            names as in ``dict(policy.named_parameters())``.
        deterministic: act with the distribution's mean (Gaussian) or mode (categorical); else sample.
        seed: seed of the sampling generator (used only when ``deterministic`` is False).
    """
    import torch

    first = next(policy.parameters())
    gen = torch.Generator(device=first.device).manual_seed(seed)
    detached = None if params is None else {k: v.detach() for k, v in params.items()}

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            o = torch.as_tensor(np.asarray(obs), dtype=first.dtype, device=first.device)
            dist = policy(o.reshape(1, -1), detached)
            logits = getattr(dist, "logits", None)  # categorical; None for a Gaussian
            if deterministic:
                a = dist.mean if logits is None else logits.argmax(-1)
            else:
                if logits is None:
                    a = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=gen,
                                                              device=first.device, dtype=first.dtype)
                else:
                    a = torch.multinomial(dist.probs, 1, generator=gen).squeeze(-1)
        return a[0].cpu().numpy()

    return act


def render_episode(env: Any, act: Callable[[np.ndarray], np.ndarray], *, frame_steps: Sequence[int],
                   max_steps: int | None = None, seed: int = 0, info_keys: Sequence[str] = ()
                   ) -> RenderedEpisode:
    """Run one episode with ``act`` and render the frames after the steps in ``frame_steps``.

    Args:
        env: a gymnasium environment made with ``render_mode="rgb_array"``.
        act: ``obs -> action``; actions are clipped to a Box action space before stepping.
        frame_steps: steps after which to render (0 renders the state after reset); sorted, non-negative.
        max_steps: stop after this many steps (default: the environment's own limit, at most
            ``max(frame_steps)`` when that is larger than 0 and no limit is given).
        seed: reset seed.
        info_keys: ``info`` entries to record after every step.

    Where no OpenGL backend works, the episode runs all the same and returns no frames, with the reason in
    :attr:`RenderedEpisode.note`.
    """
    steps = [int(s) for s in frame_steps]
    if not steps or any(s < 0 for s in steps) or steps != sorted(steps):
        raise ValueError(f"frame_steps must be a non-empty sorted list of steps >= 0, "
                         f"got {list(frame_steps)!r}")
    if getattr(env, "render_mode", None) != "rgb_array":
        raise ValueError(f"render_episode needs an env made with render_mode='rgb_array', got "
                         f"{getattr(env, 'render_mode', None)!r}")
    limit = max_steps if max_steps is not None else max(steps)
    if limit <= 0 and max(steps) > 0:
        raise ValueError(f"max_steps must be positive, got {max_steps!r}")
    low = getattr(env.action_space, "low", None)
    high = getattr(env.action_space, "high", None)
    choice = gl.current()
    obs, _ = env.reset(seed=seed)
    frames, taken, rewards = [], [], []
    info_log: dict[str, list[float]] = {k: [] for k in info_keys}
    if not choice.frames:
        steps = []  # the episode still runs; only the pictures are missing
    elif steps[0] == 0:
        frames.append(env.render())
        taken.append(0)
    terminated = False
    for t in range(1, limit + 1):
        action = act(obs)
        if low is not None:
            action = np.clip(action, low, high)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(float(reward))
        for k in info_keys:
            if k not in info:
                raise KeyError(f"info has no key {k!r}; keys after step {t}: {sorted(info)}")
            info_log[k].append(float(info[k]))
        if t in steps:
            frames.append(env.render())
            taken.append(t)
        if terminated or truncated:
            break
    return RenderedEpisode(frames, taken, np.asarray(rewards, dtype=np.float64),
                           {k: np.asarray(v) for k, v in info_log.items()}, bool(terminated),
                           "" if choice.frames else choice.note)


def frame_strip(rows: Mapping[str, RenderedEpisode], *, width: float | None = None,
                height: float | None = None, annotate: Callable[[RenderedEpisode, int], str] | None = None,
                fontsize: float = 9):
    """A grid of frames: one row per labelled episode, one column per frame step. Returns the figure.

    ``width`` and ``height`` are one frame's size in inches (default: the grid is 7.2 in wide, the book's
    column, so its ``fontsize``-point titles show at that size; height 3/4 of the width).
    ``annotate(episode, column)`` gives each frame's title (default: the step number). Where the episodes
    have no frames (no OpenGL backend), the figure shows their note instead.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("frame_strip needs at least one episode")
    notes = [e.note for e in rows.values() if e.note and not e.frames]
    ncols = max(max(len(e.frames) for e in rows.values()), 1)
    width = width if width is not None else 7.2 / ncols
    height = height if height is not None else 0.75 * width
    if notes:
        return _note_figure(notes[0], width * max(ncols, 4))
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width * ncols, height * len(rows)), squeeze=False)
    for r, (label, episode) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(episode.frames):
                continue
            ax.imshow(episode.frames[c])
            title = annotate(episode, c) if annotate else f"step {episode.frame_steps[c]}"
            ax.set_title(title, fontsize=fontsize)
        axes[r, 0].text(-0.04, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center",
                        fontsize=fontsize, rotation=90)
    fig.tight_layout()
    return fig


def info_title(key: str, label: str | None = None, unit: str = "") -> Callable[[RenderedEpisode, int], str]:
    """An ``annotate`` function for :func:`frame_strip`: the step and the recorded ``info[key]`` at that step,
    e.g. ``info_title("x_position", "x", "m")`` gives ``"step 50, x = 3.2 m"`` (``key`` must be among the
    episode's ``info_keys``)."""
    name = label or key

    def title(episode: RenderedEpisode, column: int) -> str:
        step = episode.frame_steps[column]
        if step == 0:
            return "step 0"
        return f"step {step}, {name} = {episode.info[key][step - 1]:.1f}{' ' + unit if unit else ''}"

    return title


def frame_row(frames: Sequence[np.ndarray | None], titles: Sequence[str] | None = None, *,
              width: float = 3.0, height: float = 2.8, fontsize: float = 9):
    """Frames side by side, each with its title (e.g. from :func:`render_frame`); returns the figure.

    If any frame is ``None`` (no OpenGL backend works here), the figure shows the note saying what to
    install instead of the frames.
    """
    import matplotlib.pyplot as plt

    if not frames:
        raise ValueError("frame_row needs at least one frame")
    if titles is not None and len(titles) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(titles)} titles")
    if any(f is None for f in frames):
        return _note_figure(gl.current().note or "No frames: MuJoCo could not render here.",
                            width * max(len(frames), 2))
    fig, axes = plt.subplots(1, len(frames), figsize=(width * len(frames), height), squeeze=False)
    for c, (ax, frame) in enumerate(zip(axes[0], frames, strict=True)):
        ax.imshow(frame)
        if titles is not None:
            ax.set_title(titles[c], fontsize=fontsize)
        ax.axis("off")
    fig.tight_layout()
    return fig


def _note_figure(note: str, width: float):
    """A figure that holds only ``note``, framed, where the frames would have been: visible in the book."""
    import textwrap

    import matplotlib.pyplot as plt

    chars = max(40, int(width * 10))  # about 10 characters of 10-point text per inch
    text = "\n".join(textwrap.wrap(note, chars))
    fig, ax = plt.subplots(figsize=(width, 0.35 + 0.2 * (text.count("\n") + 1)))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, transform=ax.transAxes,
            bbox={"boxstyle": "round", "facecolor": "#fff3cd", "edgecolor": "#b58900"})
    return fig
