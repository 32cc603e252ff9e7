"""The one container for experience that every sampler fills and every algorithm reads.

Experience is stored *time-major* and *padded*: a tensor of shape ``[T, *B, ...]`` where ``T`` is the
number of time steps and ``B`` is one or more batch dimensions. A plain rollout uses ``B = (num_envs,)``;
a meta-batch sampler uses ``B = (num_tasks, num_episodes)`` so that per-task computations (MAML's inner
step, a per-task baseline) can ``torch.func.vmap`` over the task dimension.

Two kinds of content share the layout:

* **whole episodes** (MAML, REINFORCE): each column holds one episode from its first step; steps after the
  episode ended are padding, with ``mask == 0``;
* **fixed-length rollouts** (PPO, RL²): every step is real (``mask == 1``) and episodes may end and restart
  inside a column; ``terminated | truncated`` marks the boundaries.

``next_observations[t]`` is the observation *after* step ``t``: at an episode boundary it is the true final
observation (before any reset), which is what a critic must bootstrap from when the episode was
*truncated* by a time limit. (Bootstrapping from the reset observation is a common silent bug.)

It lives at the top of the package because both layers fill it: the environments' samplers
(:mod:`meta_rl_lessons.envs.sampler`) and the RL code (:mod:`meta_rl_lessons.rl.sampling`, which also
re-exports it as ``meta_rl_lessons.rl.batch.EpisodeBatch``). ``envs/`` imports nothing from ``rl/``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["EpisodeBatch"]


@dataclass
class EpisodeBatch:
    """Padded, time-major experience. Shapes (``T`` steps, ``*B`` batch dimensions):

    =====================  ==========================  ================================================
    field                  shape                       meaning
    =====================  ==========================  ================================================
    ``observations``       ``[T, *B, *obs_shape]``     observation at which the action was taken
    ``actions``            ``[T, *B, *act_shape]``     action taken (``[T, *B]`` for discrete actions)
    ``rewards``            ``[T, *B]``                 reward received for that action
    ``next_observations``  ``[T, *B, *obs_shape]``     observation after the step (pre-reset at ends)
    ``terminated``         ``[T, *B]`` bool            the MDP reached a terminal state at this step
    ``truncated``          ``[T, *B]`` bool            a time limit cut the episode at this step
    ``mask``               ``[T, *B]`` float           1.0 for real steps, 0.0 for padding
    ``log_probs``          ``[T, *B]`` or ``None``     log-probability of the action under the
                                                       sampling policy (for importance ratios)
    =====================  ==========================  ================================================

    All tensors live on one device. Padding entries hold zeros (never NaN), so masked sums are safe.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminated: Tensor
    truncated: Tensor
    mask: Tensor
    log_probs: Tensor | None = None

    def __post_init__(self) -> None:
        lead = tuple(self.rewards.shape)
        if len(lead) < 2:
            raise ValueError(
                f"rewards must have shape [T, *B] with at least one batch dimension, got {tuple(lead)}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if not isinstance(value, Tensor):
                raise TypeError(f"EpisodeBatch.{f.name} must be a torch.Tensor, got {type(value).__name__}")
            if tuple(value.shape[: len(lead)]) != lead:
                raise ValueError(
                    f"EpisodeBatch.{f.name} has shape {tuple(value.shape)}; its leading dimensions must "
                    f"equal rewards' [T, *B] = {lead}"
                )
            if value.device != self.rewards.device:
                raise ValueError(
                    f"EpisodeBatch.{f.name} is on {value.device} but rewards are on {self.rewards.device}; "
                    "all fields must share one device"
                )

    # ------------------------------------------------------------------ shape helpers
    @property
    def horizon(self) -> int:
        """``T``, the number of (padded) time steps."""
        return self.rewards.shape[0]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``B``, the batch dimensions after time."""
        return tuple(self.rewards.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.rewards.device

    @property
    def dones(self) -> Tensor:
        """``terminated | truncated``: the step at which an episode ended, ``[T, *B]`` bool."""
        return self.terminated | self.truncated

    @property
    def num_steps(self) -> int:
        """Number of real (unpadded) environment steps in the batch."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> Tensor:
        """Undiscounted return of each column, ``[*B]``.

        For whole-episode batches this is the episode return; for fixed-length rollouts it is the sum of
        rewards in the column, which spans several episodes (use the sampler's episode statistics there).
        """
        return (self.rewards * self.mask).sum(dim=0)

    def to(self, device: torch.device | str) -> EpisodeBatch:
        """A copy with every tensor moved to ``device``."""
        return self.map(lambda x: x.to(device))

    def map(self, fn) -> EpisodeBatch:
        """Apply ``fn`` to every tensor field (e.g. indexing a task: ``batch.map(lambda x: x[:, i])``)."""
        return replace(
            self,
            **{f.name: (fn(getattr(self, f.name)) if getattr(self, f.name) is not None else None)
               for f in fields(self)},
        )

    def task(self, index: int) -> EpisodeBatch:
        """The sub-batch of one task when ``B = (num_tasks, num_episodes)``: ``[T, num_episodes, ...]``."""
        if len(self.batch_shape) < 2:
            raise ValueError(
                f"task() needs batch dimensions (num_tasks, num_episodes, ...), got {self.batch_shape}"
            )
        return self.map(lambda x: x[:, index])

    def flatten_batch(self) -> EpisodeBatch:
        """Merge all batch dimensions into one: ``[T, *B, ...] -> [T, prod(B), ...]``."""
        nb = len(self.batch_shape)
        return self.map(lambda x: x.reshape(x.shape[0], -1, *x.shape[1 + nb:]))
