r"""REINFORCE / vanilla policy gradient, with or without a baseline.

Chapter 1, sections "The policy gradient theorem" and "Variance and baselines". The policy gradient theorem
(eq. pg-theorem) turns the gradient of the expected return into an expectation we can sample,

.. math::
    \nabla_\theta J(\theta) = \mathbb E_{\tau\sim\pi_\theta}\Big[\sum_{t=0}^{T-1}
    \nabla_\theta \log \pi_\theta(a_t\mid s_t)\, \Psi_t\Big],

where :math:`\Psi_t` may be the whole return :math:`G_0` (eq. reinforce), the reward-to-go :math:`G_t`
(eq. reward-to-go), or the reward-to-go minus a baseline :math:`G_t - b(s_t)` (eq. baseline) — all three are
unbiased, the later ones with lower variance. With :math:`N` sampled episodes the estimator is

.. math::
    \hat g = \frac1N \sum_{i=1}^N \sum_{t} \nabla_\theta \log\pi_\theta(a^i_t\mid s^i_t)\, \Psi^i_t,

the gradient of minus the *surrogate loss* :func:`reinforce_loss`.

**Discounting.** With :math:`\gamma < 1` the exact gradient of :math:`J = \mathbb E[\sum_t\gamma^t r_t]`
weights step :math:`t` by :math:`\gamma^t` (eq. pg-discounted). Most implementations drop that factor (they
then follow a biased direction, Thomas 2014); ``discount_weighting=True`` keeps it.

Shapes: whole-episode batches ``[T, B]`` (one episode per column, padded, ``mask``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

from meta_rl_lessons.rl.advantages import (
    discounted_returns,
    gae,
    normalize_advantages,
)
from meta_rl_lessons.rl.baselines import StateBaseline
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.sampling import VectorEnvTrainer, VectorSampler
from meta_rl_lessons.rl.utils import (
    CSVLogger,
    check_config_choice,
    check_config_common,
    check_config_numbers,
    check_config_range,
    check_finite,
    check_positive_ints,
    check_state,
    config_state,
    make_adam,
)
from meta_rl_lessons.serialization import to_safe
from meta_rl_lessons.trainer import load_rng_state, rng_state

__all__ = ["REINFORCE", "REINFORCEConfig", "reinforce_loss", "reinforce_weights"]


def reinforce_loss(log_probs: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
    r"""Surrogate loss whose gradient is minus the REINFORCE estimator :math:`\hat g`.

    :math:`\mathcal L(\theta) = -\frac1N\sum_i \sum_t \mathrm{mask}^i_t \log\pi_\theta(a^i_t\mid s^i_t)\,
    \Psi^i_t`: summed over time, averaged over episodes (the columns; all batch dimensions count).

    Args:
        log_probs: ``[T, *B]`` :math:`\log\pi_\theta(a_t\mid s_t)`, differentiable w.r.t. :math:`\theta`.
        weights: ``[T, *B]`` :math:`\Psi_t` (treated as constants: detached here).
        mask: ``[T, *B]``.
    """
    if log_probs.shape != weights.shape or log_probs.shape != mask.shape:
        raise ValueError(
            f"reinforce_loss needs equal shapes [T, *B]; got log_probs {tuple(log_probs.shape)}, weights "
            f"{tuple(weights.shape)}, mask {tuple(mask.shape)}"
        )
    per_episode = (log_probs * weights.detach() * mask).sum(dim=0)
    return -per_episode.mean()


def reinforce_weights(
    batch: EpisodeBatch,
    gamma: float,
    reward_to_go: bool = True,
    values: Tensor | None = None,
    next_values: Tensor | None = None,
    gae_lambda: float = 1.0,
    discount_weighting: bool = False,
) -> Tensor:
    r"""The weights :math:`\Psi_t` ``[T, *B]`` of the REINFORCE estimator.

    * no ``values``: :math:`G_t` (``reward_to_go=True``, eq. reward-to-go) or :math:`G_0` for every step
      (eq. reinforce);
    * with ``values`` (:math:`V(s_t)`) and ``next_values`` (:math:`V(s'_t)`): GAE advantages (eq. gae); with
      ``gae_lambda=1`` this is :math:`G_t - V(s_t)` (eq. baseline).

    ``discount_weighting`` multiplies by :math:`\gamma^t` (eq. pg-discounted).
    """
    if values is None:
        ret = discounted_returns(batch.rewards, gamma, batch.terminated, batch.truncated, batch.mask)
        psi = ret if reward_to_go else ret[:1].expand_as(ret) * batch.mask
    else:
        if next_values is None:
            raise ValueError("reinforce_weights: values given without next_values")
        psi, _ = gae(batch.rewards, values, next_values, batch.terminated, batch.truncated, gamma, gae_lambda,
                     batch.mask)
    if discount_weighting:
        t = torch.arange(batch.horizon, device=batch.device, dtype=psi.dtype)
        psi = psi * (gamma**t).view(-1, *([1] * len(batch.batch_shape)))
    return psi


@dataclass
class REINFORCEConfig:
    """Hyper-parameters of :class:`REINFORCE`."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id (ignored when an environment is passed to :class:`REINFORCE`)."""
    num_envs: int = 8
    """Environments stepped together while collecting episodes."""
    episodes_per_iteration: int = 16
    """Whole episodes per gradient step (:math:`N`)."""
    max_episode_steps: int | None = None
    """Override of the environment's time limit."""
    iterations: int = 100
    """Number of gradient steps."""
    learning_rate: float = 1e-2
    """Adam step size of the policy."""
    gamma: float = 0.99
    r"""Discount factor :math:`\gamma`."""
    reward_to_go: bool = True
    r"""Weight :math:`\log\pi(a_t|s_t)` by :math:`G_t` (True) or by the whole return :math:`G_0` (False)."""
    baseline: str = "none"
    """``"none"``, ``"value"`` (an MLP fitted by Adam) or ``"linear"`` (eq. linear-baseline)."""
    gae_lambda: float = 1.0
    r"""With a baseline, GAE's :math:`\lambda` (1: :math:`G_t - b(s_t)`, unbiased)."""
    normalize_advantages: bool = False
    r"""Normalise :math:`\Psi_t` over the batch (changes the step size, keeps the direction's sign)."""
    discount_weighting: bool = False
    r"""Multiply step :math:`t` by :math:`\gamma^t` (the exact gradient of the discounted objective)."""
    value_learning_rate: float = 1e-3
    """Adam step size of the value network (``baseline="value"``)."""
    value_iters: int = 50
    """Full-batch Adam steps on the value network per iteration."""
    max_grad_norm: float = math.inf
    """Clip the policy gradient norm (``inf``: no clipping)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths."""
    activation: str = "tanh"
    """Hidden activation: ``"tanh"`` or ``"relu"``."""
    init_log_std: float = 0.0
    """Initial log-std of a Gaussian policy."""
    seed: int = 0
    """Seed for torch, NumPy and the environments."""
    device: str = "auto"
    """``"auto"``, ``"cpu"`` or ``"cuda"``."""
    progress: bool = True
    """Show a tqdm progress bar."""
    log_path: str | None = None
    """CSV file for per-iteration metrics (``None``: in memory only)."""

    def __post_init__(self) -> None:
        check_config_common(self)
        check_positive_ints(self, "num_envs", "episodes_per_iteration", "iterations", "value_iters")
        check_config_numbers(self, "learning_rate", "value_learning_rate")
        check_config_numbers(self, "max_grad_norm", allow_inf=True)
        check_config_range(self, "gamma", 0.0, 1.0, low_open=True)
        check_config_range(self, "gae_lambda", 0.0, 1.0)
        check_config_choice(self, "baseline", ("none", "value", "linear"))


class REINFORCE(VectorEnvTrainer):
    """REINFORCE trainer: ``REINFORCE(config).train()`` or one :meth:`iteration` at a time (the
    :class:`~meta_rl_lessons.trainer.Trainer` protocol).

    Attributes:
        policy: the policy (on ``device``); value: the value network (``baseline="value"``) or ``None``.
        baseline: the :class:`~meta_rl_lessons.rl.baselines.StateBaseline` (``config.baseline``).
        logger: per-iteration metrics.
    """

    name = "reinforce"
    return_key = "episode_return"

    def __init__(self, config: REINFORCEConfig, envs: gym.vector.VectorEnv | None = None) -> None:
        obs_space, _ = self._setup(config, envs)  # seeds, device, vector env, policy
        c = self.config
        self.optimizer = make_adam(self.policy.parameters(), c.learning_rate)
        self.baseline = StateBaseline(c.baseline, obs_space.shape[0], c.hidden_sizes, c.activation,
                                      c.value_learning_rate, c.value_iters, self.device)
        self.value = self.baseline.value
        self.sampler = VectorSampler(self.envs, self.policy, seed=c.seed)
        self.iterations_done = 0
        self.logger = CSVLogger(c.log_path)

    @property
    def total_iterations(self) -> int:
        """``config.iterations``."""
        return self.config.iterations

    def _fit_baseline(self, batch: EpisodeBatch) -> float:
        """Refit the baseline on Monte-Carlo returns, bootstrapped at truncations with its old values."""
        values = self.baseline.values(batch)
        if values is None:
            return math.nan
        targets = discounted_returns(batch.rewards, self.config.gamma, batch.terminated, batch.truncated,
                                     batch.mask, values[1])
        return self.baseline.fit(batch, targets, "REINFORCE")

    def iteration(self) -> dict[str, float]:
        """Collect episodes, take one gradient step on :func:`reinforce_loss`, refit the baseline."""
        c = self.config
        t0 = time.perf_counter()
        batch = self.sampler.collect_episodes(c.episodes_per_iteration)
        t1 = time.perf_counter()
        values, next_values = self.baseline.values(batch) or (None, None)
        psi = reinforce_weights(batch, c.gamma, c.reward_to_go, values, next_values, c.gae_lambda,
                                c.discount_weighting)
        if c.normalize_advantages:
            psi = normalize_advantages(psi, batch.mask)
        log_probs = self.policy(batch.observations).log_prob(batch.actions)
        loss = check_finite("REINFORCE loss", reinforce_loss(log_probs, psi, batch.mask))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        baseline_loss = self._fit_baseline(batch)
        t2 = time.perf_counter()
        self.iterations_done += 1
        episodes = self.sampler.pop_episode_stats()
        row = {
            "iteration": self.iterations_done,
            "env_steps": self.sampler.total_steps,
            "batch_steps": batch.num_steps,
            "episode_return": float(episodes["returns"].mean()),
            "episode_length": float(episodes["lengths"].mean()),
            "loss": loss.item(),
            "grad_norm": float(grad_norm),
            "baseline_loss": baseline_loss,
            "sample_time": t1 - t0,
            "update_time": t2 - t1,
        }
        self.logger.log(row)
        return row

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything the next iterations depend on (``weights_only``-safe): config, policy and its Adam
        state, value network and its Adam state (or the linear baseline's weights), the sampler (its
        environments) and the process-wide generators (actions are drawn from torch's)."""
        return to_safe({
            "config": config_state(self.config),
            "iterations_done": self.iterations_done,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
        })

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s result (also as read back by
        :func:`~meta_rl_lessons.serialization.load_checkpoint`) on a REINFORCE built from the same config.

        Raises:
            ValueError: missing entries, or a state saved with another config (naming the fields).
        """
        check_state("REINFORCE", self.config, state, ("iterations_done", "policy", "optimizer", "baseline",
                                                      "sampler", "rng"))
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline.load_state_dict(state["baseline"])
        self.sampler.load_state_dict(state["sampler"])
        self.iterations_done = int(state["iterations_done"])
        load_rng_state(state["rng"])  # last: nothing after it draws random numbers
