"""Batched environments: ``num_tasks x num_envs`` copies stepped together, one tensor operation per step.

Every batched environment (pure torch for the cheap families, MuJoCo for locomotion) has this interface:

=============================  ====================================================================
call                           returns (``K`` = ``num_tasks``, ``E`` = ``num_envs``)
=============================  ====================================================================
``env.set_tasks(tasks)``       one task per row; ``len(tasks) == K``
``env.seed(seed)``             re-seeds the environment's own random generator
``env.reset(mask=None)``       observations ``[K, E, *obs_shape]``; with a ``[K, E]`` bool ``mask``
                               only those copies are reset (the others keep their state)
``env.step(actions)``          ``(obs [K, E, *obs_shape], reward [K, E], terminated [K, E],
                               truncated [K, E])``; ``actions`` is ``[K, E, act_dim]`` (continuous)
                               or ``[K, E]`` integer (discrete)
``env.generators()``           the environment's random generators by name (the live objects), for
                               a sampler's ``state_dict``
=============================  ====================================================================

There is no automatic reset: after ``terminated | truncated`` a copy must be reset by the caller (the
meta-batch sampler collects whole episodes; the RL² wrapper resets finished episodes inside a trial).
``truncated`` becomes true when a copy has taken ``max_episode_steps`` steps since its reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from .base import TaskFamily


class BatchedEnv:
    """Base class of the pure-torch batched environments (state ``[num_tasks, num_envs, ...]``).

    Attributes:
        observation_shape: shape of one observation.
        action_dim: size of a continuous action, or ``None`` for discrete actions.
        num_actions: number of discrete actions, or ``None`` for continuous actions.
    """

    observation_shape: tuple[int, ...]
    action_dim: int | None = None
    num_actions: int | None = None

    def __init__(
        self,
        family: TaskFamily,
        num_tasks: int,
        num_envs: int,
        max_episode_steps: int,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        if num_tasks < 1 or num_envs < 1:
            raise ValueError(f"num_tasks and num_envs must be >= 1, got {num_tasks} and {num_envs}")
        self.family = family
        self.num_tasks = int(num_tasks)
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.seed(seed)
        self.tasks: list[Any] | None = None
        self.steps = torch.zeros(self.batch_shape, dtype=torch.long, device=self.device)

    @property
    def batch_shape(self) -> tuple[int, int]:
        return (self.num_tasks, self.num_envs)

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None

    def seed(self, seed: int | None = None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def generators(self) -> dict[str, Any]:
        """The random generators the environment draws from (resets, stochastic rewards and transitions)."""
        return {"env": self.generator}

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} tasks (one per row), got {len(tasks)}")
        self.tasks = [self.family.validate(t) for t in tasks]
        self._load_tasks(self.tasks)

    def _load_tasks(self, tasks: list[Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _require_tasks(self) -> None:
        if self.tasks is None:
            raise RuntimeError(f"{type(self).__name__}: call set_tasks(tasks) before reset()/step()")

    def _full_mask(self, mask: Tensor | None) -> Tensor:
        if mask is None:
            return torch.ones(self.batch_shape, dtype=torch.bool, device=self.device)
        if tuple(mask.shape) != self.batch_shape:
            raise ValueError(f"reset mask must have shape {self.batch_shape}, got {tuple(mask.shape)}")
        return mask.to(device=self.device, dtype=torch.bool)

    def _check_actions(self, actions: Tensor) -> Tensor:
        want = self.batch_shape if self.discrete else (*self.batch_shape, self.action_dim)
        if tuple(actions.shape) != want:
            raise ValueError(f"{type(self).__name__}.step: actions must have shape {want}, got "
                             f"{tuple(actions.shape)}")
        return actions.to(self.device)

    def _advance_time(self) -> Tensor:
        """Count one step for every copy; return ``truncated [K, E]``."""
        self.steps += 1
        return self.steps >= self.max_episode_steps

    def reset(self, mask: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


def single_spaces(env: Any) -> tuple[spaces.Box, spaces.Space]:
    """The gymnasium spaces of *one* copy of a batched env: ``(Box(obs_shape), Discrete(num_actions) or
    Box(action_dim))``, for :func:`meta_rl_lessons.rl.policies.make_policy` (only the shapes are meaningful:
    the bounds are infinite)."""
    obs = spaces.Box(-np.inf, np.inf, shape=(int(np.prod(env.observation_shape)),), dtype=np.float32)
    if getattr(env, "num_actions", None):
        return obs, spaces.Discrete(int(env.num_actions))
    return obs, spaces.Box(-np.inf, np.inf, shape=(int(env.action_dim),), dtype=np.float32)
