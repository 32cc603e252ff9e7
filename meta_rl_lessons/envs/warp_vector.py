"""A gymnasium ``VectorEnv`` of a MetaRL locomotion env on MuJoCo Warp, for PPO and TRPO (``physics="warp"``).

:class:`WarpVectorEnv` is what ``gymnasium.make_vec("MetaRL/HalfCheetahVel-v0", num_envs,
vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})`` returns, with the physics of every sub-env
in one :class:`~meta_rl_lessons.envs.warp_batched.WarpBatchedEnv` (``num_envs`` worlds, one task each)
instead of ``num_envs`` C-MuJoCo envs. It is registered with gymnasium as the vector entry point of
``MetaRLWarp/<Name>-v0`` (:mod:`meta_rl_lessons.registration`), so ``gymnasium.make_vec(
"MetaRLWarp/HalfCheetahVel-v0", num_envs, device=...)`` builds it; that is how
:func:`~meta_rl_lessons.rl.sampling.make_vector_env` builds it for ``physics="warp"``, without importing
this package. It has no ``state_dict``: a PPO/TRPO checkpoint on Warp physics records its environments as
not restorable, and resuming restarts the running episodes with a warning. What it shares with the
C-MuJoCo vector env:

* spaces: ``single_observation_space`` / ``single_action_space`` are the gymnasium env's (float64
  observations, float32 actions), batched with ``gymnasium.vector.utils.batch_space``;
* autoreset ``AutoresetMode.SAME_STEP`` (``metadata["autoreset_mode"]``): the step that ends an episode
  returns the next episode's reset observation, the true final observation in ``infos["final_obs"]`` (an
  object array, ``None`` where no episode ended) with the mask ``infos["_final_obs"]``. The infos hold only
  these two keys (not the gymnasium envs' per-step reward terms);
* truncation: after the env's ``horizon`` steps (its own limit, default 200) or after ``max_episode_steps``
  when given (what gymnasium's ``TimeLimit`` adds), whichever comes first;
* resets and tasks, drawn exactly as each gymnasium sub-env draws them: sub-env ``i`` has its own
  ``numpy.random.Generator`` (``gymnasium.utils.seeding.np_random``, seeded by ``reset(seed=...)`` as
  ``SyncVectorEnv`` seeds its sub-envs: an int ``s`` gives ``s + i``); a reset draws gymnasium's
  ``reset_model`` noise from it (``qpos = init_qpos + U(-s, s)``, ``qvel = init_qvel + s N(0, 1)``, in
  float64, then put into the float32 world), and, at the first reset, the sub-env's task from the family's
  *train* split (:class:`~meta_rl_lessons.envs.base.MetaEnvMixin`); the task then stays, as in gymnasium,
  unless ``task=`` fixes one for every sub-env or ``reset(options={"task": t})`` sets one. Same seeds, same
  tasks and reset states as the C-MuJoCo vector env, so the two differ only by the physics (see
  :mod:`~meta_rl_lessons.envs.warp_batched` and the parity tests in ``tests/test_envs_warp.py``).

Arrays cross the boundary as NumPy on the CPU (what ``SyncVectorEnv`` returns and
:class:`~meta_rl_lessons.rl.sampling.VectorSampler` reads): the worlds may live on a CUDA ``device``, and each
step then copies the observations back once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

__all__ = ["WarpVectorEnv", "locomotion_family_name"]


def _locomotion_names() -> list[str]:
    from .families import FAMILIES
    from .locomotion import LocomotionFamily

    return [n for n, cls in FAMILIES.items() if issubclass(cls, LocomotionFamily)]


def locomotion_family_name(env_id: str) -> str:
    """The family name of a MetaRL locomotion id (``"MetaRL/AntGoal-v0"`` -> ``"AntGoal"``).

    Raises:
        ValueError: ``env_id`` is not ``MetaRL/<Name>-v0`` of a locomotion family (the only ones with Warp
            physics), naming the ids allowed.
    """
    names = _locomotion_names()
    metarl = env_id.startswith("MetaRL/") and env_id.endswith("-v0")
    name = env_id[len("MetaRL/"):-len("-v0")] if metarl else ""
    if name not in names:
        raise ValueError(f"physics='warp' needs a MetaRL locomotion env id, got {env_id!r}; MuJoCo Warp runs "
                         f"{', '.join(f'MetaRL/{n}-v0' for n in names)}")
    return name


class WarpVectorEnv(VectorEnv):
    """``num_envs`` sub-envs of a MetaRL locomotion env id, their physics batched in MuJoCo Warp.

    Args:
        env_id: ``MetaRL/<Name>-v0`` of a locomotion family (HalfCheetahVel/Dir, AntVel/Dir/Goal).
        num_envs: sub-environments (worlds), one task each.
        device: torch device of the worlds (``"cpu"``, ``"cuda[:N]"``); arrays returned are NumPy either way.
        max_episode_steps: time limit on top of the env's ``horizon`` (as gymnasium's ``TimeLimit``).
        family: the task family (default: ``make_family(<Name>)``), as the gymnasium env's ``family=``.
        task: one task for every sub-env (default: each draws its own at its first reset).
        env_kwargs: the gymnasium env's keywords (``horizon``, ``reset_noise_scale``, ...).
    """

    def __init__(self, env_id: str, num_envs: int, *, device: torch.device | str = "cpu",
                 max_episode_steps: int | None = None, family: Any = None, task: Any = None,
                 **env_kwargs: Any) -> None:
        from .families import make_family
        from .warp_batched import WarpBatchedEnv

        name = locomotion_family_name(env_id)
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs}")
        self.family = family if family is not None else make_family(name)
        self.num_envs = int(num_envs)
        self.warp = WarpBatchedEnv(self.family, self.num_envs, 1, device=device, seed=0, **env_kwargs)
        template = self.warp.template
        limit = self.warp.max_episode_steps
        #: Steps after which an episode is truncated (the env's horizon, or ``max_episode_steps`` if sooner).
        self.max_episode_steps = limit if max_episode_steps is None else min(limit, int(max_episode_steps))
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**template.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.autoreset_mode = AutoresetMode.SAME_STEP
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        fixed = None if task is None else self.family.validate(task)
        self._tasks: list[Any] = [fixed] * self.num_envs
        self._dtype = self.single_observation_space.dtype

    # ------------------------------------------------------------------ tasks
    def get_tasks(self) -> list[Any]:
        """The task of every sub-env (``None`` before its first reset unless one was fixed)."""
        return list(self._tasks)

    def _rng(self, i: int) -> np.random.Generator:
        if self._rngs[i] is None:  # gymnasium: a fresh unseeded generator on first use
            self._rngs[i], _ = seeding.np_random()
        return self._rngs[i]

    # ------------------------------------------------------------------ resets
    def _reset_worlds(self, idx: np.ndarray, options: dict | None = None) -> np.ndarray:
        """Reset sub-envs ``idx`` as gymnasium's ``reset``; their observations ``[len(idx), obs_dim]``."""
        w, s = self.warp, float(self.warp.template._reset_noise_scale)
        nq, nv = w.model.nq, w.model.nv
        qpos, qvel = np.empty((len(idx), nq)), np.empty((len(idx), nv))
        for j, i in enumerate(idx):
            rng = self._rng(i)
            qpos[j] = w.template.init_qpos + rng.uniform(low=-s, high=s, size=nq)  # gymnasium's reset_model
            qvel[j] = w.template.init_qvel + s * rng.standard_normal(nv)
            if options and "task" in options:  # MetaEnvMixin._ensure_task, after the reset noise
                self._tasks[i] = self.family.validate(options["task"])
            elif self._tasks[i] is None:
                self._tasks[i] = self.family.sample_tasks(1, rng, split="train")[0]
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[idx] = True
        w.set_tasks(self._tasks)
        w.set_state(qpos, qvel, torch.from_numpy(mask))
        return self._observations()[idx]

    def _observations(self) -> np.ndarray:
        return self.warp._obs().cpu().numpy().astype(self._dtype)

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        """Reset every sub-env (seeds as ``SyncVectorEnv``: ``None``, an int ``s`` -> ``s + i``, or a list);
        ``options={"task": t}`` sets task ``t`` on all. Returns ``(obs [num_envs, obs_dim], {})``."""
        if seed is None:
            seeds: Sequence[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset(seed=...): {len(seeds)} seeds for num_envs={self.num_envs}")
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i], _ = seeding.np_random(int(s))
        return self._reset_worlds(np.arange(self.num_envs), options), {}

    # ------------------------------------------------------------------ steps
    def step(self, actions: np.ndarray):
        """``actions [num_envs, act_dim]`` -> ``(obs, reward, terminated, truncated, infos)``, NumPy, with
        ``SAME_STEP`` autoreset (see the module docstring)."""
        a = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=self.warp.device)
        a = a.reshape(self.num_envs, 1, -1)
        obs_t, rew_t, term_t, _ = self.warp.step(a)
        obs = obs_t.reshape(self.num_envs, -1).cpu().numpy().astype(self._dtype)
        reward = rew_t.reshape(-1).cpu().numpy().astype(np.float64)
        terminated = term_t.reshape(-1).cpu().numpy()
        truncated = self.warp.steps.cpu().numpy() >= self.max_episode_steps
        done = terminated | truncated
        infos: dict[str, Any] = {}
        if done.any():
            idx = np.flatnonzero(done)
            final = np.full(self.num_envs, None, dtype=object)
            for i in idx:
                final[i] = obs[i].copy()
            infos = {"final_obs": final, "_final_obs": done.copy()}
            obs[idx] = self._reset_worlds(idx)
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.warp.close()
        self.warp.template.close()
