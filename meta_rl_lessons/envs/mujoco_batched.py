"""Batched MuJoCo stepping: one shared ``MjModel``, one ``MjData`` per copy, driven from one process.

Why this design (measured on the 2-core CPU machine of DESIGN §7, mujoco 4.0, HalfCheetah-v5, 800 copies):

* raw ``mujoco.mj_step`` on one ``MjData``: about 36-39k env-steps/s per core (frame skip 5);
* a Python loop over 800 ``MjData`` (set ``ctrl``, ``mj_step(nstep=5)``, copy ``qpos``/``qvel``): 27-28k
  env-steps/s on one thread, about 75% of the raw rate; the loop overhead is a few µs per copy;
* the same loop split over 2 threads: 27k for HalfCheetah (the per-copy Python work holds the GIL and the
  physics is too cheap to hide it), but 12.4k vs 5.9k for Ant (heavier physics, GIL released in mj_step);
* gymnasium's ``SyncVectorEnv``/``AsyncVectorEnv`` add per-step Python work (info dicts, wrappers,
  pipes) and one process per env; see ``bench/sampler.py`` for the figures measured in the same run;
* ``mujoco.rollout`` with 2 threads: about 34k, but it drops the solver warm-start between calls
  (trajectories then differ from gymnasium's) and cannot return the Ant's contact forces without an extra
  forward pass, so it is not used.

So copies are stepped in a loop, optionally split over ``num_threads`` Python threads (``mj_step``
releases the GIL; by default one thread for cheap models like HalfCheetah, one per core for costly ones
like Ant); copies whose episode has ended are not simulated; everything else (observations, rewards,
termination) is vectorised in NumPy over all copies, using the same reward functions as the gymnasium
environments, which the tests check step by step. A worker thread that raises propagates its exception
out of ``step``; nothing can hang waiting for a dead process because there are no processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mujoco
import numpy as np
import torch
from torch import Tensor

from .base import as_generator
from .locomotion import LocomotionFamily, _AntBase


class BatchedMujocoEnv:
    """``[num_tasks, num_envs]`` copies of a locomotion family's env, stepped together.

    Same interface as :class:`~meta_rl_lessons.envs.batched.BatchedEnv` (``set_tasks``, ``seed``,
    ``reset(mask)``, ``step(actions [K, E, act_dim])``), returning float32 CPU tensors; :meth:`step_numpy`
    returns the float64 NumPy arrays (``[K*E, ...]``) it computes from.

    Args:
        family: a :class:`~meta_rl_lessons.envs.locomotion.LocomotionFamily`.
        num_tasks, num_envs: batch shape ``K x E``.
        num_threads: threads stepping the physics (1 = the calling thread only). ``None`` chooses by the
            model's cost: 1 thread when one env step takes under 80 µs of physics (HalfCheetah, about
            30 µs: the per-copy Python work holds the GIL and threads only contend), else one per core,
            at most 8 (Ant, about 145 µs: 2 threads give about 1.4-2x on 2 cores).
        seed: seed of the reset noise (``numpy.random.Generator``).
        env_kwargs: passed to the family's gymnasium env (e.g. ``reset_noise_scale``).
    """

    action_dim: int
    num_actions = None
    #: ``step`` accepts ``active=`` (copies to simulate); the sampler uses it to skip finished episodes.
    skips_inactive = True

    def __init__(self, family: LocomotionFamily, num_tasks: int, num_envs: int,
                 num_threads: int | None = None, seed: int | None = None,
                 device: torch.device | str = "cpu", **env_kwargs: Any) -> None:
        if torch.device(device).type != "cpu":
            raise ValueError("BatchedMujocoEnv runs on the CPU; move observations to the policy's device")
        self.family = family
        self.num_tasks, self.num_envs = int(num_tasks), int(num_envs)
        self.device = torch.device("cpu")
        self.template = family.make_env(**env_kwargs)  # the gymnasium env: model, options, reward function
        env = self.template
        self.model = env.model
        self.frame_skip = env.frame_skip
        self.dt = env.dt
        self.max_episode_steps = env.horizon
        self.is_ant = isinstance(env, _AntBase)
        self.reward_fn = type(env).reward_fn
        self.action_dim = self.model.nu
        self.observation_shape = env.observation_space.shape
        self.n = self.num_tasks * self.num_envs
        self.datas = [mujoco.MjData(self.model) for _ in range(self.n)]
        nq, nv = self.model.nq, self.model.nv
        self.qpos = np.zeros((self.n, nq))
        self.qvel = np.zeros((self.n, nv))
        self.xy = np.zeros((self.n, 2))
        self.contact = np.zeros((self.n, self.model.nbody, 6)) if self.is_ant else None
        self.steps = np.zeros(self.n, dtype=np.int64)
        if num_threads is None:
            num_threads = 1 if self._physics_seconds_per_step() < 80e-6 else min(8, os.cpu_count() or 1)
        self.num_threads = max(1, int(num_threads))
        self._pool = ThreadPoolExecutor(self.num_threads) if self.num_threads > 1 else None
        self.rng = as_generator(seed)
        self.tasks: list[Any] | None = None
        self._ctrl = np.zeros((self.n, self.action_dim))

    def _physics_seconds_per_step(self, steps: int = 40) -> float:
        """Wall time of one env step's physics (``frame_skip`` x ``mj_step``) on a scratch ``MjData``."""
        d = mujoco.MjData(self.model)
        d.qpos[:] = self.template.init_qpos
        d.ctrl[:] = 0.5
        mujoco.mj_step(self.model, d, self.frame_skip)
        t = time.perf_counter()
        mujoco.mj_step(self.model, d, self.frame_skip * steps)
        return (time.perf_counter() - t) / steps

    @property
    def batch_shape(self) -> tuple[int, int]:
        return (self.num_tasks, self.num_envs)

    def seed(self, seed: int | None = None) -> None:
        self.rng = as_generator(seed)

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} tasks (one per row), got {len(tasks)}")
        self.tasks = [self.family.validate(t) for t in tasks]
        params = self.family.task_params(self.tasks)
        self.params = np.repeat(params, self.num_envs, axis=0)  # [K*E] or [K*E, 2]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ physics
    def _read(self, i: int, d: mujoco.MjData) -> None:
        self.qpos[i] = d.qpos
        self.qvel[i] = d.qvel
        if self.is_ant:
            self.xy[i] = d.xpos[1, :2]
            self.contact[i] = d.cfrc_ext
        else:
            self.xy[i, 0] = d.qpos[0]

    def _step_indices(self, indices: list[int]) -> None:
        m, fs, ant, ctrl = self.model, self.frame_skip, self.is_ant, self._ctrl
        for i in indices:
            d = self.datas[i]
            d.ctrl[:] = ctrl[i]
            mujoco.mj_step(m, d, fs)
            if ant:  # contact forces for the observation and the contact cost (as gymnasium does)
                mujoco.mj_rnePostConstraint(m, d)
            self._read(i, d)

    def _run(self, active: np.ndarray | None) -> None:
        idx = np.arange(self.n) if active is None else np.flatnonzero(active)
        if self._pool is None or len(idx) < 2 * self.num_threads:
            self._step_indices(idx.tolist())
            return
        chunks = [c.tolist() for c in np.array_split(idx, self.num_threads)]
        futures = [self._pool.submit(self._step_indices, c) for c in chunks]
        for f in futures:
            f.result()  # re-raises a worker's exception here

    # ------------------------------------------------------------------ observations
    def _obs(self) -> np.ndarray:
        env = self.template
        skip = env.observation_structure["skipped_qpos"]
        parts = [self.qpos[:, skip:], self.qvel]
        if self.is_ant and env._include_cfrc_ext_in_observation:
            lo, hi = env._contact_force_range
            parts.append(np.clip(self.contact[:, 1:], lo, hi).reshape(self.n, -1))
        return np.concatenate(parts, axis=1)

    def _to_torch(self, x: np.ndarray, tail: tuple[int, ...] = ()) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(*self.batch_shape, *tail)

    # ------------------------------------------------------------------ API
    def reset_numpy(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Reset the copies where ``mask [K*E]`` is true (all if ``None``); observations ``[K*E, obs_dim]``.

        Same distribution as gymnasium's ``reset_model``: ``qpos = init_qpos + U(-s, s)``,
        ``qvel = init_qvel + s N(0, 1)`` with ``s = reset_noise_scale``.
        """
        if self.tasks is None:
            raise RuntimeError("BatchedMujocoEnv: call set_tasks(tasks) before reset()/step()")
        env, m = self.template, self.model
        idx = np.arange(self.n) if mask is None else np.flatnonzero(mask)
        s = env._reset_noise_scale
        qpos = env.init_qpos + self.rng.uniform(-s, s, size=(len(idx), m.nq))
        qvel = env.init_qvel + s * self.rng.standard_normal((len(idx), m.nv))
        for j, i in enumerate(idx):
            self.set_state(int(i), qpos[j], qvel[j])
        self.steps[idx] = 0
        return self._obs()

    def set_state(self, i: int, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put copy ``i`` (flat index) in state ``(qpos, qvel)``, as gymnasium's ``reset``/``set_state``."""
        d = self.datas[i]
        mujoco.mj_resetData(self.model, d)
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        mujoco.mj_forward(self.model, d)
        self._read(i, d)

    def step_numpy(self, actions: np.ndarray, active: np.ndarray | None = None):
        """Step all copies with ``actions [K*E, act_dim]``; returns float64/bool arrays ``[K*E, ...]``:
        ``(obs, reward, terminated, truncated, info)``.

        With ``active [K*E]`` bool, only those copies are simulated; the others keep their state and their
        outputs are meaningless (the sampler passes the copies whose episode is still running, so finished
        episodes cost no physics).
        """
        if self.tasks is None:
            raise RuntimeError("BatchedMujocoEnv: call set_tasks(tasks) before reset()/step()")
        actions = np.asarray(actions, dtype=np.float64).reshape(self.n, self.action_dim)
        self._ctrl[:] = actions
        xy_before = self.xy.copy()
        self._run(active)
        xy_velocity = (self.xy - xy_before) / self.dt
        if not self.is_ant:
            xy_velocity[:, 1] = 0.0
        pos = self.xy if self.is_ant else self.qpos[:, :2]
        reward, terms = self.reward_fn(xy_velocity, pos, actions, self.contact, self.params)
        env = self.template
        if self.is_ant and env._terminate_when_unhealthy:
            lo, hi = env._healthy_z_range
            z = self.qpos[:, 2]
            healthy = np.isfinite(self.qpos).all(1) & np.isfinite(self.qvel).all(1) & (z >= lo) & (z <= hi)
            terminated = ~healthy
        else:
            terminated = np.zeros(self.n, dtype=bool)
        self.steps += 1
        truncated = self.steps >= self.max_episode_steps
        return self._obs(), reward, terminated, truncated, {"x_velocity": xy_velocity[:, 0], **terms}

    def reset(self, mask: Tensor | None = None) -> Tensor:
        """Observations ``[K, E, obs_dim]`` float32 after resetting the copies in ``mask [K, E]``."""
        flat = None if mask is None else mask.reshape(-1).cpu().numpy().astype(bool)
        return self._to_torch(self.reset_numpy(flat), self.observation_shape)

    def step(self, actions: Tensor, active: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``actions [K, E, act_dim]`` -> ``(obs [K, E, obs_dim], reward [K, E], terminated, truncated)``;
        ``active [K, E]`` bool limits the physics to those copies (see :meth:`step_numpy`)."""
        if tuple(actions.shape) != (*self.batch_shape, self.action_dim):
            raise ValueError(f"actions must have shape {(*self.batch_shape, self.action_dim)}, "
                             f"got {tuple(actions.shape)}")
        flat = None if active is None else active.reshape(-1).cpu().numpy().astype(bool)
        obs, reward, term, trunc, _ = self.step_numpy(actions.detach().cpu().double().numpy(), flat)
        shape = self.batch_shape
        return (self._to_torch(obs, self.observation_shape), self._to_torch(reward),
                torch.from_numpy(term).reshape(shape), torch.from_numpy(trunc).reshape(shape))
