r"""2D point navigation (Finn et al. 2017, section 5.3; task ranges as in pytorch-maml-rl).

A point starts at the origin and must reach a goal :math:`g` drawn uniformly from the square
:math:`[-0.5, 0.5]^2`. The action is a velocity, clipped to :math:`[-0.1, 0.1]^2`; the reward is the negative
Euclidean distance to the goal *after* the move:

.. math::
   x_{t+1} = x_t + \mathrm{clip}(a_t, -0.1, 0.1), \qquad r_t = -\lVert x_{t+1} - g \rVert_2 .

An episode lasts ``horizon = 100`` steps and terminates early when :math:`|x - g|_\infty < 0.01` (as in the
reference implementations). Observation: the position :math:`x_t` (float32, shape ``(2,)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from .base import MetaEnvMixin, TaskFamily, check_int, check_range
from .batched import BatchedEnv

MAX_SPEED = 0.1
GOAL_TOLERANCE = 0.01


@dataclass(frozen=True)
class NavigationTask:
    """Goal position ``(x, y)``."""

    goal: tuple[float, float]


class Navigation2DFamily(TaskFamily):
    """Goals uniform in ``[goal_low, goal_high]^2``; split coordinates: the normalised goal."""

    name = "Navigation2D"
    task_type = NavigationTask

    def __init__(self, goal_low: float = -0.5, goal_high: float = 0.5, horizon: int = 100) -> None:
        if not (np.isfinite(goal_low) and np.isfinite(goal_high) and goal_low < goal_high):
            raise ValueError(f"{self.name}: need finite goal_low < goal_high, got goal_low={goal_low!r}, "
                             f"goal_high={goal_high!r}")
        check_int(self.name, "horizon", horizon, 1)
        self.goal_low, self.goal_high, self.horizon = float(goal_low), float(goal_high), int(horizon)

    def _sample(self, n: int, rng: np.random.Generator) -> list[NavigationTask]:
        goals = rng.uniform(self.goal_low, self.goal_high, size=(n, 2))
        return [NavigationTask((float(x), float(y))) for x, y in goals]

    def split_coordinates(self, tasks):
        g = np.array([t.goal for t in tasks], dtype=np.float64)
        return (g - self.goal_low) / (self.goal_high - self.goal_low)

    def _check(self, task: NavigationTask) -> None:
        if len(task.goal) != 2:
            raise ValueError(f"{self.name}: goal must have 2 coordinates, got {task.goal!r}")
        for name, v in zip(("goal[0]", "goal[1]"), task.goal, strict=True):
            check_range(name, v, self.goal_low, self.goal_high, self.name)

    def make_env(self, **kwargs: Any) -> Navigation2DEnv:
        return Navigation2DEnv(goal_low=self.goal_low, goal_high=self.goal_high, horizon=self.horizon,
                               **kwargs)

    def make_batched(self, num_tasks: int, num_envs: int, **kwargs: Any) -> BatchedNavigation2D:
        return BatchedNavigation2D(self, num_tasks, num_envs, **kwargs)


class Navigation2DEnv(MetaEnvMixin, gym.Env):
    """Gymnasium 2D navigation; ``info["distance"]`` is the distance to the goal after the step."""

    metadata = {"render_modes": []}

    def __init__(self, goal_low: float = -0.5, goal_high: float = 0.5, horizon: int = 100,
                 task: NavigationTask | None = None) -> None:
        self.family = Navigation2DFamily(goal_low, goal_high, horizon)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-MAX_SPEED, MAX_SPEED, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2, dtype=np.float32)
        self._t = 0
        if task is not None:
            self.set_task(task)

    def _on_task_set(self, task: NavigationTask) -> None:
        self._goal = np.asarray(task.goal, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ensure_task(options)
        self._pos = np.zeros(2, dtype=np.float32)
        self._t = 0
        return self._pos.copy(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -MAX_SPEED, MAX_SPEED)
        self._pos = (self._pos + a).astype(np.float32)
        d = self._pos - self._goal
        dist = np.sqrt(d[0] * d[0] + d[1] * d[1])  # float32 arithmetic, as in the batched env
        terminated = bool(np.abs(d).max() < GOAL_TOLERANCE)
        self._t += 1
        truncated = self._t >= self.family.horizon
        return self._pos.copy(), -float(dist), terminated, truncated, {"distance": float(dist)}


class BatchedNavigation2D(BatchedEnv):
    """``[num_tasks, num_envs]`` points in torch. Shapes: goals ``[K, 1, 2]``, positions ``[K, E, 2]``;
    ``step(actions [K, E, 2])``."""

    def __init__(self, family: Navigation2DFamily, num_tasks: int, num_envs: int,
                 device: torch.device | str = "cpu", seed: int | None = None) -> None:
        self.observation_shape = (2,)
        self.action_dim = 2
        super().__init__(family, num_tasks, num_envs, family.horizon, device, seed)
        self.pos = torch.zeros(*self.batch_shape, 2, device=self.device)

    def _load_tasks(self, tasks: list[NavigationTask]) -> None:
        self.goals = torch.tensor([t.goal for t in tasks], dtype=torch.float32, device=self.device)[:, None]

    def reset(self, mask: Tensor | None = None) -> Tensor:
        self._require_tasks()
        m = self._full_mask(mask)
        self.pos[m] = 0.0
        self.steps[m] = 0
        return self.pos.clone()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a = self._check_actions(actions).float().clamp(-MAX_SPEED, MAX_SPEED)
        self.pos = self.pos + a
        d = self.pos - self.goals
        dist = torch.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])
        terminated = d.abs().amax(-1) < GOAL_TOLERANCE
        truncated = self._advance_time()
        return self.pos.clone(), -dist, terminated, truncated
