"""Sampling from gymnasium vector environments with the policy in the loop, into an :class:`EpisodeBatch`.

**Autoreset.** gymnasium 1.x vector environments reset a finished sub-environment automatically, by default
on the *next* call to ``step`` (``AutoresetMode.NEXT_STEP``): the step after an episode ends then ignores the
action and returns the reset observation with reward 0. A sampler that is not aware of this records a fake
transition per episode (and the final observation it returns *is* the true one, while the reset observation
appears one step late). We use ``AutoresetMode.SAME_STEP`` instead, deliberately:

* the step that ends an episode already returns the *reset* observation of the next episode, so every
  recorded step is a real transition and fixed-length rollouts waste no steps;
* the true final observation is in ``infos["final_obs"]`` (with the mask ``infos["_final_obs"]``), and we
  store it as ``next_observations[t]``, so a critic bootstraps a *truncated* episode from the right state.

:func:`make_vector_env` builds environments in that mode, and :class:`VectorSampler` refuses any other mode
with an error saying how to build one.

**Physics.** ``make_vector_env(id, n, physics="warp")`` builds, for a MetaRL locomotion id, the MuJoCo Warp
vector env instead of gymnasium's ``SyncVectorEnv``: the same spaces, seeding, tasks, time limit and
``SAME_STEP`` autoreset, the physics of all sub-environments batched in MuJoCo Warp (on ``device``), NumPy
arrays at the boundary. PPO and TRPO pass their config's ``physics`` here. This module reaches that env only
through gymnasium: it is registered as the vector entry point of ``<namespace>Warp/<name>-v<k>``
(``MetaRLWarp/HalfCheetahVel-v0``, see :mod:`meta_rl_lessons.registration`), and built with
``gymnasium.make_vec``; ``rl`` imports nothing from ``meta_rl_lessons.envs``.

**Devices.** The policy runs on its own device; observations are moved there once per step, and the returned
batch lives there too. Environment data is gathered in NumPy and converted once per call.

**Seeding.** ``VectorSampler(..., seed=s)`` seeds the environments on their first reset (sub-environment
``i`` gets ``s + i``); actions are drawn from torch's global generator (seed it with
:func:`~meta_rl_lessons.rl.utils.set_seed`). Same seeds give the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from torch import nn

from meta_rl_lessons.mujoco_log import mujoco_warnings_to_python
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import make_policy
from meta_rl_lessons.rl.utils import RunningMeanStd, resolve_device, set_seed
from meta_rl_lessons.trainer import TrainerBase

__all__ = ["PHYSICS", "VectorEnvTrainer", "VectorSampler", "check_physics", "make_env", "make_vector_env",
           "warp_env_id"]

#: The physics backends of :func:`make_vector_env`.
PHYSICS: tuple[str, ...] = ("mujoco", "warp")


def warp_env_id(env_id: str) -> str:
    """The gymnasium id of ``env_id``'s MuJoCo Warp vector env: ``"MetaRL/AntDir-v0"`` ->
    ``"MetaRLWarp/AntDir-v0"`` (whether it is registered is :func:`check_physics`'s business)."""
    from gymnasium.envs.registration import parse_env_id

    namespace, name, version = parse_env_id(env_id)
    return f"{namespace}Warp/{name}-v{version}" if namespace and version is not None else ""


def check_physics(env_id: str, physics: str) -> None:
    """Raise ``ValueError`` unless ``physics`` is ``"mujoco"`` (the registered env, any id) or ``"warp"`` for
    an id whose Warp vector env is registered (the MetaRL locomotion ids, ``MetaRL/HalfCheetahVel-v0``, ...);
    the message names the value and what is allowed.
    """
    if physics == "mujoco":
        return
    if physics not in PHYSICS:
        raise ValueError(f"physics={physics!r} is not allowed; use one of {PHYSICS}")
    from gymnasium.error import Error

    from meta_rl_lessons.registration import register_envs

    register_envs()  # (normally done when gymnasium is imported; idempotent)
    try:
        warp_id = warp_env_id(env_id)
    except Error:  # not an id gymnasium can parse
        warp_id = ""
    if warp_id not in gym.registry:
        ids = sorted(spec.kwargs["env_id"] for spec in gym.registry.values()
                     if spec.namespace and spec.namespace.endswith("Warp") and "env_id" in spec.kwargs)
        raise ValueError(f"physics='warp' needs a MetaRL locomotion env id, got {env_id!r}; MuJoCo Warp runs "
                         f"{', '.join(ids)}")


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    vectorization_mode: str = "sync",
    max_episode_steps: int | None = None,
    physics: str = "mujoco",
    device: torch.device | str | None = None,
    **env_kwargs: Any,
) -> VectorEnv:
    """``gymnasium.make_vec`` with ``AutoresetMode.SAME_STEP`` (see the module docstring for why).

    Args:
        env_id: a registered id, e.g. ``"CartPole-v1"`` or ``"HalfCheetah-v5"``.
        num_envs: number of sub-environments stepped together.
        vectorization_mode: ``"sync"`` (one process; best for cheap environments and 2 cores) or ``"async"``.
        max_episode_steps: override the registered time limit (episodes end with ``truncated=True``).
        physics: ``"mujoco"``: the registered env as it is (C MuJoCo for the MuJoCo envs); ``"warp"``: for a
            MetaRL locomotion id only, the vector env registered as :func:`warp_env_id` (a
            :class:`~meta_rl_lessons.envs.warp_vector.WarpVectorEnv`: same spaces, seeding, tasks, time limit
            and autoreset; physics in MuJoCo Warp; the ``[warp]`` extra).
        device: ``physics="warp"``: where the Warp worlds live (``None``: the CPU); otherwise ignored.
        env_kwargs: passed to the environment constructor.
    """
    if num_envs <= 0:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs}")
    check_physics(env_id, physics)
    if physics == "warp":  # the registered vector entry point (in SAME_STEP autoreset mode already)
        return gym.make_vec(warp_env_id(env_id), num_envs=num_envs, vectorization_mode="vector_entry_point",
                            device="cpu" if device is None else device, max_episode_steps=max_episode_steps,
                            **env_kwargs)
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = max_episode_steps
    with mujoco_warnings_to_python():  # MuJoCo 4 prints deprecation notices for gymnasium's model files
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode=vectorization_mode,
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **env_kwargs,
        )


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` for one environment (e.g. to render or evaluate), with MuJoCo's notices about
    gymnasium's model files routed to Python logging instead of stderr and ``MUJOCO_LOG.TXT``."""
    with mujoco_warnings_to_python():
        return gym.make(env_id, **kwargs)


class VectorSampler:
    """Collects experience from a SAME_STEP-autoreset vector environment with ``policy`` choosing actions.

    Two ways to collect:

    * :meth:`collect_steps` — a fixed number of steps per sub-environment, continuing where the last call
      stopped (PPO): ``[num_steps, num_envs]``, every step real, episodes may end inside a column;
    * :meth:`collect_episodes` — whole episodes from fresh resets (REINFORCE, TRPO, MAML):
      ``[T_max, num_episodes]``, one episode per column from its first step, padded with ``mask == 0``.
      Each sub-environment is given the same quota of episodes, so short episodes are not over-represented
      (stopping at "the first N episodes to finish" would bias the batch towards short episodes).

    Continuous actions are stored as sampled (their log-probability is that of the stored action) and
    clipped to the action space only when sent to the environment.

    Args:
        envs: a gymnasium vector environment in ``AutoresetMode.SAME_STEP`` (see :func:`make_vector_env`).
        policy: ``policy(obs [N, obs_dim]) -> Distribution`` (see :mod:`~meta_rl_lessons.rl.policies`).
        seed: seed for the first reset (sub-environment ``i`` gets ``seed + i``); ``None``: unseeded.
        obs_normalizer: if given, observations are normalised with it before the policy sees them, and the
            *normalised* observations are stored; its statistics are updated while its ``training`` is set.
    """

    def __init__(
        self,
        envs: VectorEnv,
        policy: nn.Module,
        *,
        seed: int | None = None,
        obs_normalizer: RunningMeanStd | None = None,
    ) -> None:
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"VectorSampler needs a vector environment with autoreset_mode=AutoresetMode.SAME_STEP, got "
                f"{mode!r}; build it with meta_rl_lessons.rl.sampling.make_vector_env(...) or "
                "gymnasium.make_vec(..., vector_kwargs={'autoreset_mode': AutoresetMode.SAME_STEP})"
            )
        self.envs, self.policy = envs, policy
        self.num_envs = envs.num_envs
        self.seed = seed
        self.obs_normalizer = obs_normalizer
        space = envs.single_action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(space, gym.spaces.Box):
            raise TypeError(f"VectorSampler supports Discrete and Box action spaces, got {space}")
        self._low = None if self.discrete else np.asarray(space.low, dtype=np.float32)
        self._high = None if self.discrete else np.asarray(space.high, dtype=np.float32)
        obs_space = envs.single_observation_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise TypeError(f"VectorSampler needs flat Box observations [obs_dim], got {obs_space}")
        self._obs: np.ndarray | None = None  # current raw observation of every sub-environment
        self._ep_return = np.zeros(self.num_envs)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self._returns: list[float] = []
        self._lengths: list[int] = []
        self.total_steps = 0  # environment steps taken (all sub-environments)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything the next rollout depends on (``weights_only``-safe): the running episodes (current raw
        observations ``[num_envs, obs_dim]``, returns and lengths so far ``[num_envs]``), the finished
        episodes not yet popped, the step count, the observation normaliser's ``training`` flag (its
        statistics belong to the trainer's state) and the environments' state.

        The environments' state is ``envs.state_dict()`` where the vector env has one, else
        :func:`~meta_rl_lessons.serialization.env_state` (``SyncVectorEnv`` of classic-control or MuJoCo
        envs). For any other environment ``"envs"`` is ``None`` and ``"inexact"`` says why:
        :meth:`load_state_dict` then warns and restarts the running episodes.
        """
        from meta_rl_lessons.serialization import env_state, to_safe

        try:
            envs = self.envs.state_dict() if hasattr(self.envs, "state_dict") else env_state(self.envs)
            inexact = None
        except NotImplementedError as err:
            envs, inexact = None, str(err)
        rms = self.obs_normalizer
        return to_safe({
            "num_envs": self.num_envs,
            "obs": None if self._obs is None else np.array(self._obs),
            "ep_return": self._ep_return.copy(), "ep_length": self._ep_length.copy(),
            "returns": list(self._returns), "lengths": list(self._lengths),
            "total_steps": int(self.total_steps),
            "obs_normalizer_training": None if rms is None else bool(rms.training),
            "envs": envs, "inexact": inexact,
        })

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`, on a sampler over a freshly built vector env of the same kind;
        accepts the dict as returned and as read back by
        :func:`~meta_rl_lessons.serialization.load_checkpoint`.

        Raises:
            ValueError: the state lacks entries or is for another number of sub-environments or another
                observation size (naming what differs).
        """
        from meta_rl_lessons.serialization import from_safe, load_env_state

        keys = ("num_envs", "obs", "ep_return", "ep_length", "returns", "lengths", "total_steps",
                "obs_normalizer_training", "envs", "inexact")
        if not isinstance(state, Mapping) or any(k not in state for k in keys):
            have = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"VectorSampler.load_state_dict needs the entries {list(keys)}, got {have}")
        if int(state["num_envs"]) != self.num_envs:
            raise ValueError(f"VectorSampler state is for {state['num_envs']} sub-environments, this sampler "
                             f"has {self.num_envs}")
        # copies (np.array), so stepping never writes into the state
        obs = None if state["obs"] is None else np.array(from_safe(state["obs"]))
        obs_shape = (self.num_envs, *self.envs.single_observation_space.shape)
        if obs is not None and obs.shape != obs_shape:
            raise ValueError(f"VectorSampler state: obs has shape {obs.shape}, expected {obs_shape} "
                             "([num_envs, obs_dim])")
        ep_return = np.array(from_safe(state["ep_return"]), dtype=np.float64)
        ep_length = np.array(from_safe(state["ep_length"]), dtype=np.int64)
        for name, x in (("ep_return", ep_return), ("ep_length", ep_length)):
            if x.shape != (self.num_envs,):
                raise ValueError(f"VectorSampler state: {name} has shape {x.shape}, expected "
                                 f"({self.num_envs},) ([num_envs])")
        training = state["obs_normalizer_training"]
        if (training is None) != (self.obs_normalizer is None):
            has = "has no" if training is None else "has an"
            raise ValueError(f"VectorSampler state: it {has} observation normaliser, this sampler "
                             f"{'has one' if training is None else 'has none'}")
        self.total_steps = int(state["total_steps"])
        self._returns = [float(x) for x in state["returns"]]
        self._lengths = [int(x) for x in state["lengths"]]
        if self.obs_normalizer is not None:
            self.obs_normalizer.training = bool(training)
        if state["envs"] is None:
            warnings.warn(f"resuming the sampler is not exact: {state['inexact']}; the episodes that were "
                          "running start again from a reset", RuntimeWarning, stacklevel=2)
            self._obs = None  # the next rollout resets the environments
            self._ep_return[:] = 0.0
            self._ep_length[:] = 0
            return
        if hasattr(self.envs, "load_state_dict"):
            self.envs.load_state_dict(state["envs"])
        else:
            load_env_state(self.envs, state["envs"])
        self._obs = obs
        self._ep_return, self._ep_length = ep_return, ep_length

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def reset(self) -> None:
        """Reset every sub-environment (seeded on the very first reset) and the running episode counters."""
        if self._obs is None and self.seed is not None:
            obs, _ = self.envs.reset(seed=[self.seed + i for i in range(self.num_envs)])
        else:
            obs, _ = self.envs.reset()
        self._obs = obs
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        if self.obs_normalizer is not None and self.obs_normalizer.training:
            self.obs_normalizer.update(obs)

    def _norm(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_normalizer is None:
            return np.asarray(obs, dtype=np.float32)
        return self.obs_normalizer.normalize(obs)

    @torch.no_grad()
    def _act(
        self, obs_norm: np.ndarray, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        dist = self.policy(torch.as_tensor(obs_norm, device=device))
        action = dist.sample()
        log_prob = dist.log_prob(action)
        env_action = action.cpu().numpy()
        if not self.discrete:
            env_action = np.clip(env_action, self._low, self._high)
        return action, log_prob, env_action

    def _step(self, env_action: np.ndarray, record: np.ndarray | None = None):
        """Step the envs; returns (normalised new obs, normalised next_obs (true finals at ends), reward,
        terminated, truncated). Episode statistics are kept for the sub-environments in ``record``."""
        obs, reward, terminated, truncated, infos = self.envs.step(env_action)
        done = terminated | truncated
        next_obs = np.array(obs, dtype=np.float32, copy=True)
        if done.any():
            ended = infos["_final_obs"]
            next_obs[ended] = np.stack(list(infos["final_obs"][ended]))
        if self.obs_normalizer is not None and self.obs_normalizer.training:
            self.obs_normalizer.update(obs)
        self._obs = obs
        # episode statistics, on raw rewards
        self._ep_return += reward
        self._ep_length += 1
        for i in np.flatnonzero(done if record is None else done & record):
            self._returns.append(float(self._ep_return[i]))
            self._lengths.append(int(self._ep_length[i]))
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0
        self.total_steps += self.num_envs
        return self._norm(obs), self._norm(next_obs), reward, terminated, truncated

    def pop_episode_stats(self) -> dict[str, np.ndarray]:
        """Returns and lengths of the episodes completed since the last call (raw rewards), then clears.

        In :meth:`collect_episodes` only the episodes that went into the batch are counted (not the extra
        ones a sub-environment plays while waiting for the others), so the statistics are unbiased."""
        out = {"returns": np.array(self._returns, dtype=float), "lengths": np.array(self._lengths, dtype=int)}
        self._returns, self._lengths = [], []
        return out

    def _to_batch(self, obs, act, rew, nobs, term, trunc, mask, logp) -> EpisodeBatch:
        dev = self.device
        return EpisodeBatch(
            observations=torch.as_tensor(obs, device=dev),
            actions=torch.as_tensor(act, device=dev),
            rewards=torch.as_tensor(rew, dtype=torch.float32, device=dev),
            next_observations=torch.as_tensor(nobs, device=dev),
            terminated=torch.as_tensor(term, device=dev),
            truncated=torch.as_tensor(trunc, device=dev),
            mask=torch.as_tensor(mask, dtype=torch.float32, device=dev),
            log_probs=logp,
        )

    # ------------------------------------------------------------------ fixed-length rollouts
    def collect_steps(self, num_steps: int) -> EpisodeBatch:
        """``num_steps`` steps of every sub-environment, continuing the running episodes.

        Returns:
            An :class:`EpisodeBatch` ``[num_steps, num_envs]`` with ``mask`` all ones; ``terminated`` /
            ``truncated`` mark episode ends inside columns; ``next_observations`` holds the true final
            observation at ends; ``log_probs`` of the sampled actions.
        """
        if num_steps <= 0:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
        if self._obs is None:
            self.reset()
        obs_norm = self._norm(self._obs)
        device = self.device
        O, A, R, NO, TE, TR, LP = [], [], [], [], [], [], []
        for _ in range(num_steps):
            action, log_prob, env_action = self._act(obs_norm, device)
            new_obs, next_obs, reward, terminated, truncated = self._step(env_action)
            O.append(obs_norm)
            A.append(action)
            LP.append(log_prob)
            R.append(reward)
            NO.append(next_obs)
            TE.append(terminated)
            TR.append(truncated)
            obs_norm = new_obs
        actions = torch.stack(A)
        return self._to_batch(np.stack(O), actions, np.stack(R), np.stack(NO), np.stack(TE), np.stack(TR),
                              np.ones((num_steps, self.num_envs)), torch.stack(LP))

    # ------------------------------------------------------------------ whole episodes
    def collect_episodes(self, num_episodes: int, max_total_steps: int = 10_000_000) -> EpisodeBatch:
        """``num_episodes`` whole episodes, each from a fresh reset, one per column.

        Sub-environment ``e`` plays the episodes of columns ``e, e + num_envs, e + 2 num_envs, ...``.

        Returns:
            An :class:`EpisodeBatch` ``[T_max, num_episodes]`` (``T_max`` the longest episode) with
            ``mask == 0`` after each episode's last step; every column ends with ``terminated`` or
            ``truncated`` set at its last real step.

        Raises:
            RuntimeError: if more than ``max_total_steps`` steps pass (an environment without a time limit).
        """
        if num_episodes <= 0:
            raise ValueError(f"num_episodes must be a positive integer, got {num_episodes}")
        self.reset()
        E = self.num_envs
        column = np.arange(E)  # the column each sub-environment is filling (>= num_episodes: done)
        time = np.zeros(E, dtype=np.int64)
        obs_norm = self._norm(self._obs)
        device = self.device
        O, A, R, NO, TE, TR, LP, COL, TIME = [], [], [], [], [], [], [], [], []
        steps = 0
        while (column < num_episodes).any():
            action, log_prob, env_action = self._act(obs_norm, device)
            new_obs, next_obs, reward, terminated, truncated = self._step(env_action, column < num_episodes)
            O.append(obs_norm)
            A.append(action)
            LP.append(log_prob)
            R.append(reward)
            NO.append(next_obs)
            TE.append(terminated)
            TR.append(truncated)
            COL.append(column.copy())
            TIME.append(time.copy())
            done = terminated | truncated
            time = np.where(done, 0, time + 1)
            column = np.where(done, column + E, column)
            obs_norm = new_obs
            steps += E
            if steps > max_total_steps:
                raise RuntimeError(
                    f"collect_episodes: {steps} steps without finishing {num_episodes} episodes; does the "
                    "environment have a time limit? (make_vector_env(..., max_episode_steps=...))"
                )
        col, tim = np.stack(COL), np.stack(TIME)
        keep = col < num_episodes  # [S, E]: steps that belong to a requested episode
        c, t = col[keep], tim[keep]
        T = int(t.max()) + 1

        def scatter(x: np.ndarray, dtype=None) -> np.ndarray:
            out = np.zeros((T, num_episodes, *x.shape[2:]), dtype=dtype or x.dtype)
            out[t, c] = x[keep]
            return out

        mask = scatter(np.ones(col.shape, dtype=np.float32))
        actions = torch.stack(A)
        keep_t = torch.as_tensor(keep, device=actions.device)
        idx_t = torch.as_tensor(t, device=actions.device), torch.as_tensor(c, device=actions.device)
        act = actions.new_zeros((T, num_episodes, *actions.shape[2:]))
        act[idx_t] = actions[keep_t]
        log_probs = torch.stack(LP)
        lp = log_probs.new_zeros((T, num_episodes))
        lp[idx_t] = log_probs[keep_t]
        return self._to_batch(scatter(np.stack(O)), act, scatter(np.stack(R), np.float32),
                              scatter(np.stack(NO)), scatter(np.stack(TE)), scatter(np.stack(TR)), mask, lp)



class VectorEnvTrainer(TrainerBase):
    """What PPO, TRPO and REINFORCE share: a seeded set-up of a gymnasium vector env and a policy on it, and
    :meth:`close`. Subclasses call :meth:`_setup` first in ``__init__`` and build their optimisers, baselines
    and :class:`VectorSampler` after it (the order fixes which random numbers initialise which network)."""

    envs: VectorEnv
    policy: Any

    def _setup(self, config: Any, envs: VectorEnv | None) -> tuple[Any, Any]:
        """Seed everything, pick the device, build (or adopt) the vector env and the policy; returns the
        single observation and action spaces.

        Raises:
            ValueError: ``envs`` given with another number of sub-environments than ``config.num_envs``.
        """
        self.config = c = config
        set_seed(c.seed)
        self.device = resolve_device(c.device)
        physics = getattr(c, "physics", "mujoco")
        self.envs = envs if envs is not None else make_vector_env(
            c.env_id, c.num_envs, max_episode_steps=c.max_episode_steps, physics=physics, device=self.device)
        self._closed = False
        if self.envs.num_envs != c.num_envs:
            raise ValueError(f"config.num_envs={c.num_envs} but the environment has {self.envs.num_envs}")
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        self.policy = make_policy(obs_space, act_space, c.hidden_sizes, c.activation, c.init_log_std)
        self.policy.to(self.device)
        return obs_space, act_space

    def close(self) -> None:
        """Close the vector environment (idempotent)."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self.envs.close()
