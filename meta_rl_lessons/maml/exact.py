r"""Exact MAML-RL meta-gradients on a tabular MDP small enough to enumerate every batch.

Chapter "MAML for RL" (``chapters/02b-maml-rl.ipynb``), section "An exact reference with longer episodes".
On an MDP with ``S`` states, ``A`` actions, Bernoulli rewards and horizon ``H`` an episode has
:math:`(2A)^H S^{H-1}` possible outcomes, so a batch of ``E`` episodes has finitely many values. That makes
two things computable exactly, by summing over every batch with its probability:

* the meta-objective (eq. ``maml-rl-objective``) :math:`J(\theta) = \sum_{\mathcal D} P_\theta(\mathcal D)\,
  F(\theta'(\theta, \mathcal D))`, with :math:`F` the discounted return of a policy computed by propagating
  the state distribution (no sampling), and :math:`\nabla J` by autograd. With several inner steps the sum
  runs over every sequence of batches :math:`\mathcal D^{(1)}, \mathcal D^{(2)}, \dots`, each sampled by
  the parameters of its step;
* the *expectation* of every estimator: the estimator's loss on each possible (pre-update batches,
  post-update batch) outcome, weighted by the outcome's probability, differentiated once.

The inner step :math:`\theta'(\theta, \mathcal D)` and each estimator's loss are the package's own functions
(:func:`~meta_rl_lessons.maml.rl.config_task_data`, :func:`~meta_rl_lessons.maml.rl.adapt`,
:func:`~meta_rl_lessons.maml.rl.outer_loss`), called on the enumerated batches stacked as if each were a task
of one meta-batch; the probabilities, the returns and the objective are computed here, independently of
them. The tests (``tests/test_maml_exact.py``) check :math:`\nabla J` against finite differences, DiCE's
expectation against :math:`\nabla J`, and the trainer's sampled meta-gradients against these expectations.

DiCE's leave-one-task-out baseline :math:`b_k` is independent of task ``k``'s episodes, so in expectation it
acts as its mean, the constant :math:`J(\theta)` (each other task's :math:`\hat F_j` has mean :math:`J`); the
enumeration uses that constant.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from meta_rl_lessons.envs.tabular_mdp import MDPTask, TabularMDPFamily
from meta_rl_lessons.maml import rl as maml_rl
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.trpo import flat_concat

__all__ = ["EnumeratedBatches", "enumerate_batches", "exact_estimator_mean", "exact_meta_gradients",
           "exact_objective", "exact_return", "generic_policy", "relative_error", "small_mdp",
           "small_mdp_config"]


def small_mdp() -> tuple[TabularMDPFamily, MDPTask]:
    """The chapter's and the tests' MDP: 2 states, 2 actions, Bernoulli rewards, horizon 2.

    The numbers are arbitrary but generic: every transition and reward has probability strictly between 0
    and 1, state 1 pays more than state 0, and the action that pays now (action 0 in state 0) tends to lead
    to the poorer state, so a good policy must look one step ahead.
    """
    family = TabularMDPFamily(num_states=2, num_actions=2, episode_length=2, reward_noise="bernoulli")
    task = family.validate(MDPTask(transitions=[[[0.8, 0.2], [0.3, 0.7]], [[0.6, 0.4], [0.1, 0.9]]],
                                   reward_means=[[0.6, 0.2], [0.9, 0.4]]))
    return family, task


def small_mdp_config(**overrides) -> maml_rl.MAMLTRPOConfig:
    """A MAML-TRPO configuration for :func:`small_mdp`: two episodes per batch, a 3-unit tanh policy,
    :math:`\\gamma = \\alpha = 0.5`, the linear baseline, no normalisation; ``overrides`` replace fields."""
    fields = dict(family="TabularMDP", family_kwargs=dict(num_states=2, num_actions=2, episode_length=2,
                                                          reward_noise="bernoulli"),
                  meta_batch_size=2, num_episodes=2, gamma=0.5, inner_lr=0.5, baseline=True,
                  normalize_advantages=False, hidden_sizes=(3,), seed=0)
    return maml_rl.MAMLTRPOConfig(**{**fields, **overrides})


def generic_policy(config: maml_rl.MAMLTRPOConfig, family: TabularMDPFamily, seed: int = 123,
                   scale: float = 0.8) -> maml_rl.Policy:
    """The trainer's policy for ``config``, in float64, with every parameter drawn from
    :math:`\\mathcal N(0, \\mathrm{scale}^2)`: a generic point (the default initialisation gives nearly
    uniform action probabilities, where some terms vanish by symmetry)."""
    trainer = maml_rl.MAMLTRPO(config, family=family)
    policy = trainer.policy.double()
    trainer.close()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return policy


@dataclass
class EnumeratedBatches:
    """Every batch of ``E`` episodes of an MDP, stacked along the task axis of an EpisodeBatch.

    ``batch`` has batch shape ``(N, E)`` (``N`` batches). A batch is a *multiset* of episodes: every
    quantity the estimators compute is symmetric in the order of the episodes, so each multiset stands for
    all its orderings. ``log_weight [N]`` is the log of (number of orderings) x (probability of the
    rewards and transitions), everything in the batch's probability but the actions, which does not depend
    on the policy.
    """

    batch: EpisodeBatch
    log_weight: Tensor

    @property
    def num_batches(self) -> int:
        return self.log_weight.shape[0]


def enumerate_batches(family: TabularMDPFamily, task: MDPTask, num_episodes: int,
                      dtype: torch.dtype = torch.float64) -> EnumeratedBatches:
    """Every batch of ``E = num_episodes`` episodes starting in state 0 (multisets of the
    :math:`n = (2A)^H S^{H-1}` possible episodes: :math:`\\binom{n + E - 1}{E}` of them)."""
    if family.reward_noise != "bernoulli":
        raise ValueError(f"enumeration needs reward_noise='bernoulli' (finitely many rewards), got "
                         f"{family.reward_noise!r}")
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    S, A, H = family.num_states, family.num_actions, family.episode_length
    n = (2 * A) ** H * S ** (H - 1)
    count = math.comb(n + num_episodes - 1, num_episodes)
    if count > 100_000:
        raise ValueError(f"{count} batches are too many to enumerate (S={S}, A={A}, H={H}, "
                         f"E={num_episodes}); use a smaller MDP or fewer episodes")
    P = torch.tensor(task.transitions, dtype=dtype)
    mu = torch.tensor(task.reward_means, dtype=dtype)
    states, actions, rewards, log_env = [], [], [], []
    # One episode: an action and a reward per step, and the next state of every step but the last (the state
    # after the horizon is never used: the episode is over).
    for acts in itertools.product(range(A), repeat=H):
        for rews in itertools.product((0, 1), repeat=H):
            for nxt in itertools.product(range(S), repeat=H - 1):
                s = (0, *nxt)
                lp = 0.0
                for t in range(H):
                    m = float(mu[s[t], acts[t]])
                    lp += math.log(m if rews[t] else 1.0 - m)
                    if t + 1 < H:
                        lp += math.log(float(P[s[t], acts[t], s[t + 1]]))
                states.append(s)
                actions.append(acts)
                rewards.append(rews)
                log_env.append(lp)
    s_ep = torch.tensor(states)  # [n, H]
    a_ep = torch.tensor(actions)
    r_ep = torch.tensor(rewards, dtype=dtype)
    lenv_ep = torch.tensor(log_env, dtype=dtype)
    combos = list(itertools.combinations_with_replacement(range(n), num_episodes))
    idx = torch.tensor(combos).view(-1, num_episodes)  # [N, E]
    orderings = torch.tensor([math.factorial(num_episodes)
                              / math.prod(math.factorial(c.count(i)) for i in set(c)) for c in combos],
                             dtype=dtype)
    eye = torch.eye(S, dtype=dtype)
    obs = eye[s_ep[idx]].permute(2, 0, 1, 3)  # [H, N, E, S]
    nxt_states = torch.cat([s_ep[:, 1:], s_ep[:, -1:]], dim=1)  # last: any state, never used
    next_obs = eye[nxt_states[idx]].permute(2, 0, 1, 3)
    shape = (H, *idx.shape)
    truncated = torch.zeros(shape, dtype=torch.bool)
    truncated[-1] = True
    batch = EpisodeBatch(observations=obs, actions=a_ep[idx].permute(2, 0, 1),
                         rewards=r_ep[idx].permute(2, 0, 1), next_observations=next_obs,
                         terminated=torch.zeros(shape, dtype=torch.bool), truncated=truncated,
                         mask=torch.ones(shape, dtype=dtype))
    return EnumeratedBatches(batch, lenv_ep[idx].sum(-1) + orderings.log())


def exact_return(policy: maml_rl.Policy, params: dict[str, Tensor], family: TabularMDPFamily, task: MDPTask,
                 gamma: float) -> Tensor:
    r""":math:`F(\theta_k) = \mathbb E[\sum_{t<H}\gamma^t r_t]` for stacked parameters ``[K, *shape]``:
    ``[K]``.

    Forward recursion of the state distribution :math:`d_t` (start: state 0):
    :math:`F = \sum_t\gamma^t\sum_{s,a} d_t(s)\,\pi(a\mid s)\,\mu(s,a)`,
    :math:`d_{t+1}(s') = \sum_{s,a} d_t(s)\,\pi(a\mid s)\,P(s'\mid s,a)`. Differentiable in ``params``.
    """
    K = next(iter(params.values())).shape[0]
    dtype = next(iter(params.values())).dtype
    S = family.num_states
    P = torch.tensor(task.transitions, dtype=dtype)
    mu = torch.tensor(task.reward_means, dtype=dtype)
    every_state = torch.eye(S, dtype=dtype).unsqueeze(0).expand(K, S, S)
    pi = policy.per_task(every_state, params).probs  # [K, S, A]
    d = torch.zeros(K, S, dtype=dtype)
    d[:, 0] = 1.0
    F = torch.zeros(K, dtype=dtype)
    for t in range(family.episode_length):
        joint = d.unsqueeze(-1) * pi  # [K, S, A]
        F = F + gamma**t * (joint * mu).sum(dim=(1, 2))
        d = torch.einsum("ksa,sap->kp", joint, P)
    return F


def _take(data: maml_rl.TaskData, idx: Tensor) -> maml_rl.TaskData:
    """The tasks ``idx`` of a TaskData (rows may repeat)."""
    fields = (data.obs, data.actions, data.mask, data.weights, data.returns, data.scale, data.num_steps)
    return maml_rl.TaskData(*(x.index_select(0, idx) for x in fields))


def _masked_sum(x: Tensor, data: maml_rl.TaskData) -> Tensor:
    return (x * data.mask).sum(dim=(1, 2))


@dataclass
class _Tree:
    """The outcomes after some inner steps: one node per sequence of pre-update batches."""

    params: dict[str, Tensor]  # adapted parameters per node [N, *shape] (graph to theta)
    log_prob: Tensor  # log-probability of the node's sequence of batches [N] (a function of theta)
    pre_log_probs: list[Tensor]  # per step: log pi of that step's batch under its sampler [N, T, E]
    pre_data: list[maml_rl.TaskData]  # per step: that step's TaskData, one row per node


def _reinforce_step(policy: maml_rl.Policy, params: dict[str, Tensor], data: maml_rl.TaskData,
                    inner_lr: float) -> dict[str, Tensor]:
    r"""The inner step (eq. ``maml-rl-inner``) written out independently of
    :func:`~meta_rl_lessons.maml.rl.adapt`: :math:`\theta'_k = \theta_k + \alpha\nabla\hat{\mathbb E}
    [\log\pi_{\theta_k}(a\mid s)\,\Psi]`, averaged over each task's real steps, the graph kept."""
    tracking = torch.is_grad_enabled()  # under no_grad (a value only): differentiate fresh leaves
    with torch.enable_grad():
        inputs = {n: p if tracking and p.requires_grad else p.detach().requires_grad_(True)
                  for n, p in params.items()}
        logp = policy.per_task(data.obs, inputs).log_prob(data.actions)
        objective = (logp * data.weights * data.mask).sum(dim=(1, 2)) / data.num_steps.clamp_min(1.0)
        grads = torch.autograd.grad(objective.sum(), list(inputs.values()), create_graph=tracking)
    return {n: p + inner_lr * g for (n, p), g in zip(inputs.items(), grads, strict=True)}


def _grow(policy: maml_rl.Policy, config: maml_rl.MAMLTRPOConfig, family: TabularMDPFamily, task: MDPTask,
          estimator: str | None, first_order: bool = False) -> _Tree:
    """Every sequence of ``config.inner_steps`` pre-update batches; ``estimator=None``: the reference (the
    inner step of :func:`_reinforce_step`), else the package's :func:`~meta_rl_lessons.maml.rl.adapt`."""
    c = config
    params = dict(policy.named_parameters())
    pre = enumerate_batches(family, task, c.num_episodes, dtype=next(iter(params.values())).dtype)
    data = maml_rl.config_task_data(pre.batch, replace(c, estimator=estimator or "maml"))
    nb = pre.num_batches
    root = {n: p.unsqueeze(0) for n, p in params.items()}
    tree = _Tree(root, torch.zeros(1, dtype=pre.log_weight.dtype), [], [])
    for _ in range(c.inner_steps):
        nodes = tree.log_prob.shape[0]
        parent = torch.arange(nodes).repeat_interleave(nb)
        child = torch.arange(nb).repeat(nodes)
        stacked = {n: p.index_select(0, parent) for n, p in tree.params.items()}
        step_data = _take(data, child)
        logp = policy.per_task(step_data.obs, stacked).log_prob(step_data.actions)
        log_prob = (tree.log_prob.index_select(0, parent) + _masked_sum(logp, step_data)
                    + pre.log_weight[child])
        if estimator is None:
            adapted = _reinforce_step(policy, stacked, step_data, c.inner_lr)
        else:
            adapted = maml_rl.adapt(policy, stacked, step_data, c.inner_lr, estimator, create_graph=True,
                                    first_order=first_order)
        tree = _Tree(adapted, log_prob, [x.index_select(0, parent) for x in tree.pre_log_probs] + [logp],
                     [_take(d, parent) for d in tree.pre_data] + [step_data])
    return tree


def exact_objective(policy: maml_rl.Policy, config: maml_rl.MAMLTRPOConfig, family: TabularMDPFamily,
                    task: MDPTask) -> Tensor:
    r""":math:`J(\theta)` (eq. ``maml-rl-objective``) of the trainer's settings, exactly; differentiable.

    Uses ``config``'s ``inner_lr``, ``inner_steps``, ``num_episodes`` (per inner step), ``gamma``,
    ``gae_lambda``, ``baseline`` and ``normalize_advantages`` (the inner step sees what the trainer's does:
    the same advantages, from :func:`~meta_rl_lessons.maml.rl.config_task_data`; the step itself is
    written out here, so that a slip in the package's :func:`~meta_rl_lessons.maml.rl.adapt` cannot change
    the reference).
    """
    tree = _grow(policy, config, family, task, None)
    return (tree.log_prob.exp() * exact_return(policy, tree.params, family, task, config.gamma)).sum()


def exact_estimator_mean(policy: maml_rl.Policy, config: maml_rl.MAMLTRPOConfig, family: TabularMDPFamily,
                         task: MDPTask, score_baseline: float | None = None) -> Tensor:
    r"""The expectation of ``config.estimator``'s meta-gradient (ascent direction, flat ``[n]``), exactly.

    The sum over every outcome (pre-update batches of each inner step, then the post-update batch) of its
    probability times the gradient of the estimator's loss on it: what the trainer's
    :meth:`~meta_rl_lessons.maml.rl.MAMLTRPO.meta_gradient` returns on average, up to the sign.

    Args:
        score_baseline: DiCE's baseline (default: the exact :math:`J(\theta)`, the mean of the
            leave-one-task-out baseline of a meta-batch of independent tasks).
    """
    c = config
    params = dict(policy.named_parameters())
    theta = list(params.values())
    tree = _grow(policy, c, family, task, c.estimator, c.first_order)
    dtype = theta[0].dtype
    post = enumerate_batches(family, task, c.num_episodes, dtype=dtype)
    post_data = maml_rl.config_task_data(post.batch, c, post=True)
    nodes, nb = tree.log_prob.shape[0], post.num_batches
    parent = torch.arange(nodes).repeat_interleave(nb)
    child = torch.arange(nb).repeat(nodes)
    adapted = {n: p.index_select(0, parent) for n, p in tree.params.items()}
    leaf_post = _take(post_data, child)
    with torch.no_grad():
        old_logp = maml_rl._log_probs(policy, {n: p.detach() for n, p in adapted.items()}, leaf_post)
        weight = (tree.log_prob.index_select(0, parent) + _masked_sum(old_logp, leaf_post)
                  + post.log_weight[child]).exp()
        if score_baseline is None:
            score_baseline = float(exact_objective(policy, c, family, task))
    baseline = torch.full((weight.shape[0],), float(score_baseline), dtype=dtype)
    pre_lp = [x.index_select(0, parent) for x in tree.pre_log_probs] if c.estimator == "dice" else []
    pre_data = [_take(d, parent) for d in tree.pre_data] if c.estimator == "dice" else []
    losses = maml_rl.outer_loss(policy, adapted, leaf_post, old_logp, c.estimator, pre_lp, pre_data,
                                score_baseline=baseline, reduction="none")
    return -flat_concat(torch.autograd.grad((weight * losses).sum(), theta))


def exact_meta_gradients(policy: maml_rl.Policy, config: maml_rl.MAMLTRPOConfig, family: TabularMDPFamily,
                         task: MDPTask, estimators: Sequence[str] = maml_rl.ESTIMATORS) -> dict[str, Tensor]:
    r"""``{"objective": J, "exact": \nabla J, <estimator>: H x its expectation}`` (flat ascent directions).

    The surrogates average over the ``H`` steps of an episode, so an estimator's expectation is in units of
    :math:`1/H` of a return; it is multiplied by ``H`` here, so that without advantage normalisation an
    unbiased estimator's entry equals ``"exact"``. With normalisation each task's gradient is also divided by
    its (random) advantage standard deviation: compare directions then (:func:`relative_error`).
    """
    params = list(policy.parameters())
    J = exact_objective(policy, config, family, task)
    out = {"objective": J.detach(), "exact": flat_concat(torch.autograd.grad(J, params))}
    for estimator in estimators:
        out[estimator] = family.episode_length * exact_estimator_mean(
            policy, replace(config, estimator=estimator), family, task, score_baseline=float(J.detach()))
    return out


def relative_error(estimate: Tensor, exact: Tensor, up_to_scale: bool = False) -> float:
    r""":math:`\lVert e - \nabla J\rVert / \lVert\nabla J\rVert`; with ``up_to_scale``, for the best multiple
    :math:`c\,e` (the sine of the angle between them, when it is below 90 degrees)."""
    if up_to_scale:
        c = float(exact @ estimate) / max(float(estimate @ estimate), 1e-300)
        estimate = c * estimate
    return float((estimate - exact).norm() / exact.norm())
