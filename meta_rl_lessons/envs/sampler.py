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
per-task parameters (MAML's adapted parameters, stacked with a leading task dimension). Any object with that
calling convention works (duck typing); it must return a ``torch.distributions.Distribution`` whose
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


def _sample(env: Any, policy: Any, params: dict[str, Tensor] | None, T: int,
            device: torch.device) -> EpisodeBatch:
    shape = env.batch_shape
    obs = env.reset().to(device)
    if getattr(env, "pipelines", False) and shape[1] >= 2:
        batch = _sample_pipelined(env, policy, params, T, device, obs)
        if batch is not None:
            return batch
    obs_buf = torch.zeros(T, *obs.shape, device=device)
    next_buf = torch.zeros_like(obs_buf)
    rew_buf = torch.zeros(T, *shape, device=device)
    term_buf = torch.zeros(T, *shape, dtype=torch.bool, device=device)
    trunc_buf = torch.zeros_like(term_buf)
    mask_buf = torch.zeros(T, *shape, device=device)
    lp_buf = torch.zeros(T, *shape, device=device)
    act_buf = None
    alive = torch.ones(shape, dtype=torch.bool, device=device)
    steps = 0
    for t in range(T):
        dist = policy(obs) if params is None else policy.per_task(obs, params)
        action = dist.sample()
        log_prob = dist.log_prob(action)
        if log_prob.shape != shape:
            raise ValueError(f"policy log_prob has shape {tuple(log_prob.shape)}, expected {shape}: return a "
                             "distribution with batch shape [num_tasks, num_episodes] (e.g. Independent)")
        if act_buf is None:
            act_buf = torch.zeros(T, *action.shape, dtype=action.dtype, device=device)
        if getattr(env, "skips_inactive", False):  # MuJoCo: no physics for finished episodes
            next_obs, reward, terminated, truncated = env.step(action.to(env.device), active=alive.cpu())
        else:
            next_obs, reward, terminated, truncated = env.step(action.to(env.device))
        next_obs, reward = next_obs.to(device), reward.to(device)
        terminated, truncated = terminated.to(device), truncated.to(device)
        if t == T - 1:
            truncated = truncated | ~terminated
        live = alive.float()
        lshape = live.view(*shape, *([1] * (obs.dim() - len(shape))))
        obs_buf[t] = obs * lshape
        next_buf[t] = next_obs * lshape
        act_buf[t] = action * live.view(*shape, *([1] * (action.dim() - len(shape)))).to(action.dtype)
        rew_buf[t] = reward * live
        term_buf[t] = terminated & alive
        trunc_buf[t] = truncated & alive & ~terminated
        mask_buf[t] = live
        lp_buf[t] = log_prob * live
        alive = alive & ~(terminated | truncated)
        obs = next_obs
        steps = t + 1
        if not bool(alive.any()):
            break
    cut = slice(0, steps)
    return EpisodeBatch(
        observations=obs_buf[cut], actions=act_buf[cut], rewards=rew_buf[cut],
        next_observations=next_buf[cut], terminated=term_buf[cut], truncated=trunc_buf[cut],
        mask=mask_buf[cut], log_probs=lp_buf[cut],
    )


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
    picks its kernel by shape, and kernels sum in different orders (measured: a 64x64 policy on
    HalfCheetah's 17 inputs agrees for 10 of 20 rows per task, on the Ant's 105 inputs with 2 of 5 rows
    it does not). The choice depends on the shapes only, not on the values, so what holds at the first
    step holds for the episode."""
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

    The episodes are split in two groups, ``[:, :E0]`` and ``[:, E0:]``. While the workers step one group,
    this process evaluates the policy and stores the other group's step; the workers find the next group's
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
    act_dim = env.action_dim
    obs_buf = torch.zeros(T, *obs.shape, device=device)
    next_buf = torch.zeros_like(obs_buf)
    rew_buf = torch.zeros(T, K, E, device=device)
    term_buf = torch.zeros(T, K, E, dtype=torch.bool, device=device)
    trunc_buf = torch.zeros_like(term_buf)
    mask_buf = torch.zeros(T, K, E, device=device)
    lp_buf = torch.zeros(T, K, E, device=device)
    act_buf = torch.zeros(T, K, E, act_dim, device=device)
    alive = torch.ones(K, E, dtype=torch.bool, device=device)
    obs_shape = tuple(obs.shape[2:])

    def begin(g: int, t: int, noise: Tensor, dist: Any) -> tuple[Tensor, Tensor]:
        h = halves[g]
        loc, scale = _gaussian(dist)
        action = noise[:, h] * scale + loc  # = dist.sample() on the whole batch, these rows
        log_prob = dist.log_prob(action)
        if log_prob.shape != (K, h.stop - h.start):
            raise ValueError(f"policy log_prob has shape {tuple(log_prob.shape)}, expected "
                             f"{(K, h.stop - h.start)}: return a distribution with batch shape "
                             "[num_tasks, num_episodes] (e.g. Independent)")
        env.step_begin(g, rows[g], action.reshape(-1, act_dim).cpu().double().numpy(),
                       alive[:, h].reshape(-1).cpu().numpy())
        return action, log_prob

    def end(g: int, t: int, state: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        h = halves[g]
        current, action, log_prob = state
        o, r, term, trunc = env.step_end(g)
        n = h.stop - h.start
        next_obs = torch.from_numpy(o.astype(np.float32)).reshape(K, n, *obs_shape).to(device)
        reward = torch.from_numpy(r.astype(np.float32)).reshape(K, n).to(device)
        terminated = torch.from_numpy(term).reshape(K, n).to(device)
        truncated = torch.from_numpy(trunc).reshape(K, n).to(device)
        if t == T - 1:
            truncated = truncated | ~terminated
        live_b = alive[:, h]
        live = live_b.float()
        lshape = live.view(K, n, *([1] * len(obs_shape)))
        obs_buf[t, :, h] = current * lshape
        next_buf[t, :, h] = next_obs * lshape
        act_buf[t, :, h] = action * live.unsqueeze(-1).to(action.dtype)
        rew_buf[t, :, h] = reward * live
        term_buf[t, :, h] = terminated & live_b
        trunc_buf[t, :, h] = truncated & live_b & ~terminated
        mask_buf[t, :, h] = live
        lp_buf[t, :, h] = log_prob * live
        alive[:, h] = live_b & ~(terminated | truncated)
        return next_obs

    noise = torch.randn(K, E, act_dim, device=device)  # what dist.sample() on the whole batch draws
    state = [(obs[:, h], *begin(g, 0, noise, firsts[g])) for g, h in enumerate(halves)]
    steps = 0
    for t in range(T):
        steps = t + 1
        next_noise = None
        last = t == T - 1
        nxt = end(0, t, state[0])
        if not last and bool(alive[:, halves[0]].any()):  # step t + 1 exists: draw its noise now
            next_noise = torch.randn(K, E, act_dim, device=device)
            state[0] = (nxt, *begin(0, t + 1, next_noise, policy_on(nxt)))
            began0 = True
        else:
            began0 = False
        nxt1 = end(1, t, state[1])
        if last or not bool(alive.any()):
            if began0:  # cannot happen: group 0 alive means alive.any()
                raise AssertionError("unreachable")
            break
        if next_noise is None:  # group 0 has ended, group 1 has not: step t + 1 for group 1 alone
            next_noise = torch.randn(K, E, act_dim, device=device)
        if not began0:  # keep the slots in order: group 0's (empty) step first
            state[0] = (nxt, *begin(0, t + 1, next_noise, policy_on(nxt)))
        state[1] = (nxt1, *begin(1, t + 1, next_noise, policy_on(nxt1)))
    cut = slice(0, steps)
    return EpisodeBatch(
        observations=obs_buf[cut], actions=act_buf[cut], rewards=rew_buf[cut],
        next_observations=next_buf[cut], terminated=term_buf[cut], truncated=trunc_buf[cut],
        mask=mask_buf[cut], log_probs=lp_buf[cut],
    )


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
