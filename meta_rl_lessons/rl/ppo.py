r"""Proximal policy optimisation (PPO) with the clipped objective, GAE and minibatch epochs.

Chapter 1, section "PPO". One iteration:

1. collect ``num_steps`` steps from each of ``num_envs`` environments with the current policy
   :math:`\pi_{\theta_\text{old}}` (:meth:`~meta_rl_lessons.rl.sampling.VectorSampler.collect_steps`);
2. compute :math:`V(s_t)`, :math:`V(s'_t)` and GAE advantages :math:`\hat A_t` (eq. gae) and
   :math:`\lambda`-returns :math:`\hat R_t = \hat A_t + V(s_t)` as value targets;
3. for ``update_epochs`` epochs, over shuffled minibatches, take an Adam step on

   .. math::
       L(\theta, \phi) = -\underbrace{\mathbb E_t\big[\min(\rho_t \hat A_t,\;
       \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\hat A_t)\big]}_{\text{(eq. ppo-clip)}}
       + c_v\, \mathbb E_t\big[(V_\phi(s_t) - \hat R_t)^2\big]
       - c_H\, \mathbb E_t\big[\mathcal H[\pi_\theta(\cdot\mid s_t)]\big],
       \qquad \rho_t = \frac{\pi_\theta(a_t\mid s_t)}{\pi_{\theta_\text{old}}(a_t\mid s_t)},

   optionally with the value loss clipped around the old values, the advantages normalised per minibatch,
   the gradient norm clipped, and the epochs stopped early once the approximate KL
   :math:`\hat{\mathrm{KL}} = \mathbb E_t[(\rho_t - 1) - \log \rho_t]` exceeds ``1.5 * target_kl``.

Shapes: the rollout is ``[T = num_steps, B = num_envs]``; the update flattens it to ``[T * B]`` and cuts it
into minibatches of ``minibatch_size`` rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from meta_rl_lessons.rl.advantages import gae
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.losses import clipped_surrogate, explained_variance, value_loss
from meta_rl_lessons.rl.policies import ValueNetwork
from meta_rl_lessons.rl.sampling import VectorEnvTrainer, VectorSampler, check_physics
from meta_rl_lessons.rl.utils import (
    CSVLogger,
    RunningMeanStd,
    anneal_learning_rate,
    check_config_common,
    check_config_numbers,
    check_config_range,
    check_finite,
    check_positive_ints,
    check_state,
    config_state,
    make_adam,
)
from meta_rl_lessons.serialization import from_safe, to_safe
from meta_rl_lessons.trainer import load_rng_state, rng_state

__all__ = ["PPO", "PPOConfig"]


@dataclass
class PPOConfig:
    """Hyper-parameters of :class:`PPO` (defaults: CleanRL's ``ppo.py`` for CartPole, with 8 environments)."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id (ignored when an environment is passed to :class:`PPO`)."""
    num_envs: int = 8
    """Environments stepped together; a rollout has ``num_envs * num_steps`` steps."""
    num_steps: int = 128
    """Steps per environment per rollout (``T``)."""
    total_steps: int = 100_000
    """Environment steps to train for (all environments together)."""
    max_episode_steps: int | None = None
    """Override of the environment's time limit (``None``: the registered one)."""
    physics: str = "mujoco"
    """``"mujoco"``: ``env_id`` as registered; ``"warp"``: MuJoCo Warp physics for a MetaRL locomotion id, on
    ``device`` (see :func:`~meta_rl_lessons.rl.sampling.make_vector_env`; ignored when an environment is
    passed to :class:`PPO`)."""
    learning_rate: float = 2.5e-4
    r"""Adam step size :math:`\alpha` (shared by policy and value network)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    adam_eps: float = 1e-5
    """Adam's epsilon (1e-5 as in the PPO reference implementations, not torch's 1e-8)."""
    gamma: float = 0.99
    r"""Discount factor :math:`\gamma`."""
    gae_lambda: float = 0.95
    r"""GAE :math:`\lambda` (eq. gae): 0 gives TD errors, 1 Monte-Carlo advantages."""
    update_epochs: int = 4
    """Passes over each rollout."""
    minibatch_size: int = 256
    """Rows per gradient step; must divide ``num_envs * num_steps`` (SB3 calls it ``batch_size``)."""
    clip_coef: float = 0.2
    r"""Ratio clipping :math:`\epsilon` in (eq. ppo-clip)."""
    clip_value_loss: bool = False
    """Clip the value prediction to ``V_old +- clip_coef`` and take the larger loss (OpenAI baselines)."""
    value_coef: float = 0.5
    """:math:`c_v`, weight of the value loss (a mean squared error)."""
    entropy_coef: float = 0.0
    """:math:`c_H`, weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this value (``inf`` disables)."""
    target_kl: float | None = None
    """Stop this iteration's epochs once the approximate KL exceeds ``1.5 * target_kl`` (``None``: never)."""
    normalize_advantages: bool = True
    """Normalise advantages to mean 0, std 1 within each minibatch."""
    normalize_observations: bool = False
    """Normalise observations with a running mean/std (saved in :meth:`PPO.state_dict`)."""
    normalize_rewards: bool = False
    """Divide rewards by the running std of the discounted return (as SB3's ``VecNormalize``)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy and of the (separate) value network."""
    activation: str = "tanh"
    """Hidden activation: ``"tanh"`` or ``"relu"``."""
    init_log_std: float = 0.0
    """Initial log standard deviation of a Gaussian policy (continuous actions only)."""
    seed: int = 0
    """Seed for torch, NumPy and the environments."""
    device: str = "auto"
    """``"auto"``, ``"cpu"`` or ``"cuda"``: where the networks and batches live."""
    progress: bool = True
    """Show a tqdm progress bar."""
    log_path: str | None = None
    """CSV file for per-iteration metrics (``None``: keep them in memory, ``PPO.logger.rows``)."""

    def __post_init__(self) -> None:
        check_config_common(self)
        check_positive_ints(self, "num_envs", "num_steps", "total_steps", "update_epochs", "minibatch_size")
        check_physics(self.env_id, self.physics)
        check_config_numbers(self, "learning_rate", "adam_eps", "clip_coef")
        check_config_numbers(self, "max_grad_norm", allow_inf=True)
        check_config_numbers(self, "value_coef", "entropy_coef", allow_zero=True)
        check_config_range(self, "gamma", 0.0, 1.0, low_open=True)
        check_config_range(self, "gae_lambda", 0.0, 1.0)
        if self.target_kl is not None:
            check_config_numbers(self, "target_kl")
        batch = self.num_envs * self.num_steps
        if self.minibatch_size > batch:
            raise ValueError(f"PPOConfig.minibatch_size={self.minibatch_size} exceeds the rollout: "
                             f"num_envs * num_steps = {batch}")
        if batch % self.minibatch_size != 0:
            raise ValueError(
                f"PPOConfig.minibatch_size={self.minibatch_size} must divide num_envs * num_steps = {batch}"
            )


class PPO(VectorEnvTrainer):
    """PPO trainer: ``PPO(config).train()``; or one iteration at a time with :meth:`iteration` (the
    :class:`~meta_rl_lessons.trainer.Trainer` protocol).

    Attributes:
        policy, value: the networks (on ``device``).
        sampler: the :class:`VectorSampler` (its ``obs_normalizer`` holds the observation statistics).
        logger: :class:`CSVLogger` with one row of metrics per iteration.
    """

    name = "ppo"
    return_key = "episode_return"
    #: The entries of :meth:`state_dict` that make up the learner (networks, optimiser, normalisers): what
    #: PBT's exploit copies from another trial (:mod:`meta_rl_lessons.adaptive.trial`).
    LEARNER_KEYS = ("policy", "value", "optimizer", "obs_rms", "return_rms")

    def __init__(self, config: PPOConfig, envs: gym.vector.VectorEnv | None = None) -> None:
        obs_space, _ = self._setup(config, envs)  # seeds, device, vector env, policy
        c = self.config
        self.value = ValueNetwork(obs_space.shape[0], c.hidden_sizes, c.activation).to(self.device)
        self.optimizer = make_adam([*self.policy.parameters(), *self.value.parameters()], c.learning_rate,
                                   c.adam_eps)
        obs_rms = RunningMeanStd(obs_space.shape) if c.normalize_observations else None
        self.sampler = VectorSampler(self.envs, self.policy, seed=c.seed, obs_normalizer=obs_rms)
        self.return_rms = RunningMeanStd(()) if c.normalize_rewards else None
        self._discounted = np.zeros(c.num_envs)  # running discounted return, for reward normalisation
        self.iterations_done = 0
        self.logger = CSVLogger(c.log_path)

    @property
    def total_iterations(self) -> int:
        """``total_steps // (num_envs * num_steps)`` rollouts (at least one)."""
        c = self.config
        return max(1, c.total_steps // (c.num_envs * c.num_steps))

    # ------------------------------------------------------------------ pieces
    def _scale_rewards(self, batch: EpisodeBatch) -> Tensor:
        """Rewards divided by the running std of the discounted return (SB3 ``VecNormalize`` semantics)."""
        if self.return_rms is None:
            return batch.rewards
        rewards = batch.rewards.cpu().numpy().astype(np.float64)
        dones = batch.dones.cpu().numpy()
        discounted = np.empty_like(rewards)  # running discounted return of each environment, step by step
        for t in range(rewards.shape[0]):
            self._discounted = self._discounted * self.config.gamma + rewards[t]
            discounted[t] = self._discounted
            self._discounted[dones[t]] = 0.0
        variances = self.return_rms.update_sequence(discounted)  # [T]: the statistics after each step
        out = np.clip(rewards / np.sqrt(variances[:, None] + 1e-8), -10.0, 10.0)
        return torch.as_tensor(out, dtype=batch.rewards.dtype, device=batch.device)

    @torch.no_grad()
    def advantages(self, batch: EpisodeBatch) -> tuple[Tensor, Tensor, Tensor]:
        """``(advantages, returns, values)``, each ``[T, B]``: GAE (eq. gae), bootstrapping from
        :math:`V(s'_t)` at truncations and at the end of the rollout."""
        values = self.value(batch.observations)
        next_values = self.value(batch.next_observations)
        rewards = self._scale_rewards(batch)
        c = self.config
        adv, ret = gae(rewards, values, next_values, batch.terminated, batch.truncated, c.gamma, c.gae_lambda,
                       batch.mask)
        return adv, ret, values

    def loss(self, obs: Tensor, actions: Tensor, old_log_probs: Tensor, advantages: Tensor, returns: Tensor,
             old_values: Tensor) -> tuple[Tensor, Tensor]:
        """The loss of one minibatch (all arguments ``[M, ...]``, from the rollout) and its statistics
        ``[policy_loss, value_loss, entropy, approx_kl, clip_fraction]`` (detached)."""
        c = self.config
        if c.normalize_advantages and advantages.numel() > 1:
            # per minibatch; not normalize_advantages(), whose masked sums round differently from mean/std
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        dist = self.policy(obs)
        policy_loss, diag = clipped_surrogate(dist.log_prob(actions), old_log_probs, advantages, c.clip_coef)
        v_loss = value_loss(self.value(obs), returns, old_values if c.clip_value_loss else None, c.clip_coef)
        entropy = dist.entropy().mean()
        loss = policy_loss + c.value_coef * v_loss - c.entropy_coef * entropy
        stats = torch.stack([policy_loss, v_loss, entropy, diag["approx_kl"], diag["clip_fraction"]])
        return loss, stats.detach()

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        """Minibatch epochs of the clipped objective on one rollout; returns the iteration's metrics."""
        c = self.config
        adv, ret, old_values = self.advantages(batch)
        n = batch.rewards.numel()  # the rollout [T, B] flattened to n = T * B rows
        obs = batch.observations.reshape(n, -1)
        actions = batch.actions.reshape(n, *batch.actions.shape[2:])
        old_logp, adv, ret, old_values = (x.reshape(n) for x in (batch.log_probs, adv, ret, old_values))
        params = [*self.policy.parameters(), *self.value.parameters()]
        stats: list[Tensor] = []  # one row per minibatch step, read out once at the end
        stopped_early = False
        for _epoch in range(c.update_epochs):
            for idx in torch.randperm(n, device=self.device).split(c.minibatch_size):
                loss, row = self.loss(obs[idx], actions[idx], old_logp[idx], adv[idx], ret[idx],
                                      old_values[idx])
                if c.target_kl is not None and row[3] > 1.5 * c.target_kl:  # row[3]: approx_kl, moved too far
                    stopped_early = True
                    break
                self.optimizer.zero_grad(set_to_none=True)
                check_finite("PPO loss", loss).backward()
                if math.isfinite(c.max_grad_norm):
                    torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                self.optimizer.step()
                stats.append(row)
            if stopped_early:
                break
        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
        means = torch.stack(stats).mean(0).tolist() if stats else [math.nan] * len(names)
        return {**dict(zip(names, means, strict=True)),
                "explained_variance": explained_variance(ret, old_values),
                "stopped_early": float(stopped_early), "minibatch_steps": float(len(stats))}

    def iteration(self) -> dict[str, float]:
        """Collect one rollout and update on it; returns (and logs) the metrics."""
        c = self.config
        if c.anneal_lr:
            done = self.iterations_done / self.total_iterations
            anneal_learning_rate(self.optimizer, c.learning_rate, done)
        t0 = time.perf_counter()
        batch = self.sampler.collect_steps(c.num_steps)
        t1 = time.perf_counter()
        metrics = self.update(batch)
        t2 = time.perf_counter()
        self.iterations_done += 1
        episodes = self.sampler.pop_episode_stats()
        row = {
            "iteration": self.iterations_done,
            "env_steps": self.sampler.total_steps,
            "episode_return": float(episodes["returns"].mean()) if len(episodes["returns"]) else math.nan,
            "episode_length": float(episodes["lengths"].mean()) if len(episodes["lengths"]) else math.nan,
            "episodes": len(episodes["returns"]),
            **metrics,
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "sample_time": t1 - t0,
            "update_time": t2 - t1,
        }
        self.logger.log(row)
        return row

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything the next iterations depend on (``weights_only``-safe): config, networks, optimiser,
        normalisation statistics, the running discounted returns of reward normalisation, the sampler (its
        running episodes and environments) and the process-wide generators the iterations draw from."""
        rms = self.sampler.obs_normalizer
        return to_safe({
            "config": config_state(self.config),
            "iterations_done": self.iterations_done,
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_rms": None if rms is None else rms.state_dict(),
            "return_rms": None if self.return_rms is None else self.return_rms.state_dict(),
            "discounted": self._discounted.copy(),
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
        })

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s result (also as read back by
        :func:`~meta_rl_lessons.serialization.load_checkpoint`) on a PPO built from the same config.

        Raises:
            ValueError: missing entries, or a state saved with another config (naming the fields).
        """
        check_state("PPO", self.config, state,
                    ("iterations_done", *self.LEARNER_KEYS, "discounted", "sampler", "rng"))
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        for name, rms in (("obs_rms", self.sampler.obs_normalizer), ("return_rms", self.return_rms)):
            if (state[name] is None) != (rms is None):  # (the config check already refuses this)
                theirs, mine = ("absent" if x is None else "set" for x in (state[name], rms))
                raise ValueError(f"PPO.load_state_dict: {name} is {theirs} in the state but {mine} here")
            if rms is not None:
                rms.load_state_dict(state[name])
        discounted = np.array(from_safe(state["discounted"]), dtype=np.float64)
        if discounted.shape != self._discounted.shape:
            raise ValueError(f"PPO.load_state_dict: discounted has shape {discounted.shape}, expected "
                             f"{self._discounted.shape} ([num_envs])")
        self._discounted = discounted
        self.sampler.load_state_dict(state["sampler"])
        self.iterations_done = int(state["iterations_done"])
        load_rng_state(state["rng"])  # last: nothing after it draws random numbers

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for raw observations ``[N, obs_dim]`` (normalised with the saved statistics)."""
        rms = self.sampler.obs_normalizer
        x = obs if rms is None else rms.normalize(obs)
        x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)
        a = self.policy.mode(x) if deterministic else self.policy(x).sample()
        return a.cpu().numpy()
