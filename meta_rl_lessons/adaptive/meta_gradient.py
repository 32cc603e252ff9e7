r"""Online meta-gradient RL (Xu, van Hasselt & Silver, 2018): adapt :math:`\gamma` (and :math:`\lambda`) while
the agent learns, by differentiating its own update through a validation objective.

The agent is an actor-critic with parameters :math:`\theta` (policy and value). Its update on a rollout
:math:`\tau` uses the :math:`\lambda`-return with meta-parameters :math:`\eta = (\gamma, \lambda)`

.. math::
    G^\eta_t = r_t + \gamma (1 - \mathrm{term}_t)\big[(1 - \lambda) V(s'_t) + \lambda G^\eta_{t+1}\big]
    \qquad (G^\eta_{t+1} := V(s'_t) \text{ at an episode or rollout end}),

    L(\theta; \tau, \eta) = -\mathbb E_t\big[(G^\eta_t - V_\theta(s_t))_{\perp}
    \log\pi_\theta(a_t\mid s_t)\big] + c_v \mathbb E_t\big[(G^\eta_t - V_\theta(s_t))^2\big]
    - c_H \mathbb E_t\, \mathcal H[\pi_\theta(\cdot\mid s_t)],

    \theta' = \theta - \alpha \nabla_\theta L(\theta; \tau, \eta),

(:math:`\perp`: no gradient w.r.t. :math:`\theta`; the bootstrap values are constants for :math:`\theta` too,
but :math:`G^\eta` stays a differentiable function of :math:`\eta`). The next rollout :math:`\tau'`, collected
with :math:`\theta'`, scores the update with a *validation* loss that uses fixed reference values
:math:`\bar\eta = (\bar\gamma, \bar\lambda)`:

.. math::
    L'(\theta'; \tau') = -\mathbb E_t\big[(G^{\bar\eta}_t - V_{\theta'}(s_t))_\perp
    \log \pi_{\theta'}(a_t\mid s_t)\big], \qquad
    \frac{d L'}{d\eta} = \frac{\partial L'}{\partial \theta'}\,\frac{d\theta'}{d\eta}, \quad
    \frac{d\theta'}{d\eta} = -\alpha \frac{\partial^2 L(\theta; \tau, \eta)}{\partial\theta\,\partial\eta}.

Autograd computes this product exactly: :func:`inner_update` builds :math:`\theta'` with
``create_graph=True`` and :func:`meta_gradient` backpropagates :math:`L'` into :math:`\eta`. We keep
:math:`\gamma, \lambda \in (0, 1)` by learning their logits with Adam (meta step size ``meta_lr``).
This is Xu et al.'s algorithm with the trace decay :math:`\mu = 0` (only the last update is
differentiated), SGD as the inner optimiser, and without their conditioning of the networks on :math:`\eta`.

Online, each rollout serves twice: as :math:`\tau'` to score the previous update (meta step), then as
:math:`\tau` for the next update. :class:`MetaGradientAC` runs that loop; ``meta_lr=0`` gives the same agent
with fixed :math:`\gamma, \lambda` (the baseline).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import ValueNetwork, make_policy
from meta_rl_lessons.rl.sampling import VectorSampler, make_vector_env
from meta_rl_lessons.rl.utils import CSVLogger, check_positive_ints, set_seed

__all__ = ["MetaGradientAC", "MetaGradientConfig", "inner_loss", "inner_update", "lambda_returns",
           "meta_gradient", "validation_advantages", "validation_loss"]

Params = dict[str, Tensor]


def lambda_returns(rewards: Tensor, next_values: Tensor, terminated: Tensor, truncated: Tensor,
                   gamma: Tensor | float, lam: Tensor | float) -> Tensor:
    r""":math:`G^\eta_t` of the module docstring for ``[T, B]`` tensors, differentiable in ``gamma`` and
    ``lam`` (pass tensors that require grad). The rollout is cut after row ``T - 1`` (bootstrap there)."""
    T = rewards.shape[0]
    end = (terminated | truncated).clone()
    end[-1] = True
    not_term = (~terminated).to(rewards.dtype)
    cont = (~end).to(rewards.dtype)
    out = []
    g_next = next_values[-1]  # unused at t = T-1 (end there), any tensor of the right shape
    for t in range(T - 1, -1, -1):
        # G_t = r_t + gamma (1 - term_t) [V(s'_t) + lam (1 - end_t) (G_{t+1} - V(s'_t))]
        g = rewards[t] + gamma * not_term[t] * (next_values[t] + lam * cont[t] * (g_next - next_values[t]))
        out.append(g)
        g_next = g
    return torch.stack(out[::-1])


def _split(params: Mapping[str, Tensor]) -> tuple[Params, Params]:
    pi = {k[3:]: v for k, v in params.items() if k.startswith("pi.")}
    v = {k[2:]: t for k, t in params.items() if k.startswith("v.")}
    return pi, v


def inner_loss(params: Mapping[str, Tensor], batch: EpisodeBatch, policy, value, gamma: Tensor | float,
               lam: Tensor | float, value_coef: float = 0.5, entropy_coef: float = 0.01) -> Tensor:
    """:math:`L(\\theta; \\tau, \\eta)`: actor-critic loss with :math:`\\lambda`-returns (module docstring).

    ``params`` holds the policy's parameters under ``pi.<name>`` and the value network's under ``v.<name>``.
    """
    pi, v = _split(params)
    with torch.no_grad():
        next_v = value(batch.next_observations, params=v)  # bootstrap values: constants for theta
        v_old = value(batch.observations, params=v)
    G = lambda_returns(batch.rewards.to(next_v.dtype), next_v, batch.terminated, batch.truncated, gamma, lam)
    dist = policy(batch.observations, params=pi)
    logp = dist.log_prob(batch.actions)
    values = value(batch.observations, params=v)
    pg = -((G - v_old) * logp).mean()  # (G - V)_perp: no theta-gradient through the advantage
    vf = ((G - values) ** 2).mean()
    return pg + value_coef * vf - entropy_coef * dist.entropy().mean()


def inner_update(params: Mapping[str, Tensor], batch: EpisodeBatch, policy, value, gamma: Tensor | float,
                 lam: Tensor | float, lr: float, create_graph: bool = True,
                 max_grad_norm: float | None = None, value_coef: float = 0.5,
                 entropy_coef: float = 0.01) -> Params:
    r""":math:`\theta' = \theta - \alpha \nabla_\theta L`; with ``create_graph`` the result is differentiable
    in ``gamma``/``lam`` (and in ``params``). ``max_grad_norm`` clips the global gradient norm
    (differentiably)."""
    names = list(params)
    loss = inner_loss(params, batch, policy, value, gamma, lam, value_coef, entropy_coef)
    grads = torch.autograd.grad(loss, [params[k] for k in names], create_graph=create_graph)
    if max_grad_norm is not None:
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        scale = torch.clamp(max_grad_norm / (norm + 1e-6), max=1.0)
        grads = [g * scale for g in grads]
    return {k: params[k] - lr * g for k, g in zip(names, grads, strict=True)}


def validation_advantages(params: Mapping[str, Tensor], batch: EpisodeBatch, value, gamma_bar: float,
                          lam_bar: float) -> Tensor:
    r""":math:`G^{\bar\eta}_t - V_{\theta'}(s_t)`, without gradient: the constant weights of :math:`L'`."""
    _, v = _split(params)
    with torch.no_grad():
        next_v = value(batch.next_observations, params=v)
        v_old = value(batch.observations, params=v)
        G = lambda_returns(batch.rewards.to(next_v.dtype), next_v, batch.terminated, batch.truncated,
                           gamma_bar, lam_bar)
    return G - v_old


def validation_loss(params: Mapping[str, Tensor], batch: EpisodeBatch, policy, value, gamma_bar: float,
                    lam_bar: float, advantages: Tensor | None = None) -> Tensor:
    r""":math:`L'(\theta'; \tau')`: the policy-gradient loss with the fixed reference :math:`\bar\gamma,
    \bar\lambda`. Its advantages are constants (:func:`validation_advantages`, or ``advantages`` if given),
    so its gradient is the policy-gradient estimate :math:`-\mathbb E_t[\hat A'_t \nabla \log\pi_{\theta'}]`
    and the meta-gradient is that direction pulled back through the update."""
    pi, _ = _split(params)
    if advantages is None:
        advantages = validation_advantages(params, batch, value, gamma_bar, lam_bar)
    logp = policy(batch.observations, params=pi).log_prob(batch.actions)
    return -(advantages * logp).mean()


def meta_gradient(params: Mapping[str, Tensor], batch: EpisodeBatch, val_batch: EpisodeBatch, policy, value,
                  gamma: Tensor, lam: Tensor, lr: float, gamma_bar: float, lam_bar: float, **kw) -> Tensor:
    r""":math:`dL'(\theta'(\eta); \tau')/d\eta` for ``eta = (gamma, lam)`` (both 0-d tensors): one inner
    update on ``batch``, the validation loss on ``val_batch``. Returns ``[dL'/dgamma, dL'/dlam]``."""
    theta = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    new = inner_update(theta, batch, policy, value, gamma, lam, lr, create_graph=True, **kw)
    val = validation_loss(new, val_batch, policy, value, gamma_bar, lam_bar)
    g_gamma, g_lam = torch.autograd.grad(val, [gamma, lam], allow_unused=True)
    zero = torch.zeros((), dtype=gamma.dtype)
    return torch.stack([zero if g_gamma is None else g_gamma, zero if g_lam is None else g_lam])


@dataclass
class MetaGradientConfig:
    """Settings of :class:`MetaGradientAC`."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id (discrete or continuous actions)."""
    num_envs: int = 8
    """Environments stepped together."""
    num_steps: int = 32
    """Rollout length per environment (``T``); a rollout has ``num_envs * num_steps`` steps."""
    total_steps: int = 100_000
    """Environment steps to train for."""
    lr: float = 0.05
    r"""Inner SGD step size :math:`\alpha`."""
    max_grad_norm: float | None = 1.0
    """Global gradient-norm clip of the inner update (``None``: none)."""
    value_coef: float = 0.5
    """:math:`c_v`."""
    entropy_coef: float = 0.01
    """:math:`c_H`."""
    gamma: float = 0.9
    r"""Initial :math:`\gamma` (adapted)."""
    gae_lambda: float = 0.9
    r"""Initial :math:`\lambda` (adapted if ``adapt_lambda``)."""
    adapt_gamma: bool = True
    r"""Learn :math:`\gamma`."""
    adapt_lambda: bool = False
    r"""Learn :math:`\lambda`."""
    gamma_bar: float = 0.99
    r"""Reference :math:`\bar\gamma` of the validation loss."""
    lambda_bar: float = 1.0
    r"""Reference :math:`\bar\lambda` of the validation loss."""
    meta_lr: float = 0.01
    r"""Adam step size on the logits of :math:`\gamma, \lambda` (0: fixed :math:`\gamma, \lambda`)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of policy and value network."""
    activation: str = "tanh"
    """``"tanh"`` or ``"relu"``."""
    seed: int = 0
    """Seed of torch, NumPy and the environments."""

    def __post_init__(self) -> None:
        check_positive_ints(self, "num_envs", "num_steps", "total_steps")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"MetaGradientConfig.{name} must lie in (0, 1) (it is learned through its "
                                 f"logit), got {getattr(self, name)!r}")
        if not 0.0 <= self.gamma_bar <= 1.0 or not 0.0 <= self.lambda_bar <= 1.0:
            raise ValueError(f"gamma_bar and lambda_bar must lie in [0, 1], got {self.gamma_bar!r}, "
                             f"{self.lambda_bar!r}")
        if not (self.lr > 0 and self.meta_lr >= 0):
            raise ValueError(f"need lr > 0 and meta_lr >= 0, got lr={self.lr!r}, meta_lr={self.meta_lr!r}")
        self.hidden_sizes = tuple(self.hidden_sizes)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class MetaGradientAC:
    """Actor-critic whose :math:`\\gamma` (and :math:`\\lambda`) follow the meta-gradient, online.

    ``MetaGradientAC(config).train()`` returns a :class:`CSVLogger` whose rows hold ``env_steps``,
    ``episode_return``, ``gamma``, ``lambda``, ``meta_grad_gamma``, ``meta_grad_lambda``.
    """

    def __init__(self, config: MetaGradientConfig) -> None:
        self.config = c = config
        set_seed(c.seed)
        self.envs = make_vector_env(c.env_id, c.num_envs)
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        self.policy = make_policy(obs_space, act_space, c.hidden_sizes, c.activation)
        self.value = ValueNetwork(obs_space.shape[0], c.hidden_sizes, c.activation)
        self.sampler = VectorSampler(self.envs, self.policy, seed=c.seed)
        self.eta = torch.tensor([_logit(c.gamma), _logit(c.gae_lambda)], requires_grad=True)
        self.meta_opt = torch.optim.Adam([self.eta], lr=c.meta_lr if c.meta_lr > 0 else 1.0)
        self._pending: Params | None = None  # theta_k as a function of eta (graph of the last update)
        self.logger = CSVLogger(None)

    @property
    def gamma(self) -> float:
        return float(torch.sigmoid(self.eta[0].detach()))

    @property
    def gae_lambda(self) -> float:
        return float(torch.sigmoid(self.eta[1].detach()))

    def _params(self) -> Params:
        return {**{f"pi.{k}": p for k, p in self.policy.named_parameters()},
                **{f"v.{k}": p for k, p in self.value.named_parameters()}}

    def iteration(self) -> dict[str, float]:
        """Collect a rollout; meta step on it (scoring the previous update); inner update on it."""
        c = self.config
        batch = self.sampler.collect_steps(c.num_steps)
        meta = [math.nan, math.nan]
        if self._pending is not None and c.meta_lr > 0:
            val = validation_loss(self._pending, batch, self.policy, self.value, c.gamma_bar, c.lambda_bar)
            self.meta_opt.zero_grad()
            val.backward()
            mask = torch.tensor([float(c.adapt_gamma), float(c.adapt_lambda)])
            self.eta.grad *= mask
            meta = self.eta.grad.tolist()
            self.meta_opt.step()
        gamma, lam = torch.sigmoid(self.eta[0]), torch.sigmoid(self.eta[1])
        # a copy: the graph kept for the next meta step must not see the in-place update of the modules
        theta = {k: p.detach().clone().requires_grad_(True) for k, p in self._params().items()}
        new = inner_update(theta, batch, self.policy, self.value, gamma, lam, c.lr,
                           create_graph=c.meta_lr > 0, max_grad_norm=c.max_grad_norm,
                           value_coef=c.value_coef, entropy_coef=c.entropy_coef)
        with torch.no_grad():
            for k, p in self._params().items():
                p.copy_(new[k])
        self._pending = new if c.meta_lr > 0 else None
        ep = self.sampler.pop_episode_stats()["returns"]
        row = {"env_steps": self.sampler.total_steps,
               "episode_return": float(np.mean(ep)) if len(ep) else math.nan,
               "gamma": self.gamma, "lambda": self.gae_lambda,
               "meta_grad_gamma": meta[0], "meta_grad_lambda": meta[1]}
        self.logger.log(row)
        return row

    def train(self) -> CSVLogger:
        c = self.config
        for _ in range(max(1, c.total_steps // (c.num_envs * c.num_steps))):
            self.iteration()
        return self.logger
