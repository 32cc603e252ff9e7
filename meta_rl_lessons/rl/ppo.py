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
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from meta_rl_lessons.rl.advantages import gae
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import ValueNetwork, make_policy
from meta_rl_lessons.rl.sampling import VectorSampler, check_physics, make_vector_env
from meta_rl_lessons.rl.utils import (
    CSVLogger,
    RunningMeanStd,
    anneal_learning_rate,
    check_finite,
    check_positive,
    check_positive_ints,
    make_adam,
    progress,
    resolve_device,
    set_seed,
)

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
        check_positive_ints(self, "num_envs", "num_steps", "total_steps", "update_epochs", "minibatch_size")
        check_physics(self.env_id, self.physics)
        for name in ("learning_rate", "adam_eps", "clip_coef", "max_grad_norm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and not math.isnan(value)):
                raise ValueError(f"PPOConfig.{name} must be > 0, got {value!r}")
        for name in ("value_coef", "entropy_coef"):
            check_positive(f"PPOConfig.{name}", getattr(self, name), allow_zero=True)
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PPOConfig.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if self.target_kl is not None:
            check_positive("PPOConfig.target_kl", self.target_kl)
        batch = self.num_envs * self.num_steps
        if batch % self.minibatch_size != 0:
            raise ValueError(
                f"PPOConfig.minibatch_size={self.minibatch_size} must divide num_envs * num_steps = {batch}"
            )
        self.hidden_sizes = tuple(self.hidden_sizes)


class PPO:
    """PPO trainer: ``PPO(config).train()``; or one iteration at a time with :meth:`iteration`.

    Attributes:
        policy, value: the networks (on ``device``).
        sampler: the :class:`VectorSampler` (its ``obs_normalizer`` holds the observation statistics).
        logger: :class:`CSVLogger` with one row of metrics per iteration.
    """

    def __init__(self, config: PPOConfig, envs: gym.vector.VectorEnv | None = None) -> None:
        self.config = c = config
        set_seed(c.seed)
        self.device = resolve_device(c.device)
        self.envs = envs if envs is not None else make_vector_env(
            c.env_id, c.num_envs, max_episode_steps=c.max_episode_steps, physics=c.physics,
            device=self.device)
        if self.envs.num_envs != c.num_envs:
            raise ValueError(f"config.num_envs={c.num_envs} but the environment has {self.envs.num_envs}")
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        self.policy = make_policy(obs_space, act_space, c.hidden_sizes, c.activation, c.init_log_std)
        self.policy.to(self.device)
        self.value = ValueNetwork(obs_space.shape[0], c.hidden_sizes, c.activation).to(self.device)
        self.optimizer = make_adam([*self.policy.parameters(), *self.value.parameters()], c.learning_rate,
                                   c.adam_eps)
        obs_rms = RunningMeanStd(obs_space.shape) if c.normalize_observations else None
        self.sampler = VectorSampler(self.envs, self.policy, seed=c.seed, obs_normalizer=obs_rms)
        self.return_rms = RunningMeanStd(()) if c.normalize_rewards else None
        self._discounted = np.zeros(c.num_envs)  # running discounted return, for reward normalisation
        self.num_iterations = max(1, c.total_steps // (c.num_envs * c.num_steps))
        self.iterations_done = 0
        self.logger = CSVLogger(c.log_path)

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

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        """Minibatch epochs of the clipped objective on one rollout; returns the iteration's metrics."""
        c = self.config
        adv, ret, old_values = self.advantages(batch)
        n = batch.rewards.numel()
        obs = batch.observations.reshape(n, -1)
        actions = batch.actions.reshape(n, *batch.actions.shape[2:])
        old_logp, adv, ret, old_values = (x.reshape(n) for x in (batch.log_probs, adv, ret, old_values))
        params = [*self.policy.parameters(), *self.value.parameters()]
        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
        stats: list[Tensor] = []  # one row of the metrics above per minibatch, read out once at the end
        stopped_early = False
        for _epoch in range(c.update_epochs):
            perm = torch.randperm(n, device=self.device)
            for start in range(0, n, c.minibatch_size):
                idx = perm[start:start + c.minibatch_size]
                dist = self.policy(obs[idx])
                logp = dist.log_prob(actions[idx])
                log_ratio = logp - old_logp[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                if c.target_kl is not None and approx_kl > 1.5 * c.target_kl:
                    stopped_early = True
                    break
                a = adv[idx]
                if c.normalize_advantages and a.numel() > 1:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                # (eq. ppo-clip): pessimistic bound of the unclipped and clipped surrogate
                pg_loss = -torch.min(ratio * a, ratio.clamp(1 - c.clip_coef, 1 + c.clip_coef) * a).mean()
                v = self.value(obs[idx])
                if c.clip_value_loss:
                    v_clip = old_values[idx] + (v - old_values[idx]).clamp(-c.clip_coef, c.clip_coef)
                    v_loss = torch.max((v - ret[idx]) ** 2, (v_clip - ret[idx]) ** 2).mean()
                else:
                    v_loss = ((v - ret[idx]) ** 2).mean()
                entropy = dist.entropy().mean()
                loss = check_finite("PPO loss", pg_loss + c.value_coef * v_loss - c.entropy_coef * entropy)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if math.isfinite(c.max_grad_norm):
                    torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    clip_fraction = ((ratio - 1).abs() > c.clip_coef).float().mean()
                    stats.append(torch.stack([pg_loss, v_loss, entropy, approx_kl, clip_fraction]))
            if stopped_early:
                break
        means = torch.stack(stats).mean(0).tolist() if stats else [math.nan] * len(names)
        out = dict(zip(names, means, strict=True))
        var_ret = ret.var()
        out["explained_variance"] = float(1 - (ret - old_values).var() / var_ret) if var_ret > 0 else math.nan
        out["stopped_early"] = float(stopped_early)
        out["minibatch_steps"] = float(len(stats))
        return out

    def iteration(self) -> dict[str, float]:
        """Collect one rollout and update on it; returns (and logs) the metrics."""
        c = self.config
        if c.anneal_lr:
            anneal_learning_rate(self.optimizer, c.learning_rate, self.iterations_done / self.num_iterations)
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

    def train(self) -> CSVLogger:
        """Run ``total_steps // (num_envs * num_steps)`` iterations; returns the metrics logger."""
        bar = progress(total=self.num_iterations, desc="PPO", enabled=self.config.progress)
        last_return = math.nan
        while self.iterations_done < self.num_iterations:
            row = self.iteration()
            if not math.isnan(row["episode_return"]):
                last_return = row["episode_return"]
            bar.set_postfix(ret=f"{last_return:.1f}", kl=f"{row['approx_kl']:.3f}", refresh=False)
            bar.update(1)
        bar.close()
        return self.logger

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to act (and resume): networks, optimiser, normalisation statistics, config."""
        rms = self.sampler.obs_normalizer
        return {
            "config": asdict(self.config),
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_rms": None if rms is None else rms.state_dict(),
            "return_rms": None if self.return_rms is None else self.return_rms.state_dict(),
            "iterations_done": self.iterations_done,
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["obs_rms"] is not None:
            if self.sampler.obs_normalizer is None:
                raise ValueError("checkpoint has observation statistics but normalize_observations=False")
            self.sampler.obs_normalizer.load_state_dict(state["obs_rms"])
        if state["return_rms"] is not None and self.return_rms is not None:
            self.return_rms.load_state_dict(state["return_rms"])
        self.iterations_done = int(state["iterations_done"])

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for raw observations ``[N, obs_dim]`` (normalised with the saved statistics)."""
        rms = self.sampler.obs_normalizer
        x = obs if rms is None else rms.normalize(obs)
        x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)
        a = self.policy.mode(x) if deterministic else self.policy(x).sample()
        return a.cpu().numpy()
