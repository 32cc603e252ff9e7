r"""A tiny tabular MDP where the policy gradient is known *exactly*, to check estimators against it.

With a tabular softmax policy :math:`\pi_\theta(a\mid s) = \mathrm{softmax}(\theta_{s,\cdot})_a` the
state-to-state matrix and expected rewards of the policy are

.. math::
    P_\pi(s, s') = \sum_a \pi_\theta(a\mid s) P(s'\mid s, a), \qquad
    r_\pi(s) = \sum_a \pi_\theta(a\mid s) R(s, a),

and the expected discounted return from the start distribution :math:`\mu_0` is (eq. exact-return)

.. math::
    J(\theta) = \mu_0^\top (I - \gamma P_\pi)^{-1} r_\pi .

:func:`exact_return` computes it in float64 as a differentiable torch function, so ``torch.autograd`` gives
the exact :math:`\nabla_\theta J`; :func:`exact_policy_gradient` instead evaluates the policy gradient theorem
(eq. pg-theorem) in closed form, :math:`\nabla J = \sum_s d_\pi(s) \sum_a \pi(a\mid s)
\nabla\log\pi(a\mid s) Q_\pi(s, a)` with the discounted visitation
:math:`d_\pi = (I-\gamma P_\pi)^{-\top}\mu_0`.
Episodes end by *termination*: :math:`P(\cdot\mid s, a)` may sum to less than one, the rest is the probability
of stopping, so episodes are finite even with :math:`\gamma = 1`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from meta_rl_lessons.rl.batch import EpisodeBatch

__all__ = [
    "TabularMDP",
    "exact_policy_gradient",
    "exact_return",
    "per_episode_score_gradients",
    "random_tabular_mdp",
    "sample_episodes",
]


@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP with termination. Shapes: ``S`` states, ``A`` actions.

    Attributes:
        P: ``[S, A, S]`` transition probabilities; row sums ``<= 1``, the rest is the probability of stopping.
        R: ``[S, A]`` (deterministic) rewards.
        mu0: ``[S]`` start distribution.
        gamma: discount.
    """

    P: Tensor
    R: Tensor
    mu0: Tensor
    gamma: float = 1.0

    def __post_init__(self) -> None:
        S, A = self.R.shape
        if self.P.shape != (S, A, S) or self.mu0.shape != (S,):
            raise ValueError(f"need P [S, A, S], R [S, A], mu0 [S]; got {tuple(self.P.shape)}, "
                             f"{tuple(self.R.shape)}, {tuple(self.mu0.shape)}")
        if (self.P.sum(-1) > 1 + 1e-9).any() or (self.P < 0).any():
            raise ValueError("P(.|s, a) must be non-negative and sum to at most 1")

    @property
    def num_states(self) -> int:
        return self.R.shape[0]

    @property
    def num_actions(self) -> int:
        return self.R.shape[1]


def random_tabular_mdp(
    num_states: int = 3, num_actions: int = 2, stop_prob: float = 0.3, gamma: float = 1.0, seed: int = 0
) -> TabularMDP:
    """A random MDP (float64): each step stops with probability ``stop_prob``, rewards in ``[-1, 1]``."""
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(num_states, num_actions, num_states, generator=g, dtype=torch.float64) ** 3
    P = (1 - stop_prob) * P / P.sum(-1, keepdim=True)
    R = 2 * torch.rand(num_states, num_actions, generator=g, dtype=torch.float64) - 1
    mu0 = torch.full((num_states,), 1.0 / num_states, dtype=torch.float64)
    return TabularMDP(P, R, mu0, gamma)


def _policy_matrices(theta: Tensor, mdp: TabularMDP) -> tuple[Tensor, Tensor, Tensor]:
    pi = torch.softmax(theta, dim=-1)  # [S, A]
    P_pi = torch.einsum("sa,sat->st", pi, mdp.P)
    r_pi = (pi * mdp.R).sum(-1)
    return pi, P_pi, r_pi


def exact_return(theta: Tensor, mdp: TabularMDP) -> Tensor:
    r""":math:`J(\theta) = \mu_0^\top (I - \gamma P_\pi)^{-1} r_\pi` (eq. exact-return), differentiable.

    Args:
        theta: ``[S, A]`` logits of the tabular softmax policy.
    """
    _, P_pi, r_pi = _policy_matrices(theta, mdp)
    eye = torch.eye(mdp.num_states, dtype=P_pi.dtype)
    V = torch.linalg.solve(eye - mdp.gamma * P_pi, r_pi)
    return mdp.mu0 @ V


@torch.no_grad()
def exact_policy_gradient(theta: Tensor, mdp: TabularMDP) -> Tensor:
    r""":math:`\nabla_\theta J` ``[S, A]`` from the policy gradient theorem in closed form (eq. pg-theorem).

    For a softmax, :math:`\partial\log\pi(a\mid s)/\partial\theta_{s,b} = 1[a=b] - \pi(b\mid s)`, so
    :math:`\nabla_{\theta_{s,b}} J = d_\pi(s)\, \pi(b\mid s)\,(Q(s,b) - V(s))`.
    """
    pi, P_pi, r_pi = _policy_matrices(theta, mdp)
    eye = torch.eye(mdp.num_states, dtype=P_pi.dtype)
    V = torch.linalg.solve(eye - mdp.gamma * P_pi, r_pi)
    Q = mdp.R + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, V)
    d = torch.linalg.solve((eye - mdp.gamma * P_pi).T, mdp.mu0)  # discounted state visitation
    return d[:, None] * pi * (Q - V[:, None])


@torch.no_grad()
def sample_episodes(
    theta: Tensor, mdp: TabularMDP, num_episodes: int, generator: torch.Generator, max_steps: int = 200
) -> EpisodeBatch:
    """Sample ``num_episodes`` episodes at once (pure torch). Observations are one-hot states ``[S]``.

    Returns:
        :class:`EpisodeBatch` ``[T, num_episodes]``; episodes still running at ``max_steps`` are truncated
        (choose ``max_steps`` so that this practically never happens: it biases the estimators).
    """
    S = mdp.num_states
    pi = torch.softmax(theta, dim=-1)
    # the transition distribution with an extra "stopped" outcome at index S
    P_ext = torch.cat([mdp.P, (1 - mdp.P.sum(-1, keepdim=True)).clamp_min(0)], dim=-1)  # [S, A, S+1]
    state = torch.multinomial(mdp.mu0.expand(num_episodes, S), 1, generator=generator).squeeze(-1)
    alive = torch.ones(num_episodes, dtype=torch.bool)
    states, actions, rewards, nexts, terms, masks = [], [], [], [], [], []
    for _ in range(max_steps):
        a = torch.multinomial(pi[state], 1, generator=generator).squeeze(-1)
        nxt = torch.multinomial(P_ext[state, a], 1, generator=generator).squeeze(-1)
        states.append(torch.where(alive, state, 0))
        actions.append(torch.where(alive, a, 0))
        rewards.append(torch.where(alive, mdp.R[state, a], 0.0))
        stop = alive & (nxt == S)
        nexts.append(torch.where(alive & ~stop, nxt, S))
        terms.append(stop)
        masks.append(alive.to(torch.float64))
        alive = alive & ~stop
        state = torch.where(alive, nxt, 0)
        if not alive.any():
            break
    st, nx = torch.stack(states), torch.stack(nexts)
    eye = torch.cat([torch.eye(S, dtype=torch.float64), torch.zeros(1, S, dtype=torch.float64)])
    mask = torch.stack(masks)
    terminated = torch.stack(terms)
    truncated = torch.zeros_like(terminated)
    truncated[-1] = alive  # still running at max_steps
    return EpisodeBatch(
        observations=eye[st] * mask.unsqueeze(-1),
        actions=torch.stack(actions),
        rewards=torch.stack(rewards),
        next_observations=eye[nx] * mask.unsqueeze(-1),
        terminated=terminated,
        truncated=truncated,
        mask=mask,
    )


def per_episode_score_gradients(theta: Tensor, batch: EpisodeBatch, weights: Tensor) -> Tensor:
    r"""Each episode's REINFORCE gradient :math:`\sum_t \nabla\log\pi(a_t\mid s_t)\Psi_t`, ``[N, S, A]``.

    Closed form for the tabular softmax:
    :math:`\nabla_{\theta_{s,\cdot}} \log\pi(a\mid s) = e_a - \pi(\cdot\mid s)` (eq. softmax-score),
    so estimator *variances* can be measured per episode without ``N`` backward passes.
    """
    pi = torch.softmax(theta.detach(), dim=-1)  # [S, A]
    S, A = pi.shape
    onehot_s = batch.observations  # [T, N, S]
    onehot_a = torch.nn.functional.one_hot(batch.actions, A).to(pi.dtype)  # [T, N, A]
    score = onehot_a - onehot_s @ pi  # [T, N, A]  (rows of padding: masked below)
    w = (weights * batch.mask).unsqueeze(-1)
    return torch.einsum("tns,tna->nsa", onehot_s, score * w)
