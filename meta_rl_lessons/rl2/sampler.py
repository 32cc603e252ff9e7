r"""The RL² trial sampler: many trials in parallel, each on its own task, several episodes per trial.

A **trial** is ``episodes_per_trial`` episodes on one task with one uninterrupted hidden state. The sampler
runs ``num_tasks x trials_per_task`` trials at once on a pure-torch batched environment wrapped in
:class:`~meta_rl_lessons.envs.rl2.RL2BatchedEnv` (which appends the previous action, reward and done flag
and resets finished inner episodes on the same task), with **one policy call per step for all trials**.
Trials whose environment ends early (2D navigation reaching its goal) are padded with ``mask == 0``.

Output: a :class:`TrialBatch`, time-major ``[T, N]`` with ``N = num_tasks * trials_per_task`` trials,
``T`` the longest trial. In its :class:`~meta_rl_lessons.batch.EpisodeBatch`, ``terminated`` /
``truncated`` mark the end of each *trial* (as reported by the environment); the ends of inner episodes
are in ``TrialBatch.episode_ends``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from meta_rl_lessons.batch import EpisodeBatch
from meta_rl_lessons.envs.base import TaskFamily
from meta_rl_lessons.envs.rl2 import RL2BatchedEnv
from meta_rl_lessons.rl2.policy import RL2Policy

__all__ = ["TrialBatch", "TrialSampler"]


@dataclass
class TrialBatch:
    r"""Experience of ``N`` trials. Shapes (``T`` steps):

    ====================  ===========  ==============================================================
    field                 shape        meaning
    ====================  ===========  ==============================================================
    ``batch``             ``[T, N]``   observations (augmented), actions, rewards, trial-end flags, mask,
                                       log-probabilities under the sampling policy
    ``values``            ``[T, N]``   :math:`V(h_t)` under the sampling policy
    ``episode_ends``      ``[T, N]``   an inner episode ended at step ``t`` (the trial's last step too)
    ``expected_rewards``  ``[T, N]``   the mean reward of the action taken (:math:`p_a` for bandits,
                                       :math:`\mu(s, a)` for MDPs), or ``None`` if the env has none
    ``tasks``             ``N``        the task of each trial
    ====================  ===========  ==============================================================
    """

    batch: EpisodeBatch
    values: Tensor
    episode_ends: Tensor
    expected_rewards: Tensor | None
    tasks: list[Any]

    @property
    def num_trials(self) -> int:
        return self.batch.rewards.shape[1]

    def trial_returns(self) -> Tensor:
        """Total (undiscounted) reward of each trial, ``[N]``."""
        return self.batch.episode_returns()

    def episode_returns(self) -> Tensor:
        """Total reward of each inner episode, ``[episodes_per_trial, N]`` (trials of equal episode count)."""
        ends = self.episode_ends & self.batch.mask.bool()
        idx = (ends.long().cumsum(0) - ends.long())  # episode index of each step
        n_ep = int(ends.sum(0).max().item())
        out = torch.zeros(n_ep, self.num_trials, device=self.batch.device)
        out.scatter_add_(0, idx.clamp_max(n_ep - 1), self.batch.rewards * self.batch.mask)
        return out


class TrialSampler:
    """Sample RL² trials on a task family's batched environment.

    Args:
        family: a task family with a batched environment (``BernoulliBandit``, ``TabularMDP``,
            ``Navigation2D``).
        num_tasks: tasks per call (rows of the batched env).
        episodes_per_trial: ``n``.
        trials_per_task: trials per task (columns); 1 in RL² training, where every trial gets a new task.
        device: where the environment and the batch live.
        seed: seeds the task draws and the environment's random generator.
        split: task split to draw from (``"train"``, ``"test"`` or ``None``: the whole distribution).
    """

    def __init__(self, family: TaskFamily, num_tasks: int, episodes_per_trial: int, trials_per_task: int = 1,
                 device: torch.device | str = "cpu", seed: int | None = None,
                 split: str | None = None) -> None:
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        self.family = family
        self.device = torch.device(device)
        self.base = family.make_batched(num_tasks, trials_per_task, device=self.device, seed=seed)
        self.env = RL2BatchedEnv(self.base, episodes_per_trial)
        self.rng = np.random.default_rng(seed)
        self.split = split
        self.num_tasks, self.trials_per_task = int(num_tasks), int(trials_per_task)
        self.total_steps = 0

    @property
    def num_trials(self) -> int:
        return self.num_tasks * self.trials_per_task

    def state_dict(self) -> dict[str, Any]:
        """What one :meth:`sample` passes on to the next (``weights_only``-safe): the task generator's state,
        the environment's generators' states and the step count.

        Nothing else carries over: every call sets the tasks and resets every copy, and runs the trials to
        their end. Returns ``{"tasks": ..., "env": {name: ...}, "total_steps": int}``.
        """
        from meta_rl_lessons.serialization import generator_state

        return {"tasks": generator_state(self.rng),
                "env": {name: generator_state(g) for name, g in self.env.generators().items()},
                "total_steps": int(self.total_steps)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`, on a sampler built for the same family and sizes.

        Raises:
            ValueError: the state names other environment generators than this sampler has.
        """
        from meta_rl_lessons.serialization import set_generator_state

        gens, saved = self.env.generators(), state["env"]
        if set(saved) != set(gens):
            raise ValueError(f"the sampler state has environment generators {sorted(saved)}, this sampler "
                             f"has {sorted(gens)}")
        set_generator_state(self.rng, state["tasks"])
        for name, g in gens.items():
            set_generator_state(g, saved[name])
        self.total_steps = int(state["total_steps"])

    def sample_tasks(self) -> list[Any]:
        """``num_tasks`` fresh tasks from the sampler's generator."""
        return self.family.sample_tasks(self.num_tasks, self.rng, split=self.split)

    @torch.no_grad()
    def sample(self, policy: RL2Policy, tasks: Sequence[Any] | None = None,
               deterministic: bool = False) -> TrialBatch:
        """Run one trial per row and column. ``tasks``: ``num_tasks`` tasks (default: fresh ones).

        ``deterministic=True`` takes the most likely action (categorical) or the mean (Gaussian).
        """
        tasks = list(self.sample_tasks() if tasks is None else tasks)
        self.env.set_tasks(tasks)
        K, E = self.env.batch_shape
        obs = self.env.reset()
        h = policy.initial_state(K, E)
        alive = torch.ones(K, E, dtype=torch.bool, device=self.device)
        has_expected = hasattr(self.base, "expected_reward")
        rec: dict[str, list[Tensor]] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc", "mask",
                                                        "logp", "val", "ep_end", "exp")}
        for _ in range(self.env.max_episode_steps):
            dist, v, h = policy.step(obs, h)  # one policy call for all K x E trials
            if deterministic:
                a = dist.probs.argmax(-1) if policy.discrete else dist.mean
            else:
                a = dist.sample()
            if has_expected:
                rec["exp"].append(self.base.expected_reward(a).float())
            next_obs, r, term, trunc = self.env.step(a)
            trial_end = (term | trunc) & alive
            rec["obs"].append(obs)
            rec["act"].append(a)
            rec["rew"].append(r.float() * alive)
            rec["next"].append(next_obs)
            rec["term"].append(term & alive)
            rec["trunc"].append(trunc & alive)
            rec["mask"].append(alive.float())
            rec["logp"].append(dist.log_prob(a))
            rec["val"].append(v)
            rec["ep_end"].append(((next_obs[..., -1] > 0.5) & alive) | trial_end)
            self.total_steps += int(alive.sum().item())
            alive = alive & ~trial_end
            obs = next_obs
            if not bool(alive.any()):
                break

        def stack(key: str) -> Tensor:
            x = torch.stack(rec[key])
            return x.reshape(x.shape[0], K * E, *x.shape[3:])

        batch = EpisodeBatch(
            observations=stack("obs"), actions=stack("act"), rewards=stack("rew"),
            next_observations=stack("next"), terminated=stack("term"), truncated=stack("trunc"),
            mask=stack("mask"), log_probs=stack("logp"),
        )
        expected = stack("exp") * batch.mask if has_expected else None
        trial_tasks = [t for t in tasks for _ in range(E)]
        return TrialBatch(batch, stack("val"), stack("ep_end"), expected, trial_tasks)
