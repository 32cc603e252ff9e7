r"""RL² trials: several episodes on one task, with the previous action, reward and done flag observed.

RL² (Duan et al. 2016) feeds a recurrent policy, at every step :math:`t`, the tuple
:math:`(s_t, a_{t-1}, r_{t-1}, d_{t-1})` and keeps its hidden state across the episodes of a *trial* (``n``
episodes on one task), so it can learn to explore in the first episodes and exploit in the later ones.
The augmented observation layout, for both the gymnasium wrapper and the batched version, is::

    [ obs (obs_dim) | previous action (one-hot num_actions, or act_dim) | previous reward (1) | done (1) ]

* ``previous action`` and ``previous reward`` are zero at the first step of a trial;
* ``done`` is 1.0 on the first observation of every episode after the first one in the trial (the previous
  step ended an episode), 0.0 otherwise;
* an inner episode that ends inside a trial is reset immediately (same task), and the trial continues;
  the wrapper reports ``terminated``/``truncated`` only when the trial's last episode ends.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor


def _action_part_size(space: gym.Space) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0])
    raise TypeError(f"RL² needs a Discrete or 1-D Box action space, got {space}")


class RL2Wrapper(gym.Wrapper):
    """Turn a meta-RL gymnasium env into RL² trials of ``episodes_per_trial`` episodes.

    Args:
        env: an env of this package (it has ``set_task`` and ``family``), 1-D Box observations.
        episodes_per_trial: ``n``, episodes per trial (one task per trial).
        resample_task: draw a new task from the family at each ``reset`` (unless ``options["task"]``).
        split: which split the resampled tasks come from (``"train"``, ``"test"`` or ``None``).
    """

    def __init__(self, env: gym.Env, episodes_per_trial: int, resample_task: bool = True,
                 split: str | None = "train") -> None:
        super().__init__(env)
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        if not (isinstance(env.observation_space, spaces.Box) and len(env.observation_space.shape) == 1):
            raise TypeError(f"RL² needs a 1-D Box observation space, got {env.observation_space}")
        self.episodes_per_trial = int(episodes_per_trial)
        self.resample_task, self.split = resample_task, split
        self.obs_dim = env.observation_space.shape[0]
        self.discrete = isinstance(env.action_space, spaces.Discrete)
        self.act_size = _action_part_size(env.action_space)
        size = self.obs_dim + self.act_size + 2
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self._episode = 0

    def _augment(self, obs, action, reward: float, done: bool) -> np.ndarray:
        out = np.zeros(self.observation_space.shape, dtype=np.float32)
        out[: self.obs_dim] = obs
        if action is not None:
            if self.discrete:
                out[self.obs_dim + int(action)] = 1.0
            else:
                out[self.obs_dim: self.obs_dim + self.act_size] = action
        out[-2] = reward
        out[-1] = float(done)
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        base = self.env.unwrapped
        if seed is not None:
            self.env.reset(seed=seed)
        opts = dict(options or {})
        if "task" not in opts and (self.resample_task or base.get_task() is None):
            opts["task"] = base.family.sample_tasks(1, base.np_random, split=self.split)[0]
        obs, info = self.env.reset(options=opts)
        self._episode = 0
        return self._augment(obs, None, 0.0, False), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self._episode += 1
            info = {**info, "episode_done": True}
            if self._episode < self.episodes_per_trial:
                obs, _ = self.env.reset()
                return self._augment(obs, action, reward, True), reward, False, False, info
        return self._augment(obs, action, reward, False), reward, terminated, truncated, info


class RL2BatchedEnv:
    """The batched counterpart of :class:`RL2Wrapper` for the pure-torch batched envs.

    Observations ``[K, E, obs_dim + act_size + 2]`` with the same layout; a trial ends (``terminated`` or
    ``truncated``) when a copy has finished ``episodes_per_trial`` episodes. Tasks are set with
    ``set_tasks`` (one per row) and stay fixed across trials until changed.
    """

    def __init__(self, env: Any, episodes_per_trial: int) -> None:
        self.env = env
        self.episodes_per_trial = int(episodes_per_trial)
        self.num_tasks, self.num_envs, self.device = env.num_tasks, env.num_envs, env.device
        self.num_actions, self.action_dim = env.num_actions, env.action_dim
        self.act_size = env.num_actions if env.num_actions is not None else env.action_dim
        self.obs_dim = env.observation_shape[0]
        self.observation_shape = (self.obs_dim + self.act_size + 2,)
        self.max_episode_steps = env.max_episode_steps * self.episodes_per_trial
        self.episodes = torch.zeros(env.batch_shape, dtype=torch.long, device=env.device)
        self.family = env.family

    @property
    def batch_shape(self) -> tuple[int, int]:
        return self.env.batch_shape

    def set_tasks(self, tasks) -> None:
        self.env.set_tasks(tasks)

    def seed(self, seed: int | None = None) -> None:
        self.env.seed(seed)

    def generators(self) -> dict[str, Any]:
        """The wrapped env's random generators (the wrapper draws none of its own)."""
        return self.env.generators()

    def _augment(self, obs: Tensor, action: Tensor | None, reward: Tensor, done: Tensor) -> Tensor:
        if action is None:
            a = torch.zeros(*self.batch_shape, self.act_size, device=self.device)
        elif self.num_actions is not None:
            a = torch.nn.functional.one_hot(action.long(), self.num_actions).float()
        else:
            a = action.float()
        return torch.cat([obs.float(), a, reward.float().unsqueeze(-1), done.float().unsqueeze(-1)], -1)

    def reset(self, mask: Tensor | None = None) -> Tensor:
        obs = self.env.reset(mask)
        if mask is None:
            self.episodes.zero_()
        else:
            self.episodes[mask] = 0
        zeros = torch.zeros(self.batch_shape, device=self.device)
        return self._augment(obs, None, zeros, zeros)

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        obs, reward, terminated, truncated = self.env.step(actions)
        done = terminated | truncated
        self.episodes += done.long()
        trial_end = done & (self.episodes >= self.episodes_per_trial)
        restart = done & ~trial_end
        if bool(restart.any()):
            fresh = self.env.reset(restart)
            obs = torch.where(restart.view(*self.batch_shape, *([1] * (obs.dim() - 2))), fresh, obs)
        aug = self._augment(obs, actions, reward, restart)
        return aug, reward, terminated & trial_end, truncated & trial_end
