r"""Bernoulli multi-armed bandits, the first RL² benchmark (Duan et al. 2016).

A task is a vector of arm means :math:`p \in [0, 1]^k`, drawn :math:`p_i \sim U[0, 1]` independently.
Pulling arm :math:`a` pays

.. math:: r \sim \mathrm{Bernoulli}(p_a), \qquad \mathbb{E}[r \mid a] = p_a .

In the paper an episode is one pull and a *trial* is ``n`` episodes on the same task. A bandit has no state,
so a trial of ``n`` one-pull episodes is the same process as one episode of ``n`` pulls: here an episode
lasts ``episode_length`` pulls (default 10, the paper's ``n = 10``; gymnasium's checker rejects
environments that always end after one step). ``episode_length=1`` with
:class:`~meta_rl_lessons.envs.rl2.RL2Wrapper` ``(episodes_per_trial=n)`` reproduces the paper's layout
literally. The observation carries no information (a constant ``[0.0]``): everything the agent learns comes
from the rewards it has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from .base import MetaEnvMixin, TaskFamily, check_int
from .batched import BatchedEnv


@dataclass(frozen=True)
class BanditTask:
    """Arm means ``p`` (length ``k``), each in ``[0, 1]``."""

    means: tuple[float, ...]


class BernoulliBanditFamily(TaskFamily):
    """``k``-armed Bernoulli bandits with means ``U[0, 1]``; split coordinates: the first two arm means."""

    name = "BernoulliBandit"
    task_type = BanditTask

    def __init__(self, num_arms: int = 5, episode_length: int = 10) -> None:
        check_int(self.name, "num_arms", num_arms, 2)
        check_int(self.name, "episode_length", episode_length, 1)
        self.num_arms = int(num_arms)
        self.episode_length = int(episode_length)

    def _sample(self, n: int, rng: np.random.Generator) -> list[BanditTask]:
        means = rng.uniform(0.0, 1.0, size=(n, self.num_arms))
        return [BanditTask(tuple(float(x) for x in row)) for row in means]

    def split_coordinates(self, tasks):
        return np.array([t.means[:2] for t in tasks], dtype=np.float64)

    def _check(self, task: BanditTask) -> None:
        if len(task.means) != self.num_arms:
            raise ValueError(f"{self.name}: task has {len(task.means)} arm means, the family has "
                             f"num_arms={self.num_arms}")
        bad = [m for m in task.means if not (0.0 <= m <= 1.0)]
        if bad:
            raise ValueError(f"{self.name}: arm means {bad} are outside the allowed range [0, 1]")

    def make_env(self, **kwargs: Any) -> BernoulliBanditEnv:
        return BernoulliBanditEnv(num_arms=self.num_arms, episode_length=self.episode_length, **kwargs)

    def make_batched(self, num_tasks: int, num_envs: int, **kwargs: Any) -> BatchedBernoulliBandit:
        return BatchedBernoulliBandit(self, num_tasks, num_envs, **kwargs)


class BernoulliBanditEnv(MetaEnvMixin, gym.Env):
    """Gymnasium Bernoulli bandit. Observation ``[0.0]`` (Box, shape ``(1,)``), action ``Discrete(k)``.

    ``info["expected_reward"]`` is :math:`p_a`, the mean of the pulled arm (for regret curves).
    """

    metadata = {"render_modes": []}

    def __init__(self, num_arms: int = 5, episode_length: int = 10, task: BanditTask | None = None) -> None:
        self.family = BernoulliBanditFamily(num_arms, episode_length)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(num_arms)
        self._t = 0
        if task is not None:
            self.set_task(task)

    def _on_task_set(self, task: BanditTask) -> None:
        self._means = np.asarray(task.means, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ensure_task(options)
        self._t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        a = int(action)
        if not self.action_space.contains(a):
            raise ValueError(f"arm {action!r} is not in 0..{self.family.num_arms - 1}")
        p = float(self._means[a])
        reward = float(self.np_random.random() < p)
        self._t += 1
        truncated = self._t >= self.family.episode_length
        return np.zeros(1, dtype=np.float32), reward, False, truncated, {"expected_reward": p}


class BatchedBernoulliBandit(BatchedEnv):
    """``[num_tasks, num_envs]`` Bernoulli bandits in torch: one ``torch.rand`` and one gather per step.

    Shapes: means ``[K, k]``; ``step(actions [K, E] long)`` returns rewards ``[K, E]`` in ``{0., 1.}``.
    """

    def __init__(self, family: BernoulliBanditFamily, num_tasks: int, num_envs: int,
                 device: torch.device | str = "cpu", seed: int | None = None) -> None:
        self.observation_shape = (1,)
        self.num_actions = family.num_arms
        super().__init__(family, num_tasks, num_envs, family.episode_length, device, seed)

    def _load_tasks(self, tasks: list[BanditTask]) -> None:
        self.means = torch.tensor([t.means for t in tasks], dtype=torch.float32, device=self.device)

    def _obs(self) -> Tensor:
        return torch.zeros(*self.batch_shape, 1, device=self.device)

    def reset(self, mask: Tensor | None = None) -> Tensor:
        self._require_tasks()
        self.steps[self._full_mask(mask)] = 0
        return self._obs()

    def expected_reward(self, actions: Tensor) -> Tensor:
        """:math:`p_a` for each copy, ``[K, E]``."""
        return torch.gather(self.means, 1, actions.long())

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        actions = self._check_actions(actions)
        p = self.expected_reward(actions)
        u = torch.rand(self.batch_shape, generator=self.generator, device=self.device)
        reward = (u < p).float()
        truncated = self._advance_time()
        return self._obs(), reward, torch.zeros_like(truncated), truncated
