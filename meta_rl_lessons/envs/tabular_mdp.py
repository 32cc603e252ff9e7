r"""Random tabular MDPs, the second RL² benchmark (Duan et al. 2016, section 3.2.2).

A task is an MDP with :math:`S = 10` states and :math:`A = 5` actions. Its transition distributions and mean
rewards are drawn once per task:

.. math::
   P(\cdot \mid s, a) \sim \mathrm{Dirichlet}(\mathbf{1}_S), \qquad \mu(s, a) \sim \mathcal{N}(1, 1),

and each step pays a Gaussian reward with unit variance:

.. math:: r_t \sim \mathcal{N}\big(\mu(s_t, a_t),\, 1\big), \qquad s_{t+1} \sim P(\cdot \mid s_t, a_t).

With ``reward_noise="bernoulli"`` a step instead pays 1 with probability :math:`\mu(s_t, a_t)` and 0 otherwise
(means drawn uniformly on [0, 1]): a reward with finitely many values, so that every batch of a small MDP can
be enumerated (the exact meta-gradients of :mod:`meta_rl_lessons.maml.exact`).

Every episode starts in state 0 and lasts ``episode_length = 10`` steps (truncated, never terminated); a
trial is ``n`` episodes on one MDP (:class:`~meta_rl_lessons.envs.rl2.RL2Wrapper`). Observations are the
one-hot state, shape ``(S,)``. :func:`optimal_value` solves a task exactly by finite-horizon value iteration,
the reference against which a meta-learner's episode return can be read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from .base import MetaEnvMixin, TaskFamily, check_int
from .batched import BatchedEnv

#: Reward distributions of :class:`TabularMDPFamily` around the means :math:`\mu(s, a)`.
REWARD_NOISE: tuple[str, ...] = ("gaussian", "bernoulli")


@dataclass(frozen=True, eq=False)
class MDPTask:
    """``transitions [S, A, S]`` (rows sum to 1) and ``reward_means [S, A]``; arrays are read-only."""

    transitions: np.ndarray
    reward_means: np.ndarray

    def __post_init__(self) -> None:
        for name in ("transitions", "reward_means"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, MDPTask) and np.array_equal(self.transitions, other.transitions)
                and np.array_equal(self.reward_means, other.reward_means))

    def __hash__(self) -> int:
        return hash((self.transitions.tobytes(), self.reward_means.tobytes()))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


class TabularMDPFamily(TaskFamily):
    """Random MDPs; split coordinates :math:`\\Phi(\\mu(0,0) - 1), \\Phi(\\mu(0,1) - 1)` (uniform)."""

    name = "TabularMDP"
    task_type = MDPTask

    def __init__(self, num_states: int = 10, num_actions: int = 5, episode_length: int = 10,
                 reward_noise: str = "gaussian") -> None:
        check_int(self.name, "num_states", num_states, 2)
        check_int(self.name, "num_actions", num_actions, 2)
        check_int(self.name, "episode_length", episode_length, 1)
        if reward_noise not in REWARD_NOISE:
            raise ValueError(f"{self.name}: unknown reward_noise {reward_noise!r}; allowed: "
                             f"{', '.join(REWARD_NOISE)}")
        self.num_states, self.num_actions = int(num_states), int(num_actions)
        self.episode_length = int(episode_length)
        self.reward_noise = reward_noise

    def _sample(self, n: int, rng: np.random.Generator) -> list[MDPTask]:
        S, A = self.num_states, self.num_actions
        P = rng.dirichlet(np.ones(S), size=(n, S, A))
        if self.reward_noise == "bernoulli":
            mu = rng.uniform(0.0, 1.0, size=(n, S, A))
        else:
            mu = rng.normal(1.0, 1.0, size=(n, S, A))
        return [MDPTask(P[i], mu[i]) for i in range(n)]

    def split_coordinates(self, tasks):
        mu = np.array([t.reward_means[0, :2] for t in tasks], dtype=np.float64)
        return mu if self.reward_noise == "bernoulli" else _normal_cdf(mu - 1.0)

    def _check(self, task: MDPTask) -> None:
        S, A = self.num_states, self.num_actions
        if task.transitions.shape != (S, A, S) or task.reward_means.shape != (S, A):
            raise ValueError(
                f"{self.name}: transitions must be [S, A, S] = {(S, A, S)} and reward_means [S, A] = "
                f"{(S, A)}; got {task.transitions.shape} and {task.reward_means.shape}"
            )
        P = task.transitions
        if not np.all(np.isfinite(P)) or P.min() < 0 or not np.allclose(P.sum(-1), 1.0, atol=1e-6):
            raise ValueError(f"{self.name}: every transitions[s, a] must be a probability vector "
                             f"(non-negative, sums to 1); got row sums in "
                             f"[{P.sum(-1).min()}, {P.sum(-1).max()}]")
        if not np.all(np.isfinite(task.reward_means)):
            raise ValueError(f"{self.name}: reward_means must be finite")
        mu = task.reward_means
        if self.reward_noise == "bernoulli" and (mu.min() < 0 or mu.max() > 1):
            raise ValueError(f"{self.name}: with reward_noise='bernoulli' every reward mean is a probability "
                             f"in [0, 1]; got values in [{mu.min()}, {mu.max()}]")

    def make_env(self, **kwargs: Any) -> TabularMDPEnv:
        return TabularMDPEnv(self.num_states, self.num_actions, self.episode_length,
                             reward_noise=self.reward_noise, **kwargs)

    def make_batched(self, num_tasks: int, num_envs: int, **kwargs: Any) -> BatchedTabularMDP:
        return BatchedTabularMDP(self, num_tasks, num_envs, **kwargs)


def optimal_value(task: MDPTask, horizon: int = 10, start_state: int = 0) -> float:
    r"""Expected return of the optimal policy over ``horizon`` steps, by backward value iteration:

    .. math::
       V_H \equiv 0, \quad Q_t(s, a) = \mu(s, a) + \sum_{s'} P(s' \mid s, a)\, V_{t+1}(s'), \quad
       V_t(s) = \max_a Q_t(s, a).
    """
    V = np.zeros(task.transitions.shape[0])
    for _ in range(horizon):
        V = (task.reward_means + task.transitions @ V).max(axis=1)
    return float(V[start_state])


def random_policy_value(task: MDPTask, horizon: int = 10, start_state: int = 0) -> float:
    """Expected return of the uniformly random policy (same recursion with a mean over actions)."""
    V = np.zeros(task.transitions.shape[0])
    for _ in range(horizon):
        V = (task.reward_means + task.transitions @ V).mean(axis=1)
    return float(V[start_state])


class TabularMDPEnv(MetaEnvMixin, gym.Env):
    """Gymnasium tabular MDP: observation one-hot state ``(S,)`` float32, action ``Discrete(A)``.

    ``info["expected_reward"]`` is :math:`\\mu(s_t, a_t)`; ``info["state"]`` the new state index.
    """

    metadata = {"render_modes": []}

    def __init__(self, num_states: int = 10, num_actions: int = 5, episode_length: int = 10,
                 task: MDPTask | None = None, reward_noise: str = "gaussian") -> None:
        self.family = TabularMDPFamily(num_states, num_actions, episode_length, reward_noise)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(num_states,), dtype=np.float32)
        self.action_space = spaces.Discrete(num_actions)
        self._state, self._t = 0, 0
        if task is not None:
            self.set_task(task)

    def _on_task_set(self, task: MDPTask) -> None:
        self._cdf = np.cumsum(task.transitions, axis=-1)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.family.num_states, dtype=np.float32)
        obs[self._state] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ensure_task(options)
        self._state, self._t = 0, 0
        return self._obs(), {"state": 0}

    def step(self, action):
        a = int(action)
        if not self.action_space.contains(a):
            raise ValueError(f"action {action!r} is not in 0..{self.family.num_actions - 1}")
        mu = float(self._task.reward_means[self._state, a])
        if self.family.reward_noise == "bernoulli":
            reward = float(self.np_random.random() < mu)
        else:
            reward = mu + float(self.np_random.standard_normal())
        # Inverse-CDF sampling of s' ~ P(. | s, a), the same scheme as the batched env.
        u = self.np_random.random()
        nxt = int(np.sum(u >= self._cdf[self._state, a]))
        self._state = min(nxt, self.family.num_states - 1)
        self._t += 1
        truncated = self._t >= self.family.episode_length
        return self._obs(), reward, False, truncated, {"expected_reward": mu, "state": self._state}


class BatchedTabularMDP(BatchedEnv):
    """``[num_tasks, num_envs]`` tabular MDPs in torch.

    Shapes: cumulative transitions ``[K, S, A, S]``, reward means ``[K, S, A]``, state ``[K, E]`` long;
    observations one-hot ``[K, E, S]``; ``step(actions [K, E] long)``.
    """

    def __init__(self, family: TabularMDPFamily, num_tasks: int, num_envs: int,
                 device: torch.device | str = "cpu", seed: int | None = None) -> None:
        self.observation_shape = (family.num_states,)
        self.num_actions = family.num_actions
        super().__init__(family, num_tasks, num_envs, family.episode_length, device, seed)
        self.state = torch.zeros(self.batch_shape, dtype=torch.long, device=self.device)
        self._rows = torch.arange(self.num_tasks, device=self.device)[:, None]

    def _load_tasks(self, tasks: list[MDPTask]) -> None:
        P = torch.tensor(np.stack([t.transitions for t in tasks]), dtype=torch.float64, device=self.device)
        self.cdf = P.cumsum(-1)
        self.reward_means = torch.tensor(np.stack([t.reward_means for t in tasks]), dtype=torch.float32,
                                         device=self.device)

    def _obs(self) -> Tensor:
        return torch.nn.functional.one_hot(self.state, self.family.num_states).float()

    def reset(self, mask: Tensor | None = None) -> Tensor:
        self._require_tasks()
        m = self._full_mask(mask)
        self.state[m] = 0
        self.steps[m] = 0
        return self._obs()

    def expected_reward(self, actions: Tensor) -> Tensor:
        return self.reward_means[self._rows, self.state, actions.long()]

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        actions = self._check_actions(actions).long()
        mu = self.expected_reward(actions)
        if self.family.reward_noise == "bernoulli":
            u = torch.rand(self.batch_shape, generator=self.generator, device=self.device)
            reward = (u < mu).to(mu.dtype)
        else:
            reward = mu + torch.randn(self.batch_shape, generator=self.generator, device=self.device)
        cdf = self.cdf[self._rows, self.state, actions]  # [K, E, S]
        u = torch.rand(self.batch_shape, generator=self.generator, device=self.device, dtype=torch.float64)
        nxt = (u.unsqueeze(-1) >= cdf).sum(-1)
        self.state = nxt.clamp_max(self.family.num_states - 1)
        truncated = self._advance_time()
        return self._obs(), reward, torch.zeros_like(truncated), truncated
