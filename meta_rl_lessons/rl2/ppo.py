r"""Recurrent PPO over whole RL² trials (the RL² chapter, section "The recurrent PPO objective").

One iteration:

1. sample ``num_trials`` trials, each on a fresh task, with the current GRU policy
   (:class:`~meta_rl_lessons.rl2.sampler.TrialSampler`): a batch ``[T, N]``;
2. advantages by GAE (eq. rl2-gae) **across the episode boundaries inside a trial**. RL² turns the task
   distribution into one POMDP whose episode is the trial, and whose state includes the unknown task; the
   value :math:`V(h_t)` reads the whole history, so the reward of the next episode *is* future reward of
   the current decision (exploring now pays off later). Inner episode ends are therefore neither terminal
   nor bootstrapping points: ``terminated = truncated = 0`` there, and :math:`\delta_t = r_t + \gamma
   V(h_{t+1}) - V(h_t)` runs straight through. The end of the trial is terminal: the objective (eq.
   rl2-objective) is the trial's return and nothing after it counts, so :math:`V = 0` after the last step
   (even though the environment reports the last inner episode as *truncated* by its time limit);
3. ``update_epochs`` passes over minibatches of **whole trials** (``num_minibatches`` of them): the GRU
   is re-run from :math:`h_0 = 0` over each trial with the current parameters (full backpropagation through
   time, or truncated to ``bptt`` steps), and Adam minimises (eq. rl2-ppo)

   .. math::
      L(\theta) = -\frac{1}{|M|}\sum_{(t,i)\in M} \min\big(\rho_{t,i} \hat A_{t,i},\,
        \mathrm{clip}(\rho_{t,i}, 1-\epsilon, 1+\epsilon) \hat A_{t,i}\big)
      + c_v \frac{1}{|M|}\sum_{(t,i)\in M} \big(V_\theta(h_{t,i}) - \hat R_{t,i}\big)^2
      - c_H \frac{1}{|M|}\sum_{(t,i)\in M} \mathcal H[\pi_\theta(\cdot \mid h_{t,i})],

   with :math:`\rho_{t,i} = \pi_\theta(a_{t,i}\mid h_{t,i}) / \pi_{\theta_\text{old}}(a_{t,i}\mid
   h^\text{old}_{t,i})`, :math:`M` the real (unpadded) steps of the minibatch's trials, and the gradient
   norm clipped. Note that :math:`h_{t,i}` depends on :math:`\theta` through every earlier step of the
   trial; that is what backpropagation through time differentiates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from meta_rl_lessons.envs import check_family, make_family
from meta_rl_lessons.rl.advantages import gae
from meta_rl_lessons.rl.advantages import normalize_advantages as _normalize
from meta_rl_lessons.rl.losses import clipped_surrogate, explained_variance, masked_mean, value_loss
from meta_rl_lessons.rl.utils import (
    CSVLogger,
    anneal_learning_rate,
    check_config_choice,
    check_config_common,
    check_config_numbers,
    check_config_range,
    check_finite,
    check_positive_ints,
    check_state,
    config_state,
    resolve_device,
    set_seed,
)
from meta_rl_lessons.rl2.policy import RL2Policy
from meta_rl_lessons.rl2.sampler import TrialBatch, TrialSampler
from meta_rl_lessons.serialization import to_safe
from meta_rl_lessons.trainer import TrainerBase, load_rng_state, rng_state

__all__ = ["BANDIT_DEFAULTS", "FAMILY_RECIPES", "MDP_DEFAULTS", "RL2Config", "RL2Trainer", "bandit_config",
           "mdp_config", "recurrent_ppo_loss",
           "trial_advantages"]


@dataclass
class RL2Config:
    """Hyper-parameters of :class:`RL2Trainer` (defaults: 5-armed bandits, n = 10 pulls)."""

    family: str = "BernoulliBandit"
    """Task family name (``BernoulliBandit``, ``TabularMDP``, ``Navigation2D``)."""
    family_kwargs: dict[str, Any] = field(default_factory=lambda: {"num_arms": 5, "episode_length": 1})
    """Keyword arguments of the family (bandits: one pull per episode, as in Duan et al.)."""
    episodes_per_trial: int = 10
    """``n``: episodes per trial (pulls, for the bandits)."""
    num_trials: int = 1024
    """Trials per iteration, each on a freshly sampled task (``N``)."""
    total_iterations: int = 100
    """Iterations of sample-then-update."""
    split: str | None = None
    """Task split for training (``None``: the whole task distribution, as in the paper's tables)."""
    hidden_size: int = 128
    """GRU state size ``H`` (Duan et al. used 256)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    adam_eps: float = 1e-5
    """Adam's epsilon."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over ``total_iterations``."""
    gamma: float = 0.99
    r"""Discount :math:`\gamma` inside a trial (across its episodes)."""
    gae_lambda: float = 0.95
    r"""GAE :math:`\lambda`."""
    clip_coef: float = 0.2
    r"""PPO clipping :math:`\epsilon` (eq. rl2-ppo)."""
    update_epochs: int = 8
    """Passes over each batch."""
    num_minibatches: int = 16
    """Minibatches of whole trials per pass."""
    value_coef: float = 0.5
    """:math:`c_v`, weight of the value loss."""
    entropy_coef: float = 0.01
    """:math:`c_H`, weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradient-norm clipping threshold (``inf``: none)."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch over its real steps."""
    reward_scale: float | None = None
    r"""Rewards are multiplied by this for learning only. ``None``: :math:`1 / \sum_{t<T}\gamma^t` for trials
    of ``T`` steps, so value targets are about one mean reward. (Unscaled, the value loss of a long trial
    dominates the shared GRU's clipped gradient and the policy barely moves.)"""
    bptt: int | None = None
    """Truncated BPTT length in steps (``None``: backpropagate through the whole trial)."""
    seed: int = 0
    """Seeds torch, the task draws and the environment."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto``."""
    num_threads: int | None = None
    """``torch.set_num_threads`` for training (``None``: leave torch's setting)."""
    log_path: str | None = None
    """CSV file for the per-iteration metrics (``None``: in memory only)."""

    def __post_init__(self) -> None:
        # Every message names RL2Config.<field>, the value and what is allowed.
        check_positive_ints(self, "episodes_per_trial", "num_trials", "total_iterations", "hidden_size",
                            "update_epochs", "num_minibatches")
        if self.num_minibatches > self.num_trials:
            raise ValueError(f"RL2Config.num_minibatches={self.num_minibatches} exceeds num_trials="
                             f"{self.num_trials}: a minibatch holds whole trials")
        check_config_numbers(self, "learning_rate", "adam_eps", "clip_coef")
        check_config_numbers(self, "max_grad_norm", allow_inf=True)
        if self.reward_scale is not None:
            check_config_numbers(self, "reward_scale")
        check_config_range(self, "gamma", 0.0, 1.0)
        check_config_range(self, "gae_lambda", 0.0, 1.0)
        check_config_numbers(self, "value_coef", "entropy_coef", allow_zero=True)
        for name in ("bptt", "num_threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"RL2Config.{name} must be None or a positive integer, got {v!r}")
        check_config_choice(self, "split", (None, "train", "test"))
        check_config_common(self)  # seed, device, bool flags, log_path
        check_family("RL2Config", self.family, self.family_kwargs)


#: Defaults of :func:`bandit_config`: the recipe of the RL² chapter's study (``rl2.study``, study
#: ``bandit-n100k5``, three seeds per arm). What mattered most was the number of gradient steps per batch:
#: 256 trials in 8 minibatches of whole trials, 8 epochs (64 Adam steps per iteration) learned fastest per
#: environment step, and per second, of every arm; 2 minibatches x 4 epochs left most seeds at the random
#: level for the whole run. A GRU of 256 units, 1024 trials per iteration, lambda = 1, truncated BPTT (10
#: steps) and no entropy bonus did not help. For n = 10 pulls the same recipe runs with 1024 trials.
BANDIT_DEFAULTS: dict[str, Any] = {"num_trials": 256, "num_minibatches": 8, "update_epochs": 8,
                                   "hidden_size": 128, "learning_rate": 2e-3, "anneal_lr": True,
                                   "gamma": 0.99, "gae_lambda": 0.95, "entropy_coef": 0.01}


def bandit_config(num_pulls: int, num_arms: int, **overrides: Any) -> RL2Config:
    """A config for Bernoulli bandits with ``num_pulls`` one-pull episodes per trial (Duan et al. Table 1),
    with :data:`BANDIT_DEFAULTS` unless overridden."""
    return RL2Config(family="BernoulliBandit", family_kwargs={"num_arms": num_arms, "episode_length": 1},
                     episodes_per_trial=num_pulls, **{**BANDIT_DEFAULTS, **overrides})


#: Defaults of :func:`mdp_config`. The return after an action in a 100-step MDP trial (Gaussian rewards,
#: random transitions) is so noisy that with gamma = 0.99 and batches of a few hundred trials RL² stayed at
#: the random level for minutes of training; a short horizon (gamma 0.8, lambda 0.9), 512 trials per
#: iteration and 4 epochs (8 epochs over 128 trials fitted noise: entropy fell, return flat) learned.
#: The price: a more myopic learner. (The chapter's study ``mdp-n10`` compares gamma 0.8, 0.9 and 0.99.)
MDP_DEFAULTS: dict[str, Any] = {"gamma": 0.8, "gae_lambda": 0.9, "num_trials": 512, "update_epochs": 4,
                                "num_minibatches": 8, "learning_rate": 2e-3, "hidden_size": 128}

#: The recipe per task family that ``meta-rl train rl2 --budget book`` starts from (``experiments.preset``).
FAMILY_RECIPES: dict[str, dict[str, Any]] = {"BernoulliBandit": BANDIT_DEFAULTS, "TabularMDP": MDP_DEFAULTS}


def mdp_config(num_episodes: int, **overrides: Any) -> RL2Config:
    """A config for random tabular MDPs (10 states, 5 actions, 10 steps per episode; Duan et al. Table 2),
    with :data:`MDP_DEFAULTS` unless overridden."""
    return RL2Config(family="TabularMDP",
                     family_kwargs={"num_states": 10, "num_actions": 5, "episode_length": 10},
                     episodes_per_trial=num_episodes, **{**MDP_DEFAULTS, **overrides})


@torch.no_grad()
def trial_advantages(trials: TrialBatch, gamma: float, lam: float,
                     reward_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""GAE over whole trials (eq. rl2-gae), ``(advantages, returns)`` each ``[T, N]``.

    Inner episode ends are ignored (the recursion runs through them); the trial's last step is terminal:
    ``terminated = trial end``, ``truncated = 0``; :math:`V(h_{t+1})` is the next step's value in the trial.
    """
    b = trials.batch
    values = trials.values
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])], 0)
    trial_end = b.terminated | b.truncated
    return gae(b.rewards * reward_scale, values, next_values, trial_end, torch.zeros_like(trial_end),
               gamma, lam, b.mask)


def recurrent_ppo_loss(policy: RL2Policy, observations: Tensor, actions: Tensor, old_log_probs: Tensor,
                       advantages: Tensor, returns: Tensor, mask: Tensor, clip_coef: float, value_coef: float,
                       entropy_coef: float, normalize_advantages: bool = True,
                       bptt: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    r"""The recurrent PPO loss (eq. rl2-ppo) of a minibatch of whole trials.

    Args:
        observations: ``[T, n, D]`` augmented observations of ``n`` whole trials (from their first step).
        actions: ``[T, n]`` (discrete) or ``[T, n, act_dim]``; old_log_probs, advantages, returns, mask:
            ``[T, n]``.
        bptt: truncated-BPTT length (``None``: full).

    Returns:
        ``(loss, stats)``: the scalar loss and detached ``policy_loss``, ``value_loss``, ``entropy``,
        ``approx_kl``, ``clip_fraction``.
    """
    dist, values, _ = policy(observations, bptt=bptt)  # the GRU from h_0 = 0 over the whole trials
    n = mask.sum()
    if n < 1:
        raise ValueError("recurrent_ppo_loss: the minibatch has no real steps (mask is all zero)")
    adv = advantages
    if normalize_advantages:
        # One real step has no spread: its centred advantage is exactly 0 (what dividing 0 by 1e-8 gave)
        adv = _normalize(adv, mask) if n >= 2 else torch.zeros_like(adv)
    pg, stats = clipped_surrogate(dist.log_prob(actions), old_log_probs, adv, clip_coef, mask)  # (ppo-clip)
    v_loss = value_loss(values, returns, mask=mask)
    entropy = masked_mean(dist.entropy(), mask)
    loss = pg + value_coef * v_loss - entropy_coef * entropy
    stats = {"policy_loss": pg.detach(), "value_loss": v_loss.detach(), "entropy": entropy.detach(), **stats}
    return loss, stats


class RL2Trainer(TrainerBase):
    """RL² with recurrent PPO: ``RL2Trainer(config).train()``, or one :meth:`iteration` at a time.

    Follows the trainer protocol (:mod:`meta_rl_lessons.trainer`): ``train(callback)`` (a callback
    returning ``False`` stops), a complete :meth:`state_dict`, ``close()``.

    Attributes:
        policy: the :class:`RL2Policy`; sampler: the training :class:`TrialSampler`;
        logger: :class:`CSVLogger`, one row per iteration (``trial_return`` is the mean total reward of the
        iteration's training trials under the sampling policy); train_time: seconds spent in
        :meth:`iteration` so far (the ``train_time`` column).
    """

    name = "rl2"
    return_key = "trial_return"

    def __init__(self, config: RL2Config) -> None:
        self.config = c = config
        if c.num_threads is not None:
            torch.set_num_threads(c.num_threads)
        set_seed(c.seed)
        self.device = resolve_device(c.device)
        self.family = make_family(c.family, **c.family_kwargs)
        self.sampler = TrialSampler(self.family, c.num_trials, c.episodes_per_trial, device=self.device,
                                    seed=c.seed, split=c.split)
        self.policy = RL2Policy.for_env(self.sampler.env, c.hidden_size).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.learning_rate, eps=c.adam_eps)
        self.logger = CSVLogger(c.log_path)
        T = self.sampler.env.max_episode_steps
        self.reward_scale = c.reward_scale if c.reward_scale is not None else \
            1.0 / sum(c.gamma ** t for t in range(T))
        self.iterations_done = 0
        self.train_time = 0.0

    @property
    def total_iterations(self) -> int:
        """Iterations of a full run (``config.total_iterations``)."""
        return self.config.total_iterations

    def update(self, trials: TrialBatch) -> dict[str, float]:
        """Minibatch epochs of the recurrent PPO loss on one batch of trials."""
        c = self.config
        adv, ret = trial_advantages(trials, c.gamma, c.gae_lambda, self.reward_scale)
        b = trials.batch
        N = b.rewards.shape[1]
        stats: dict[str, list[float]] = {}
        for _ in range(c.update_epochs):
            perm = torch.randperm(N, device=self.device)
            for idx in perm.chunk(c.num_minibatches):  # minibatches of whole trials
                loss, s = recurrent_ppo_loss(
                    self.policy, b.observations[:, idx], b.actions[:, idx], b.log_probs[:, idx], adv[:, idx],
                    ret[:, idx], b.mask[:, idx], c.clip_coef, c.value_coef, c.entropy_coef,
                    c.normalize_advantages, c.bptt)
                check_finite("RL² recurrent PPO loss", loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if math.isfinite(c.max_grad_norm):
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                self.optimizer.step()
                for k, v in s.items():
                    stats.setdefault(k, []).append(float(v))
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out["explained_variance"] = explained_variance(ret, trials.values, b.mask)
        return out

    def iteration(self) -> dict[str, float]:
        """Sample one batch of trials, update on it, log and return the metrics."""
        c = self.config
        if c.anneal_lr:
            anneal_learning_rate(self.optimizer, c.learning_rate, self.iterations_done / c.total_iterations)
        t0 = time.perf_counter()
        trials = self.sampler.sample(self.policy)
        t1 = time.perf_counter()
        metrics = self.update(trials)
        t2 = time.perf_counter()
        self.train_time += t2 - t0
        self.iterations_done += 1
        row = {"iteration": self.iterations_done, "env_steps": self.sampler.total_steps,
               "trial_return": float(trials.trial_returns().mean()), **metrics,
               "sample_time": t1 - t0, "update_time": t2 - t1, "train_time": self.train_time}
        self.logger.log(row)
        return row

    def evaluation_split(self) -> str | None:
        """The split evaluation tasks are drawn from: ``"test"`` (held out) when training draws from
        ``"train"``, else ``None`` (the whole distribution, as in the paper's bandit and MDP tables)."""
        return "test" if self.config.split == "train" else None

    @torch.no_grad()
    def evaluate(self, tasks: list[Any] | None = None, num_tasks: int = 1000, seed: int = 12345,
                 deterministic: bool = False) -> TrialBatch:
        """Run one trial on each of ``tasks`` with the current policy; returns the :class:`TrialBatch`.

        Default tasks: ``family.sample_tasks(num_tasks, seed, split=self.evaluation_split())``; for a run
        trained on the ``"train"`` split these are the held-out test tasks that MAML's evaluation draws with
        the same ``(num_tasks, seed)``, so the two methods are compared on identical tasks.
        """
        if tasks is None:
            tasks = self.family.sample_tasks(num_tasks, seed, split=self.evaluation_split())
        sampler = TrialSampler(self.family, len(tasks), self.config.episodes_per_trial, device=self.device,
                               seed=seed)
        return sampler.sample(self.policy, tasks, deterministic=deterministic)

    def state_dict(self) -> dict[str, Any]:
        """Everything the next iterations depend on (a ``weights_only``-safe snapshot): the config, the GRU
        policy, Adam's moments, the iteration count and ``train_time``, the sampler (task generator,
        environment generators, step count) and the process-wide generators (actions, minibatches)."""
        return to_safe({"config": config_state(self.config), "policy": self.policy.state_dict(),
                        "optimizer": self.optimizer.state_dict(), "iterations_done": self.iterations_done,
                        "train_time": self.train_time, "sampler": self.sampler.state_dict(),
                        "rng": rng_state()})

    def save(self, path: str) -> None:
        """:meth:`state_dict` written atomically (:func:`~meta_rl_lessons.serialization.save_checkpoint`)."""
        from meta_rl_lessons.serialization import save_checkpoint

        save_checkpoint(self.state_dict(), path)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (as returned, or as read back by
        :func:`~meta_rl_lessons.serialization.load_checkpoint`), on a trainer built from the same config.

        Raises:
            ValueError: a state with missing entries or saved with another config (naming the fields).
        """
        check_state(type(self).__name__, self.config, state,
                    ("policy", "optimizer", "iterations_done", "train_time", "sampler", "rng"))
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iterations_done = int(state["iterations_done"])
        self.train_time = float(state["train_time"])
        self.sampler.load_state_dict(state["sampler"])
        load_rng_state(state["rng"])  # last: nothing may draw after it
