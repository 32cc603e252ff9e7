"""The meta-batch sampler: whole episodes for many tasks at once, one batched policy call per step.

``MetaBatchSampler(family, num_tasks, num_episodes).sample(tasks, policy, params=None)`` runs
``num_episodes`` episodes on each of ``num_tasks`` tasks *together* and returns one
:class:`~meta_rl_lessons.batch.EpisodeBatch` with ``B = (num_tasks, num_episodes)``:

* cheap families (bandits, tabular MDPs, 2D navigation) step a pure-torch batched env on the sampler's
  device (CPU or GPU);
* MuJoCo families step :class:`~meta_rl_lessons.envs.mujoco_batched.BatchedMujocoEnv`: one ``MjData`` per
  copy, split over worker processes (or stepped in this process for small batches); the module docstring
  there gives the measurements behind this choice. With the family's ``physics="warp"`` they step
  :class:`~meta_rl_lessons.envs.warp_batched.WarpBatchedEnv` instead: all copies as MuJoCo Warp worlds on
  the sampler's device (a GPU), observations and rewards computed there.

At every step the policy is called **once** for all ``num_tasks x num_episodes`` observations
``[K, E, obs_dim]``: ``policy(obs)`` with shared parameters, or ``policy.per_task(obs, params)`` with
per-task parameters (MAML's adapted parameters, stacked with a leading task dimension). With MuJoCo worker
processes it is called once per half of the episodes instead, so that one half's physics runs while the
policy works on the other (:func:`_sample_pipelined`); the episodes are bit for bit the same. Any object
with that calling convention works (duck typing); it must return a ``torch.distributions.Distribution`` whose
``sample()`` has shape ``[K, E, act_dim]`` (continuous) or ``[K, E]`` (discrete).

Episodes are collected whole, without autoreset: every copy is reset at the start, steps after an episode
ends (termination, or truncation at the horizon) are padding with ``mask == 0``, and sampling stops as soon
as every episode has ended. This is the ``AutoresetMode.DISABLED`` semantics of gymnasium's vector envs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..batch import EpisodeBatch
from .base import TaskFamily


def _policy_device(policy: Any, default: torch.device) -> torch.device:
    try:
        return next(policy.parameters()).device
    except (AttributeError, StopIteration):
        return default


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Temporarily set ``torch.set_num_threads(n)`` (no-op for ``None``); restores the previous value."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: Up to this many observations per step, ``torch_threads="auto"`` samples with one torch thread.
SMALL_BATCH = 16384


def sample_episodes(env: Any, policy: Any, params: dict[str, Tensor] | None = None,
                    max_steps: int | None = None, torch_threads: int | str | None = "auto") -> EpisodeBatch:
    """Collect one whole episode per copy of a batched env (tasks already set).

    Args:
        env: a batched env (``reset``, ``step``, ``batch_shape``, ``max_episode_steps``).
        policy: ``policy(obs) -> Distribution``, and ``policy.per_task(obs, params)`` if ``params`` is given.
        params: per-task parameters, each tensor with a leading ``num_tasks`` dimension, or ``None``.
        max_steps: cut episodes at this many steps (marked truncated); default the env's horizon.
        torch_threads: torch CPU threads while sampling. ``"auto"``: 1 when the policy runs on the CPU on
            at most :data:`SMALL_BATCH` observations per step, else unchanged; ``None``: unchanged. The
            per-step tensors are small, and OpenMP's fork/join across threads costs more than it saves: on
            the 2-core machine, a policy call on 20 observations took 0.8 ms with 1 thread and 2.6-36 ms
            with 2 threads while other processes were busy (the previous setting is restored afterwards).

    Returns:
        An ``EpisodeBatch`` ``[T, K, E, ...]`` on the policy's device, with ``log_probs``; ``T`` is the
        length of the longest episode.
    """
    device = _policy_device(policy, env.device)
    if torch_threads == "auto":
        small = device.type == "cpu" and math.prod(env.batch_shape) <= SMALL_BATCH
        torch_threads = 1 if small else None
    with _torch_threads(torch_threads), torch.no_grad():
        return _sample(env, policy, params, int(max_steps or env.max_episode_steps), device)


def _check_log_prob(log_prob: Tensor, expected: tuple[int, ...]) -> None:
    got, expected = tuple(log_prob.shape), tuple(expected)
    if got != expected:
        raise ValueError(f"policy log_prob has shape {got}, expected {expected}: return a distribution with "
                         "batch shape [num_tasks, num_episodes] (e.g. Independent)")


class _Episodes:
    """The buffers ``[T, K, E, ...]`` of one batch of whole episodes, filled step by step, and which
    episodes are still running (``alive [K, E]``).

    :meth:`record` stores step ``t`` of the episodes ``cols`` (a slice of the ``E`` axis: all of them in
    the plain loop, one half in the pipelined one); steps of episodes that have ended are stored as zeros
    with ``mask == 0``.
    """

    def __init__(self, T: int, obs: Tensor, device: torch.device) -> None:
        K, E = obs.shape[:2]
        self.T = T
        self.obs = torch.zeros(T, *obs.shape, device=device)
        self.next_obs = torch.zeros_like(self.obs)
        self.rewards = torch.zeros(T, K, E, device=device)
        self.terminated = torch.zeros(T, K, E, dtype=torch.bool, device=device)
        self.truncated = torch.zeros_like(self.terminated)
        self.mask = torch.zeros(T, K, E, device=device)
        self.log_probs = torch.zeros(T, K, E, device=device)
        self.actions: Tensor | None = None  # shape and dtype from the first action
        self.alive = torch.ones(K, E, dtype=torch.bool, device=device)

    def record(self, t: int, cols: slice, obs: Tensor, next_obs: Tensor, action: Tensor, reward: Tensor,
               terminated: Tensor, truncated: Tensor, log_prob: Tensor) -> None:
        """Store step ``t`` of episodes ``[:, cols]`` (each argument ``[K, n, ...]``) and end those episodes
        that terminated or were truncated (the last step ``T - 1`` truncates every one still running)."""
        if self.actions is None:
            K, E = self.alive.shape
            self.actions = torch.zeros(self.T, K, E, *action.shape[2:], dtype=action.dtype,
                                       device=self.obs.device)
        if t == self.T - 1:
            truncated = truncated | ~terminated
        alive = self.alive[:, cols]
        live = alive.float()
        ones = lambda x: [1] * (x.dim() - 2)  # noqa: E731  broadcast live [K, n] over x's trailing dims
        lshape = live.view(*live.shape, *ones(obs))
        self.obs[t, :, cols] = obs * lshape
        self.next_obs[t, :, cols] = next_obs * lshape
        self.actions[t, :, cols] = action * live.view(*live.shape, *ones(action)).to(action.dtype)
        self.rewards[t, :, cols] = reward * live
        self.terminated[t, :, cols] = terminated & alive
        self.truncated[t, :, cols] = truncated & alive & ~terminated
        self.mask[t, :, cols] = live
        self.log_probs[t, :, cols] = log_prob * live
        self.alive[:, cols] = alive & ~(terminated | truncated)

    def batch(self, steps: int) -> EpisodeBatch:
        """The first ``steps`` steps as an :class:`EpisodeBatch`."""
        cut = slice(0, steps)
        return EpisodeBatch(
            observations=self.obs[cut], actions=self.actions[cut], rewards=self.rewards[cut],
            next_observations=self.next_obs[cut], terminated=self.terminated[cut],
            truncated=self.truncated[cut], mask=self.mask[cut], log_probs=self.log_probs[cut],
        )


def _sample(env: Any, policy: Any, params: dict[str, Tensor] | None, T: int,
            device: torch.device) -> EpisodeBatch:
    shape = env.batch_shape
    obs = env.reset().to(device)
    if getattr(env, "pipelines", False) and shape[1] >= 2:
        batch = _sample_pipelined(env, policy, params, T, device, obs)
        if batch is not None:
            return batch
    episodes = _Episodes(T, obs, device)
    everyone = slice(None)
    steps = 0
    for t in range(T):
        dist = policy(obs) if params is None else policy.per_task(obs, params)
        action = dist.sample()
        log_prob = dist.log_prob(action)
        _check_log_prob(log_prob, shape)
        if getattr(env, "skips_inactive", False):  # MuJoCo: no physics for finished episodes
            next_obs, reward, terminated, truncated = env.step(action.to(env.device),
                                                               active=episodes.alive.cpu())
        else:
            next_obs, reward, terminated, truncated = env.step(action.to(env.device))
        next_obs, reward = next_obs.to(device), reward.to(device)
        episodes.record(t, everyone, obs, next_obs, action, reward, terminated.to(device),
                        truncated.to(device), log_prob)
        obs = next_obs
        steps = t + 1
        if not bool(episodes.alive.any()):
            break
    return episodes.batch(steps)


def _gaussian(dist: Any) -> tuple[Tensor, Tensor] | None:
    """``(loc, scale)`` of a ``Normal`` or ``Independent(Normal)``, whose ``sample()`` is
    ``torch.normal(loc, scale)``, i.e. ``standard normal draws * scale + loc``; ``None`` otherwise."""
    base = dist.base_dist if isinstance(dist, torch.distributions.Independent) else dist
    if type(base) is not torch.distributions.Normal:
        return None
    return base.loc, base.scale


def _rows_agree(whole: Any, parts: list[Any], halves: tuple[slice, slice]) -> bool:
    """Whether the policy's Gaussian on the whole batch and on each half agree bit for bit, row by row
    (mean, scale and the log-density of a fixed action); ``False`` for other distributions.

    A matrix product's rows need not be bitwise independent of the other rows in the call: the library
    picks its kernel by shape, and kernels sum in different orders (seen on this project's CPU: a 64x64
    policy on the Ant's 105 inputs, 2 of 5 rows per task, differs from the whole batch in the last bits).
    The choice depends on the shapes only, not on the values, so what holds at the first step holds for
    the episode."""
    g_whole = _gaussian(whole)
    if g_whole is None:
        return False
    loc, scale = g_whole
    probe = loc + 0.5 * scale
    density = whole.log_prob(probe)
    for part, h in zip(parts, halves, strict=True):
        g_part = _gaussian(part)
        if g_part is None or not (torch.equal(g_part[0], loc[:, h]) and torch.equal(g_part[1], scale[:, h])):
            return False
        if not torch.equal(part.log_prob(probe[:, h]), density[:, h]):
            return False
    return True


def _sample_pipelined(env: Any, policy: Any, params: dict[str, Tensor] | None, T: int, device: torch.device,
                      obs: Tensor) -> EpisodeBatch | None:
    """:func:`_sample` with the physics of one half of the episodes overlapping the policy's work on the other
    half (``env.step_begin``/``env.step_end``, MuJoCo worker processes).

    The episodes are split in two halves, ``[:, :E // 2]`` and ``[:, E // 2:]``. While the workers step one
    half, this process evaluates the policy and stores the other half's step; the workers find the next
    command waiting when they finish one, so they do not sit idle while the policy runs. The numbers are
    those of the plain loop, bit for bit: the actions use one standard normal draw per step for all copies,
    as ``dist.sample()`` on the whole batch does, and the policy's rows on each half are checked at the
    first step to be those on the whole batch (:func:`_rows_agree`). Returns ``None`` (before drawing
    anything) when that check fails or the policy's distribution is not a diagonal Gaussian (whose sample
    can be rebuilt from the draws); the caller then runs the plain loop.
    """
    K, E = env.batch_shape
    halves = (slice(0, E // 2), slice(E // 2, E))
    flat = torch.arange(K * E).reshape(K, E)
    rows = [flat[:, h].reshape(-1).numpy() for h in halves]

    def policy_on(o: Tensor) -> Any:
        return policy(o) if params is None else policy.per_task(o, params)

    firsts = [policy_on(obs[:, h]) for h in halves]
    if not _rows_agree(policy_on(obs), firsts, halves):
        return None
    episodes = _Episodes(T, obs, device)
    act_dim = env.action_dim
    obs_shape = tuple(obs.shape[2:])

    def begin(g: int, noise: Tensor, current: Tensor, dist: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Send half ``g``'s actions to the workers; returns what :func:`end` stores with the outcome."""
        h = halves[g]
        loc, scale = _gaussian(dist)
        action = noise[:, h] * scale + loc  # = dist.sample() on the whole batch, these rows
        log_prob = dist.log_prob(action)
        _check_log_prob(log_prob, (K, h.stop - h.start))
        env.step_begin(g, rows[g], action.reshape(-1, act_dim).cpu().double().numpy(),
                       episodes.alive[:, h].reshape(-1).cpu().numpy())
        return current, action, log_prob

    def end(g: int, t: int, sent: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """Wait for half ``g``'s step ``t``, store it, and return its next observations."""
        h = halves[g]
        n = h.stop - h.start
        o, r, term, trunc = env.step_end(g)
        next_obs = torch.from_numpy(o.astype(np.float32)).reshape(K, n, *obs_shape).to(device)
        reward = torch.from_numpy(r.astype(np.float32)).reshape(K, n).to(device)
        terminated = torch.from_numpy(term).reshape(K, n).to(device)
        truncated = torch.from_numpy(trunc).reshape(K, n).to(device)
        current, action, log_prob = sent
        episodes.record(t, h, current, next_obs, action, reward, terminated, truncated, log_prob)
        return next_obs

    noise = torch.randn(K, E, act_dim, device=device)  # what dist.sample() on the whole batch draws
    sent = [begin(g, noise, obs[:, h], firsts[g]) for g, h in enumerate(halves)]
    steps = 0
    for t in range(T):
        steps = t + 1
        last = t == T - 1
        next_obs = end(0, t, sent[0])
        noise = None
        if not last and bool(episodes.alive[:, halves[0]].any()):  # step t + 1 exists: draw its noise now
            noise = torch.randn(K, E, act_dim, device=device)
            sent[0] = begin(0, noise, next_obs, policy_on(next_obs))
        next_obs_1 = end(1, t, sent[1])
        if last or not bool(episodes.alive.any()):
            break  # (half 0 was not begun: it had no episode left)
        if noise is None:  # half 0 has ended, half 1 has not: half 0's (empty) step first, in slot order
            noise = torch.randn(K, E, act_dim, device=device)
            sent[0] = begin(0, noise, next_obs, policy_on(next_obs))
        sent[1] = begin(1, noise, next_obs_1, policy_on(next_obs_1))
    return episodes.batch(steps)


class MetaBatchSampler:
    """Sample ``num_episodes`` whole episodes for each of ``num_tasks`` tasks into one ``EpisodeBatch``.

    The batched environment is built once and reused across calls (MuJoCo ``MjData`` allocation is not free).

    Args:
        family: the task family (e.g. ``Navigation2DFamily()``, ``HalfCheetahVelFamily()``).
        num_tasks: ``K``, tasks per meta-batch.
        num_episodes: ``E``, episodes per task.
        device: where the torch batched env runs (cheap families, and MuJoCo families with
            ``physics="warp"``); C MuJoCo (``physics="mujoco"``) always steps on the CPU.
        seed: seed of the environments' randomness (reset noise, stochastic rewards/transitions).
        num_workers: physics worker processes for MuJoCo families (``0``: step in this process; ``None``:
            one per core for meta-batches of at least 64 episodes on a multi-core machine).
        num_threads: in-process physics threads for MuJoCo families when ``num_workers == 0``; ``None``
            chooses by the model's cost (see :class:`~meta_rl_lessons.envs.mujoco_batched.BatchedMujocoEnv`).
    """

    def __init__(self, family: TaskFamily, num_tasks: int, num_episodes: int, *,
                 device: torch.device | str = "cpu", seed: int | None = None, num_workers: int | None = None,
                 num_threads: int | None = None, **env_kwargs: Any) -> None:
        from .locomotion import LocomotionFamily

        self.family = family
        if isinstance(family, LocomotionFamily) and family.physics == "warp":  # worlds on `device`
            self.env = family.make_batched(num_tasks, num_episodes, device=device, seed=seed, **env_kwargs)
        elif isinstance(family, LocomotionFamily):
            self.env = family.make_batched(num_tasks, num_episodes, num_workers=num_workers,
                                           num_threads=num_threads, seed=seed, **env_kwargs)
        else:
            self.env = family.make_batched(num_tasks, num_episodes, device=device, seed=seed, **env_kwargs)

    @property
    def num_tasks(self) -> int:
        return self.env.num_tasks

    @property
    def num_episodes(self) -> int:
        return self.env.num_envs

    def state_dict(self) -> dict[str, Any]:
        """What one :meth:`sample` passes on to the next: the environment's random generators' states.

        That is all: every call sets the tasks and resets every copy before stepping (whole episodes, no
        autoreset), and a reset leaves nothing of the previous episode behind (the MuJoCo envs'
        ``mj_resetData`` clears the solver's warm start too), so no simulator state carries over.
        Returns ``{"env": {name: generator state}}`` (``weights_only``-safe).
        """
        from meta_rl_lessons.serialization import generator_state

        return {"env": {name: generator_state(g) for name, g in self.env.generators().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`, on a sampler built for the same family and sizes.

        Raises:
            ValueError: the state names other generators than this sampler's environment has.
        """
        from meta_rl_lessons.serialization import set_generator_state

        gens, saved = self.env.generators(), state["env"]
        if set(saved) != set(gens):
            raise ValueError(f"the sampler state has generators {sorted(saved)}, this sampler's "
                             f"{type(self.env).__name__} has {sorted(gens)}")
        for name, g in gens.items():
            set_generator_state(g, saved[name])

    def close(self) -> None:
        """Stop the MuJoCo worker processes, if any (also done when the sampler is garbage-collected)."""
        close = getattr(self.env, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> MetaBatchSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sample(self, tasks: Sequence[Any], policy: Any, params: dict[str, Tensor] | None = None,
               max_steps: int | None = None, torch_threads: int | str | None = "auto") -> EpisodeBatch:
        """``[T, num_tasks, num_episodes, ...]`` experience of ``policy`` (per-task ``params`` optional);
        arguments as :func:`sample_episodes`."""
        self.env.set_tasks(tasks)
        return sample_episodes(self.env, policy, params, max_steps, torch_threads)
