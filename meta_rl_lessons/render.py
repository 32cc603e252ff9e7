"""Offscreen pictures of a policy acting: frame strips of MuJoCo episodes, before and after adaptation.

The chapters show what a policy *does*, not only its return. :func:`render_episode` runs one episode of a
gymnasium environment created with ``render_mode="rgb_array"``, records the frames at chosen steps and any
``info`` values (e.g. HalfCheetah's ``x_position``) at every step; :func:`policy_actor` turns a package
policy with given (e.g. adapted) parameters into the action function it needs; :func:`frame_strip` lays out
several episodes as a grid, one row per policy::

    configure_offscreen()                     # before the first frame: OSMesa when there is no display
    env = gym.make("MetaRL/HalfCheetahDir-v0", render_mode="rgb_array", camera_name="track")
    env.unwrapped.set_task(task)
    episode = render_episode(env, policy_actor(policy, adapted_params), frame_steps=[25, 50, 75, 100])
    fig = frame_strip({"after one step": episode})

Without a display, MuJoCo needs a software OpenGL: Debian's ``libosmesa6`` with ``MUJOCO_GL=osmesa``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RenderedEpisode", "configure_offscreen", "frame_strip", "info_title", "policy_actor",
           "render_episode"]


def configure_offscreen() -> str | None:
    """Choose OSMesa for MuJoCo on a Linux machine without a display, unless ``MUJOCO_GL`` is already set.

    Must run before the first frame is rendered (MuJoCo picks its OpenGL backend when it creates its first
    rendering context; importing ``mujoco`` earlier is fine). Returns the backend in use (``None``: MuJoCo's
    own default).
    """
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "osmesa")
    return os.environ.get("MUJOCO_GL")


@dataclass
class RenderedEpisode:
    """One rendered episode.

    Attributes:
        frames: RGB images ``[H, W, 3]`` (uint8), one per entry of ``frame_steps`` that the episode reached.
        frame_steps: the step after which each frame was taken (0: after reset).
        rewards: reward of every step, ``[T]``.
        info: for each requested key, its value after every step, ``[T]`` (e.g. ``x_position``).
        terminated: whether the episode ended in a terminal state (rather than by its time limit).
    """

    frames: list[np.ndarray]
    frame_steps: list[int]
    rewards: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)
    terminated: bool = False

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
    obs, _ = env.reset(seed=seed)
    frames, taken, rewards = [], [], []
    info_log: dict[str, list[float]] = {k: [] for k in info_keys}
    if steps[0] == 0:
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
                           {k: np.asarray(v) for k, v in info_log.items()}, bool(terminated))


def frame_strip(rows: Mapping[str, RenderedEpisode], *, width: float = 2.6, height: float = 1.9,
                annotate: Callable[[RenderedEpisode, int], str] | None = None):
    """A grid of frames: one row per labelled episode, one column per frame step. Returns the figure.

    ``annotate(episode, column)`` gives each frame's title (default: the step number).
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("frame_strip needs at least one episode")
    ncols = max(len(e.frames) for e in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width * ncols, height * len(rows)), squeeze=False)
    for r, (label, episode) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(episode.frames):
                continue
            ax.imshow(episode.frames[c])
            title = annotate(episode, c) if annotate else f"step {episode.frame_steps[c]}"
            ax.set_title(title, fontsize=8)
        axes[r, 0].text(-0.04, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center",
                        fontsize=9, rotation=90)
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
