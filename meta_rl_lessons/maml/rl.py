r"""MAML for reinforcement learning: MAML-TRPO (Finn et al. 2017) with a choice of meta-gradient estimator.

Chapter "MAML for RL" (``chapters/02b-maml-rl.ipynb``). One meta-iteration, for a meta-batch of ``K`` tasks
sampled together (one batched policy call per environment step for all tasks and episodes):

1. sample pre-update episodes :math:`\mathcal D_k` with :math:`\theta`; fit a linear baseline per task;
2. inner step(s) (eq. ``maml-rl-inner``): :math:`\theta'_k = \theta - \alpha\nabla_\theta
   L^{\mathrm{in}}_k(\theta)` with a REINFORCE surrogate :math:`L^{\mathrm{in}}`, the graph kept
   (``create_graph=True``) so the meta-gradient can flow through it;
3. sample post-update episodes :math:`\mathcal D'_k` with :math:`\theta'_k`;
4. outer objective: the importance-weighted surrogate on :math:`\mathcal D'_k`
   (eq. ``maml-rl-outer``), :math:`L^{\mathrm{out}}(\theta) = -\frac1K\sum_k \hat{\mathbb E}_{\mathcal D'_k}
   [\frac{\pi_{\theta'_k(\theta)}(a\mid s)}{\pi_{\theta'_{k,\mathrm{old}}}(a\mid s)} \hat A'_k]`;
5. a TRPO step on :math:`\theta` whose mean KL :math:`\bar D(\theta) = \frac1K\sum_k \hat{\mathbb E}
   [D_{\mathrm{KL}}(\pi_{\theta'_{k,\mathrm{old}}} \| \pi_{\theta'_k(\theta)})]` is measured *after* the inner
   update, so its Hessian, at the current point, is (eq. ``meta-kl-hessian``)
   :math:`\nabla^2\bar D = \frac1K\sum_k J_k^\top F_k(\theta'_k) J_k`, :math:`J_k = \partial\theta'_k /
   \partial\theta = I - \alpha\nabla^2 L^{\mathrm{in}}_k(\theta)`; then a backtracking line search on the
   exact surrogate and KL.

**Meta-gradient estimators** (``estimator=``, eqs. ``maml-rl-objective``, ``maml-rl-score-term``). With
sampled inner gradients MAML maximises :math:`J(\theta) = \mathbb E_{\mathcal D\sim\pi_\theta}
[F(\theta'(\theta, \mathcal D))]`, :math:`F` the expected post-update return. Its gradient has two parts,
:math:`\mathbb E[(\partial\theta'/\partial\theta)^\top\nabla F(\theta')] + \mathbb E[\nabla_\theta\log
\pi_\theta(\mathcal D)\, F(\theta')]`:

* ``"maml"``: the original estimator (Finn et al.; pytorch-maml-rl, learn2learn, garage) differentiates the
  surrogate through :math:`\theta'` only and drops the second part, the *pre-update sampling term*: biased;
* ``"dice"``: DiCE (Foerster et al. 2018) applied to the whole sampled computation: the outer objective is
  multiplied by :math:`⊡(\log\pi_\theta(\mathcal D_k))` (the "magic box" :math:`⊡(x) = e^{x - \perp x}`,
  value 1, gradient :math:`\nabla x`), which adds the missing term (with a leave-one-task-out baseline);
  on its post-update batch the weights carry :math:`\gamma^t` and each episode's baseline is fitted on the
  task's other episodes (:func:`config_task_data`), so that it is unbiased for :math:`\nabla J` at any
  :math:`\gamma` (checked by exact enumeration in :mod:`meta_rl_lessons.maml.exact`; per-task advantage
  normalisation remains an approximation);
* ``"lvc"``: ProMP's low-variance curvature (Rothfuss et al. 2019): the inner surrogate uses the likelihood
  ratio :math:`\pi_\theta/\perp\pi_\theta` instead of :math:`\log\pi_\theta`, which adds the per-step
  :math:`\nabla\log\pi\nabla\log\pi^\top\hat A` curvature term: an approximation of the missing term,
  right to first order in :math:`\alpha` for one-step episodes (with longer ones it drops first-order
  products between the steps of an episode), with much lower variance than DiCE; like ``"maml"`` it keeps
  the reference surrogate (no :math:`\gamma^t`);
* ``first_order=True``: :math:`\partial\theta'/\partial\theta` replaced by :math:`I` in the meta-gradient (no
  second derivatives there).

Whatever the estimator, the trust region's curvature is that of the inner step actually deployed, the plain
REINFORCE step (eq. ``meta-kl-hessian`` with its true Jacobian): LVC's surrogate and ``first_order`` change
what autograd differentiates, not the adapted parameters the line search evaluates.

Shapes: batches are ``[T, K, E, ...]`` (time, tasks, episodes; :class:`~meta_rl_lessons.batch.EpisodeBatch`
from :class:`~meta_rl_lessons.envs.MetaBatchSampler`); *stacked* parameter dicts have a leading ``K``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import kl_divergence

from meta_rl_lessons.batch import EpisodeBatch
from meta_rl_lessons.envs import MetaBatchSampler, check_family, make_family
from meta_rl_lessons.envs.base import TaskFamily
from meta_rl_lessons.envs.batched import single_spaces
from meta_rl_lessons.maml.curvature import meta_fvp_analytic
from meta_rl_lessons.memory import keep_freed_memory
from meta_rl_lessons.rl.advantages import LinearFeatureBaseline, discounted_returns, gae
from meta_rl_lessons.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, make_policy
from meta_rl_lessons.rl.trpo import apply_step, flat_concat, line_search, trust_region_step, unflatten_like
from meta_rl_lessons.rl.utils import (
    CSVLogger,
    check_config_choice,
    check_config_common,
    check_config_numbers,
    check_config_range,
    check_positive,
    check_positive_ints,
    check_state,
    config_state,
    resolve_device,
    set_seed,
)
from meta_rl_lessons.serialization import to_safe
from meta_rl_lessons.trainer import TrainerBase, load_rng_state, rng_state

__all__ = [
    "ESTIMATORS",
    "FVP_METHODS",
    "MAMLTRPO",
    "MAMLTRPOConfig",
    "TaskData",
    "adapt",
    "adapt_steps",
    "config_task_data",
    "exact_bandit_meta_gradients",
    "inner_loss",
    "magic_box",
    "meta_fvp_direct",
    "mean_kl",
    "meta_fvp_factorized",
    "outer_loss",
    "task_data",
    "task_mean",
]

#: The policies the MAML functions accept (anything with ``per_task`` and ``named_parameters`` works).
Policy = GaussianMLPPolicy | CategoricalMLPPolicy

#: Meta-gradient estimators (see the module docstring).
ESTIMATORS: tuple[str, ...] = ("maml", "dice", "lvc")
#: Ways to compute the meta-KL's Hessian-vector products, all exact: ``"analytic"`` (closed form for MLP
#: policies, :func:`meta_rl_lessons.maml.curvature.meta_fvp_analytic`), ``"factorized"`` (the same
#: :math:`J^\top F J` from autograd, :func:`meta_fvp_factorized`), ``"direct"`` (double backprop through
#: the whole meta-KL, :func:`meta_fvp_direct`; the only one for several inner steps).
FVP_METHODS: tuple[str, ...] = ("analytic", "factorized", "direct")


def check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown meta-gradient estimator {estimator!r}; allowed: {', '.join(ESTIMATORS)}")


def magic_box(x: Tensor) -> Tensor:
    r"""DiCE's :math:`⊡(x) = \exp(x - \perp x)`: evaluates to 1, and :math:`\nabla ⊡(x) = ⊡(x)\nabla x`."""
    return torch.exp(x - x.detach())


# ============================================================================ per-task data
@dataclass
class TaskData:
    """One sampled batch, task-major, with what the surrogates need. ``K`` tasks, ``T`` steps, ``E`` episodes.

    ==================  ====================  ===================================================
    field               shape                 meaning
    ==================  ====================  ===================================================
    ``obs``             ``[K, T, E, obs]``    observations
    ``actions``         ``[K, T, E, ...]``    actions
    ``mask``            ``[K, T, E]``         1 for real steps
    ``weights``         ``[K, T, E]``         :math:`\\Psi_t`: advantages (normalised per task if asked)
    ``returns``         ``[K]``               mean discounted episode return :math:`\\hat F_k`
    ``scale``           ``[K]``               factor turning a return into surrogate units (see below)
    ``num_steps``       ``[K]``               real steps per task
    ==================  ====================  ===================================================

    The surrogates average over a task's real steps (and may normalise advantages), so a return enters the
    DiCE score term divided by ``scale = mean episode length x advantage std`` (std = 1 when not normalised).
    """

    obs: Tensor
    actions: Tensor
    mask: Tensor
    weights: Tensor
    returns: Tensor
    scale: Tensor
    num_steps: Tensor

    @property
    def num_tasks(self) -> int:
        return self.obs.shape[0]

    def subsample(self, fraction: float, generator: torch.Generator | None = None) -> TaskData:
        """The same tasks with a random ``fraction`` of the episodes (at least one), for curvature."""
        E = self.obs.shape[2]
        n = max(1, int(round(fraction * E)))
        if n >= E:
            return self
        idx = torch.randperm(E, generator=generator)[:n].to(self.obs.device)
        pick = lambda x: x.index_select(2, idx)  # noqa: E731
        mask = pick(self.mask)
        return TaskData(pick(self.obs), pick(self.actions), mask, pick(self.weights), self.returns,
                        self.scale, mask.sum(dim=(1, 2)))


def _per_task_normalize(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``x, mask [T, K, E]`` -> (normalised x, std [K]) over each task's real steps.

    A task whose values are all equal (every return the same, e.g. no reward at all) has nothing to scale:
    it is centred only (std reported as 1). Dividing by its ~0 spread would leave the surrogate at zero but
    multiply DiCE's score term, which is divided by the same std, by about 1e8.
    """
    n = mask.sum(dim=(0, 2)).clamp_min(2.0)
    mean = (x * mask).sum(dim=(0, 2)) / n
    var = (((x - mean.view(1, -1, 1)) * mask) ** 2).sum(dim=(0, 2)) / (n - 1)
    std = var.sqrt()
    std = torch.where(std > 1e-6, std + 1e-8, torch.ones_like(std))
    return (x - mean.view(1, -1, 1)) / std.view(1, -1, 1) * mask, std


def task_data(batch: EpisodeBatch, gamma: float = 0.99, gae_lambda: float = 1.0, baseline: bool = True,
              normalize: bool = True, discount_weights: bool = False, leave_one_out: bool = False
              ) -> TaskData:
    r"""Advantages and returns of a ``[T, K, E]`` meta-batch, task-major, for the surrogates.

    Returns are Monte-Carlo (eq. return) without bootstrapping: the horizon is part of each task (a
    finite-horizon return), so the end of an episode is treated as terminal. The baseline is the per-task
    linear feature baseline (eq. linear-baseline) fitted on the batch, as in Finn et al. (2017); advantages
    are GAE (eq. gae, :math:`\lambda = 1`: :math:`G_t - V(s_t)`), normalised per task if ``normalize``.

    ``discount_weights`` multiplies the weight of step :math:`t` by :math:`\gamma^t` (after normalising), so
    that :math:`\hat{\mathbb E}[\nabla\log\pi\,\Psi_t]` estimates the gradient of the *discounted* return
    (eq. ``pg-discounted``); DiCE's post-update surrogate needs it. Without it (the policy-gradient
    practice the reference implementations follow) late steps weigh as much as early ones, which is not the
    gradient of any discounted objective when :math:`\gamma < 1`. Every episode starts at ``t = 0`` of the
    batch (the sampler collects whole episodes), so :math:`t` is the row index.

    ``leave_one_out`` fits each episode's baseline on the other episodes of its task
    (:class:`~meta_rl_lessons.rl.advantages.LinearFeatureBaseline`), so that it does not depend on the
    episode's own actions and the gradient estimate stays unbiased.
    """
    if len(batch.batch_shape) != 2:
        raise ValueError(f"task_data needs a batch [T, K, E, ...], got batch shape {batch.batch_shape}")
    ends = batch.terminated | batch.truncated
    returns = discounted_returns(batch.rewards, gamma, ends, None, batch.mask)
    if baseline:
        bl = LinearFeatureBaseline(per_task=True, leave_one_out=leave_one_out).fit(batch, returns)
        values, next_values = bl.predict(batch), bl.predict_next(batch)
        adv, _ = gae(batch.rewards, values, next_values, ends, torch.zeros_like(ends), gamma, gae_lambda,
                     batch.mask)
    else:
        adv = returns
    std = torch.ones(batch.batch_shape[0], device=batch.device, dtype=adv.dtype)
    if normalize:
        adv, std = _per_task_normalize(adv, batch.mask)
    if discount_weights:
        T = batch.rewards.shape[0]
        powers = gamma ** torch.arange(T, device=adv.device, dtype=torch.float64)
        adv = adv * powers.to(adv.dtype).view(T, *([1] * (adv.dim() - 1)))
    num_steps = batch.mask.sum(dim=(0, 2))
    episode_len = num_steps / batch.batch_shape[1]
    first = returns[0]  # [K, E]: G_0 of every episode
    scale = episode_len * std  # per-step mean of advantages / std  ->  per-episode return units
    tm = lambda x: x.transpose(0, 1)  # noqa: E731  [T, K, ...] -> [K, T, ...]
    return TaskData(tm(batch.observations), tm(batch.actions), tm(batch.mask), tm(adv).detach(),
                    first.mean(dim=1), scale, num_steps)


# ============================================================================ surrogates
def _log_probs(policy: Policy, params: dict[str, Tensor], data: TaskData) -> Tensor:
    """:math:`\\log\\pi_{\\theta_k}(a\\mid s)` ``[K, T, E]`` with stacked per-task params."""
    return policy.per_task(data.obs, params).log_prob(data.actions)


def task_mean(x: Tensor, mask: Tensor, num_steps: Tensor | None = None) -> Tensor:
    """Mean of ``x [K, T, E]`` over each task's real steps: ``[K]``. ``mask [K, T, E]``; ``num_steps [K]``
    (default ``mask.sum((1, 2))``) is clamped to 1, so a task without real steps gives 0."""
    if num_steps is None:
        num_steps = mask.sum(dim=(1, 2))
    return (x * mask).sum(dim=(1, 2)) / num_steps.clamp_min(1.0)


def _masked_task_mean(x: Tensor, data: TaskData) -> Tensor:
    return task_mean(x, data.mask, data.num_steps)


def inner_loss(policy: Policy, params: dict[str, Tensor], data: TaskData, estimator: str = "maml") -> Tensor:
    r"""Per-task inner surrogate loss ``[K]`` (eq. ``maml-rl-inner``), averaged over each task's real steps.

    * ``"maml"`` and ``"dice"``: :math:`-\hat{\mathbb E}[\log\pi_\theta(a\mid s)\,\Psi]` (REINFORCE);
    * ``"lvc"``: :math:`-\hat{\mathbb E}[\frac{\pi_\theta(a\mid s)}{\perp\pi_\theta(a\mid s)}\Psi]`
      (eq. ``lvc``):
      same value and gradient, its Hessian adds :math:`\nabla\log\pi\,\nabla\log\pi^\top\Psi` per step.

    Args:
        params: stacked ``[K, *shape]`` parameters (each task its own copy of :math:`\theta`).
    """
    check_estimator(estimator)
    logp = _log_probs(policy, params, data)
    term = magic_box(logp) if estimator == "lvc" else logp
    return -_masked_task_mean(term * data.weights, data)


def adapt(policy: Policy, params: dict[str, Tensor], data: TaskData, inner_lr: float, estimator: str = "maml",
          create_graph: bool = True, first_order: bool = False, return_inputs: bool = False
          ) -> dict[str, Tensor] | tuple[dict[str, Tensor], dict[str, Tensor]]:
    r"""One inner step for every task: :math:`\theta'_k = \theta_k - \alpha\nabla L^{\mathrm{in}}_k`.

    Args:
        params: shared ``{name: [*shape]}`` (expanded to every task) or stacked ``{name: [K, *shape]}``.
        data: the pre-update :class:`TaskData` of the ``K`` tasks.
        create_graph: keep the graph of the inner gradient (needed to differentiate through the step).
        first_order: treat the inner gradient as a constant: :math:`\partial\theta'/\partial\theta = I`.

        return_inputs: also return the per-task copies of ``params`` the inner gradient was taken at.

    Returns:
        stacked adapted parameters ``{name: [K, *shape]}``, differentiable w.r.t. ``params`` (and, with
        ``return_inputs``, the stacked copies).
    """
    check_positive("inner_lr", inner_lr)
    stacked = _stack(policy, params, data.num_tasks)
    # Outside grad mode (line search, evaluation) nothing is differentiated through: fresh leaves. (A view
    # made under no_grad of a leaf still claims requires_grad, but is not connected to the graph.)
    tracking = torch.is_grad_enabled()
    with torch.enable_grad():
        grad_inputs = {n: (p if tracking and p.requires_grad else p.detach().requires_grad_(True))
                       for n, p in stacked.items()}
        losses = inner_loss(policy, grad_inputs, data, estimator)
        if not bool(torch.isfinite(losses).all()):
            raise FloatingPointError(f"inner loss is not finite: {losses.detach().cpu().tolist()}")
        grads = torch.autograd.grad(losses.sum(), list(grad_inputs.values()),
                                    create_graph=create_graph and not first_order)
    if first_order or not create_graph:
        grads = [g.detach() for g in grads]
    adapted = {n: p - inner_lr * g for (n, p), g in zip(grad_inputs.items(), grads, strict=True)}
    return (adapted, grad_inputs) if return_inputs else adapted


def adapt_steps(policy: Policy, params: dict[str, Tensor], pres: Sequence[TaskData], inner_lr: float,
                estimator: str = "maml", create_graph: bool = True, first_order: bool = False,
                with_log_probs: bool = False) -> tuple[dict[str, Tensor], list[Tensor]]:
    r"""Every inner step in turn: :math:`\theta^{(i+1)}_k = \theta^{(i)}_k - \alpha\nabla L^{\mathrm{in}}_k
    (\theta^{(i)}_k; \mathcal D^{(i)}_k)`, with :math:`\mathcal D^{(i)}_k` sampled by :math:`\theta^{(i)}_k`.

    Args:
        params: shared :math:`\theta` ``{name: [*shape]}`` (or stacked ``[K, *shape]``).
        pres: the pre-update :class:`TaskData` of each inner step, in order.
        with_log_probs: also return :math:`\log\pi_{\theta^{(i)}_k}(a\mid s)` ``[K, T, E]`` of every
            pre-update batch under the parameters that sampled it (functions of :math:`\theta`; DiCE's score
            terms).

    Returns:
        the stacked adapted parameters after the last step, and the list of log-probabilities (empty unless
        ``with_log_probs``).
    """
    current = params
    logps = []
    for data in pres:
        # One view for the log-probabilities and the step: DiCE's score term and the inner gradient then
        # reach theta through the same tensors.
        stacked = _stack(policy, current, data.num_tasks)
        if with_log_probs:
            logps.append(_log_probs(policy, stacked, data))
        current = adapt(policy, stacked, data, inner_lr, estimator, create_graph=create_graph,
                        first_order=first_order)
    return current, logps


def _stack(policy: Policy, params: dict[str, Tensor], num_tasks: int) -> dict[str, Tensor]:
    """Shared parameters expanded to ``[num_tasks, *shape]`` (a view); stacked ones returned as they are."""
    own = dict(policy.named_parameters())
    return {n: (p if p.dim() == own[n].dim() + 1 else p.unsqueeze(0).expand(num_tasks, *p.shape))
            for n, p in params.items()}


def outer_loss(policy: Policy, adapted: dict[str, Tensor], post: TaskData, old_log_probs: Tensor,
               estimator: str = "maml", pre_log_probs: Sequence[Tensor] = (),
               pre_data: Sequence[TaskData] = (), log_probs: Tensor | None = None,
               score_baseline: Tensor | None = None, reduction: str = "mean") -> Tensor:
    r"""The meta-surrogate loss (eq. ``maml-rl-outer``), a scalar averaged over tasks.

    :math:`-\frac1K\sum_k\hat{\mathbb E}_{\mathcal D'_k}[r\,\Psi']` with the ratio
    :math:`r = \pi_{\theta'_k}(a\mid s)/\pi_{\theta'_{k,\mathrm{old}}}(a\mid s)`. For ``"dice"`` each task
    adds the pre-update sampling term (eq. ``maml-rl-score-term``)
    :math:`-(⊡(\textstyle\sum\log\pi_{\theta}(\mathcal D_k)) - 1)(\hat F_k - b_k)/\mathrm{scale}_k`, zero in
    value, whose gradient is :math:`-\nabla\log\pi_\theta(\mathcal D_k)(\hat F_k - b_k)/\mathrm{scale}_k` with
    the leave-one-task-out baseline :math:`b_k = \mathrm{mean}_{j\ne k}\hat F_j` (independent of
    :math:`\mathcal D_k`, so unbiased).

    Args:
        adapted: stacked :math:`\theta'_k` ``[K, *shape]`` (a function of :math:`\theta`).
        post: post-update :class:`TaskData`; old_log_probs: ``[K, T, E]`` under
            :math:`\theta'_{\mathrm{old}}`.
        log_probs: :math:`\log\pi_{\theta'_k}(a\mid s)` ``[K, T, E]`` if already computed (else computed).
        score_baseline: for ``"dice"``, the baselines :math:`b_k` ``[K]`` (default: leave-one-task-out); any
            value that does not depend on task ``k``'s own episodes keeps the estimator unbiased (the exact
            enumeration of :mod:`meta_rl_lessons.maml.exact` passes a constant).
        reduction: ``"mean"`` (a scalar) or ``"none"`` (the per-task losses ``[K]``).
        pre_log_probs: for ``"dice"``, the log-probabilities ``[K, T, E]`` of every pre-update batch under the
            parameters that sampled it (functions of :math:`\theta`); pre_data: the matching
            :class:`TaskData`.
    """
    check_estimator(estimator)
    if log_probs is None:
        log_probs = _log_probs(policy, adapted, post)
    ratio = torch.exp(log_probs - old_log_probs)
    per_task = -_masked_task_mean(ratio * post.weights, post)
    if estimator == "dice":
        if len(pre_log_probs) == 0 or len(pre_log_probs) != len(pre_data):
            raise ValueError("estimator 'dice' needs the pre-update log-probabilities and their TaskData")
        log_p = sum((lp * d.mask).sum(dim=(1, 2)) for lp, d in zip(pre_log_probs, pre_data, strict=True))
        F = post.returns.detach()
        K = F.shape[0]
        if score_baseline is not None:
            b = score_baseline.detach()
        else:
            b = (F.sum() - F) / (K - 1) if K > 1 else torch.zeros_like(F)
        per_task = per_task - (magic_box(log_p) - 1.0) * (F - b) / post.scale
    if reduction == "none":
        return per_task
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}; allowed: mean, none")
    return per_task.mean()


def mean_kl(policy: Policy, adapted: dict[str, Tensor], post: TaskData, old_dist) -> Tensor:
    """Mean over tasks of the masked mean KL(pi_old || pi_theta'_k) over real post-update steps."""
    kl = kl_divergence(old_dist, policy.per_task(post.obs, adapted))
    return _masked_task_mean(kl, post).mean()


# ============================================================================ meta-KL Hessian-vector products
def meta_fvp_direct(kl_fn: Callable[[], Tensor], params: Sequence[Tensor], damping: float = 0.0
                    ) -> Callable[[Tensor], Tensor]:
    r"""``v -> (\nabla^2\bar D + \lambda I)v`` by double backprop through the whole meta-KL.

    ``kl_fn()`` must compute :math:`\bar D(\theta)` *through* the inner update (adapted parameters built with
    ``create_graph=True``). The KL's gradient graph is built once (third-order through the inner step) and
    every product is one backward pass over it. Exact; the reference for :func:`meta_fvp_factorized`.
    """
    params = list(params)
    kl = kl_fn()
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat = flat_concat(grads)

    def product(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(flat @ v.detach(), params, retain_graph=True, allow_unused=True)
        out = [torch.zeros_like(p) if h is None else h for p, h in zip(params, hv, strict=True)]
        return flat_concat(out) + damping * v

    return product


def meta_fvp_factorized(policy: Policy, params: dict[str, Tensor], pre: TaskData, post: TaskData, old_dist,
                        inner_lr: float, estimator: str = "maml", first_order: bool = False,
                        damping: float = 0.0, fisher_point: dict[str, Tensor] | None = None
                        ) -> Callable[[Tensor], Tensor]:
    r"""``v -> (\frac1K\sum_k J_k^\top F_k J_k + \lambda I)v``: the exact meta-KL Hessian, here.

    At :math:`\theta = \theta_{\mathrm{old}}` the KL's gradient w.r.t. :math:`\theta'` vanishes, so the
    second-derivative term of the chain rule drops and :math:`\nabla^2\bar D = \frac1K\sum_k J_k^\top F_k J_k`
    (eq. ``meta-kl-hessian``), :math:`J_k = \partial\theta'_k/\partial\theta = I - \alpha H_k`. Per product,
    three backward passes over graphs built once: :math:`J_k v` (``H_k`` is a Hessian, so :math:`J_k` is
    symmetric and :math:`J_k v = \nabla_{\theta_k}(\theta'_k\cdot v)`, differentiated w.r.t. task ``k``'s own
    copy of :math:`\theta`), :math:`F_k u` at :math:`\theta'_k` (the post-update KL's gradient graph), and
    :math:`\sum_k J_k^\top w_k` (a backward through the inner step to the shared :math:`\theta`). No graph of
    order higher than two. Only one inner step is supported (``inner_steps=1``).

    ``pre`` and ``post`` may be episode subsamples (curvature subsampling): the product is then an estimate.
    ``fisher_point``: the adapted parameters at which :math:`F_k` is taken (default: :math:`\theta'` from
    ``pre``); with subsampled ``pre`` it must be the full-batch :math:`\theta'_{\mathrm{old}}` that
    ``old_dist`` was computed with, so that :math:`F_k` is a Fisher matrix (positive semi-definite) and only
    :math:`J_k` is estimated from the subsample.
    """
    names = list(params)
    theta = [params[n] for n in names]
    adapted, copies = adapt(policy, params, pre, inner_lr, estimator, create_graph=True,
                            first_order=first_order, return_inputs=True)
    a_list = [adapted[n] for n in names]
    c_list = [copies[n] for n in names]
    # F at theta': the post-update KL as a function of detached adapted parameters.
    point = [fisher_point[n] for n in names] if fisher_point is not None else a_list
    leaf = [a.detach().clone().requires_grad_(True) for a in point]
    kl = mean_kl(policy, dict(zip(names, leaf, strict=True)), post, old_dist)
    kl_grad = flat_concat(torch.autograd.grad(kl, leaf, create_graph=True))

    def product(v: Tensor) -> Tensor:
        v = v.detach()
        vs = [vi.unsqueeze(0).expand_as(a) for vi, a in zip(unflatten_like(v, theta), a_list, strict=True)]
        if first_order:  # J = I for every task: J v is v repeated, J^T w sums the tasks
            u = flat_concat(vs)
        else:
            dot = sum((a * vi).sum() for a, vi in zip(a_list, vs, strict=True))
            u = flat_concat(torch.autograd.grad(dot, c_list, retain_graph=True))
        fu = torch.autograd.grad(kl_grad @ u, leaf, retain_graph=True)
        if first_order:
            out = flat_concat([f.sum(0) for f in fu])
        else:
            out = flat_concat(torch.autograd.grad(a_list, theta, grad_outputs=fu, retain_graph=True))
        return out + damping * v

    return product


# ============================================================================ trainer
@dataclass
class MAMLTRPOConfig:
    """Hyper-parameters of :class:`MAMLTRPO` (defaults: pytorch-maml-rl's 2D-navigation config)."""

    family: str = "Navigation2D"
    """Task family name (``meta_rl_lessons.envs.FAMILIES``), e.g. ``"Navigation2D"``, ``"HalfCheetahVel"``."""
    family_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the family (e.g. ``{"horizon": 100}``)."""
    meta_batch_size: int = 20
    """``K``: tasks per meta-iteration (20 for 2D navigation, 40 for locomotion)."""
    num_episodes: int = 20
    """``E``: episodes per task, both before and after adaptation."""
    iterations: int = 500
    """Meta-iterations."""
    inner_lr: float = 0.1
    r"""Inner step size :math:`\alpha`."""
    inner_steps: int = 1
    """Inner gradient steps during meta-training (fresh episodes before each)."""
    estimator: str = "maml"
    """Meta-gradient estimator: ``"maml"`` (original, biased), ``"dice"`` (unbiased) or ``"lvc"`` (ProMP)."""
    first_order: bool = False
    r"""Drop the second derivatives: :math:`\partial\theta'/\partial\theta \approx I`."""
    gamma: float = 0.99
    r"""Discount :math:`\gamma`."""
    gae_lambda: float = 1.0
    r"""GAE :math:`\lambda` (1: Monte-Carlo advantages :math:`G_t - V(s_t)`)."""
    normalize_advantages: bool = True
    """Normalise advantages per task (inner and outer), as pytorch-maml-rl does."""
    baseline: bool = True
    """Subtract the per-task linear feature baseline (False: plain returns, as in the exact tests)."""
    max_kl: float = 0.01
    r"""Trust-region radius :math:`\delta` of the meta-update."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """Damping added to the meta-KL Hessian."""
    fvp_method: str = "analytic"
    """``"analytic"`` (:math:`J^T F J` in closed form, eq. meta-kl-hessian), ``"factorized"`` (the same from
    autograd) or ``"direct"`` (double backprop); the same numbers to float rounding (:data:`FVP_METHODS`)."""
    curvature_subsample: float = 1.0
    """Fraction of each task's episodes used for the Hessian-vector products (not with ``"direct"``)."""
    backtrack_ratio: float = 0.8
    """Line-search shrink factor."""
    max_backtracks: int = 15
    """Line-search steps tried."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Policy hidden widths (the paper: (100, 100) ReLU; pytorch-maml-rl: (64, 64) tanh)."""
    activation: str = "tanh"
    """Hidden activation."""
    init_log_std: float = 0.0
    """Initial log-std of a Gaussian policy."""
    seed: int = 0
    """Seed of torch, the task sampler and the environments."""
    device: str = "cpu"
    """``"cpu"``, ``"cuda"`` or ``"auto"``: where the policy and the batched (torch) environments run."""
    num_threads: int = 1
    """MuJoCo physics threads per process of the batched locomotion env."""
    num_workers: int | None = None
    """MuJoCo physics worker processes (``None``: the sampler's choice, ``0``: step in this process)."""
    progress: bool = False
    """Show a progress bar."""
    log_path: str | None = None
    """CSV file of per-iteration metrics (``None``: in memory)."""

    def __post_init__(self) -> None:
        # Every message names MAMLTRPOConfig.<field>, the value and what is allowed.
        check_config_choice(self, "estimator", ESTIMATORS)
        check_config_choice(self, "fvp_method", FVP_METHODS)
        check_positive_ints(self, "meta_batch_size", "num_episodes", "iterations", "inner_steps", "cg_iters",
                            "max_backtracks", "num_threads")
        check_config_numbers(self, "inner_lr", "max_kl")
        check_config_numbers(self, "cg_damping", allow_zero=True)
        check_config_range(self, "curvature_subsample", 0.0, 1.0, low_open=True)
        check_config_range(self, "backtrack_ratio", 0.0, 1.0, low_open=True, high_open=True)
        check_config_range(self, "gamma", 0.0, 1.0)
        check_config_range(self, "gae_lambda", 0.0, 1.0)
        w = self.num_workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
            raise ValueError(f"MAMLTRPOConfig.num_workers must be None (the sampler chooses) or an integer "
                             f">= 0 (0: step in this process), got {w!r}")
        check_config_common(self)  # hidden_sizes (a tuple now), activation, init_log_std, seed, device, bools
        check_family("MAMLTRPOConfig", self.family, self.family_kwargs)
        if self.fvp_method != "direct" and self.inner_steps > 1:
            raise ValueError(f"MAMLTRPOConfig: fvp_method={self.fvp_method!r} supports inner_steps=1, got "
                             f"inner_steps={self.inner_steps}; use fvp_method='direct'")
        if self.curvature_subsample < 1 and self.fvp_method == "direct":
            raise ValueError(f"MAMLTRPOConfig: curvature_subsample={self.curvature_subsample!r} < 1 needs "
                             f"fvp_method='analytic' or 'factorized', got 'direct'")
        if self.estimator == "dice" and self.meta_batch_size < 2:
            raise ValueError(f"MAMLTRPOConfig: estimator 'dice' needs meta_batch_size >= 2 (leave-one-task-"
                             f"out baseline), got {self.meta_batch_size}")


def config_task_data(batch: EpisodeBatch, config: MAMLTRPOConfig, post: bool = False) -> TaskData:
    """:func:`task_data` with a trainer's settings; ``post``: the batch the outer surrogate is taken on.

    DiCE is the estimator of the exact :math:`\\nabla J` of the discounted objective, so on its post-update
    batch the weights carry :math:`\\gamma^t` and each episode's baseline is fitted on the task's other
    episodes. The original and LVC estimators keep the reference implementations' surrogate (undiscounted
    weights, a baseline fitted on the whole batch): two more approximations, besides the missing term.
    Per-task advantage normalisation is an approximation for every estimator (it divides each task's
    gradient by a random standard deviation), and so is GAE with :math:`\\lambda < 1` (a fitted value is not
    the true one). The inner step may use anything: it only defines :math:`\\theta'(\\theta, \\mathcal D)`.
    """
    c = config
    exact = post and c.estimator == "dice"
    return task_data(batch, c.gamma, c.gae_lambda, baseline=c.baseline, normalize=c.normalize_advantages,
                     discount_weights=exact, leave_one_out=exact)


def _detached(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in params.items()}


class MAMLTRPO(TrainerBase):
    """MAML-TRPO trainer: ``MAMLTRPO(config).train()``, one :meth:`iteration` at a time, or :meth:`evaluate`.

    Follows the trainer protocol (:mod:`meta_rl_lessons.trainer`): ``train(callback)``, a complete
    :meth:`state_dict`, ``close()``.

    Attributes:
        family: the task family; policy: the meta-policy (its parameters are :math:`\\theta`);
        sampler: the :class:`~meta_rl_lessons.envs.MetaBatchSampler`; logger: per-iteration metrics;
        task_rng: draws each iteration's training tasks; curvature_rng: draws the episodes of the curvature
        subsample (``curvature_subsample < 1``).
    """

    name = "maml"
    return_key = "return_post"
    env_steps_per_iteration = True  # each row's env_steps is that meta-iteration's (pre + post episodes)

    def __init__(self, config: MAMLTRPOConfig, family: TaskFamily | None = None) -> None:
        self.config = c = config
        keep_freed_memory()  # the meta-step allocates many large intermediates (meta_rl_lessons.memory)
        set_seed(c.seed)
        self.device = resolve_device(c.device)
        self.family = family if family is not None else make_family(c.family, **c.family_kwargs)
        self.sampler = MetaBatchSampler(self.family, c.meta_batch_size, c.num_episodes, device=self.device,
                                        seed=c.seed, num_threads=c.num_threads, num_workers=c.num_workers)
        self.policy = make_policy(*single_spaces(self.sampler.env), c.hidden_sizes, c.activation,
                                  c.init_log_std)
        self.policy.to(self.device)
        self.task_rng = np.random.default_rng(c.seed)
        self.iterations_done = 0
        self.logger = CSVLogger(c.log_path)
        self.curvature_rng = torch.Generator().manual_seed(c.seed)

    @property
    def total_iterations(self) -> int:
        """Meta-iterations of a full run (``config.iterations``)."""
        return self.config.iterations

    # ------------------------------------------------------------------ pieces
    def _data(self, batch: EpisodeBatch, post: bool = False) -> TaskData:
        return config_task_data(batch, self.config, post)

    def sample_meta_batch(self, tasks: Sequence[Any]) -> dict[str, Any]:
        """Pre-update episodes, inner step(s), post-update episodes for ``tasks`` (no meta-gradient yet)."""
        c = self.config
        params = dict(self.policy.named_parameters())
        pres, pre_returns = [], []
        current: dict[str, Tensor] | None = None
        # With one inner step the adapted parameters are built with their graph right away and kept for
        # meta_gradient (one inner forward/backward pass fewer per iteration), tagged with the parameters'
        # versions so that a stale graph is never reused.
        keep = c.inner_steps == 1 and torch.is_grad_enabled()
        for _ in range(c.inner_steps):
            with torch.no_grad():
                batch = self.sampler.sample(tasks, self.policy,
                                            None if current is None else _detached(current))
            pre_returns.append(batch.episode_returns().mean(dim=1))
            data = self._data(batch)
            pres.append(data)
            current = adapt(self.policy, params if current is None else current, data, c.inner_lr,
                            c.estimator, create_graph=keep, first_order=c.first_order)
        with torch.no_grad():
            post_batch = self.sampler.sample(tasks, self.policy, _detached(current))
        sample = {"pre": pres, "post": self._data(post_batch, post=True), "pre_returns": pre_returns,
                  "post_returns": post_batch.episode_returns().mean(dim=1), "steps": sum(int(
                      d.num_steps.sum()) for d in pres) + post_batch.num_steps}
        if keep:
            sample["adapted_graph"] = (self._versions(), current)
        return sample

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.policy.parameters())

    def _adapted(self, params: dict[str, Tensor], pres: list[TaskData], create_graph: bool,
                 with_log_probs: bool = True) -> tuple[dict[str, Tensor], list[Tensor]]:
        """:math:`\\theta'(\\theta)` through all inner steps, and the pre-update log-probs (for DiCE)."""
        c = self.config
        return adapt_steps(self.policy, params, pres, c.inner_lr, c.estimator, create_graph=create_graph,
                           first_order=c.first_order, with_log_probs=with_log_probs and c.estimator == "dice")

    def meta_gradient(self, sample: dict[str, Any], retain_graph: bool = False) -> dict[str, Any]:
        """The meta-surrogate loss at :math:`\\theta` and its gradient ``g`` (flat), by the chosen estimator.

        This is the estimate the TRPO step follows (``-g`` is an ascent direction of the post-update return);
        the exact-gradient tests average it over many samples.

        Returns:
            dict with ``loss``, ``g`` ``[n]``, ``adapted`` (stacked, with graph), ``old`` (detached adapted
            parameters), ``old_dist`` and ``old_log_probs`` on the post-update data.
        """
        c = self.config
        pres, post = sample["pre"], sample["post"]
        params = dict(self.policy.named_parameters())
        theta = list(params.values())
        cached = sample.pop("adapted_graph", None)  # used once: its graph is freed by the backward pass
        if cached is not None and cached[0] == self._versions():
            adapted = cached[1]
            logps = [_log_probs(self.policy, {n: p.unsqueeze(0).expand(pres[0].num_tasks, *p.shape)
                                               for n, p in params.items()}, pres[0])] \
                if c.estimator == "dice" else []
        else:
            adapted, logps = self._adapted(params, pres, create_graph=True)
        with torch.no_grad():
            old = _detached(adapted)
            old_dist = self.policy.per_task(post.obs, old)
            old_logp = old_dist.log_prob(post.actions)
        loss = outer_loss(self.policy, adapted, post, old_logp, c.estimator, logps, pres)
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(f"MAML-TRPO surrogate loss is not finite ({loss.item()})")
        g = flat_concat(torch.autograd.grad(loss, theta, retain_graph=retain_graph))
        return {"loss": loss.detach(), "g": g, "adapted": adapted, "old": old, "old_dist": old_dist,
                "old_log_probs": old_logp}

    def trust_region_step(self, sample: dict[str, Any]
                          ) -> tuple[Tensor, Callable[[Tensor], tuple[float, float]], float]:
        """The full TRPO step on :math:`\\theta` (eqs. maml-rl-outer and meta-kl-hessian), before the search.

        Returns:
            ``(step, evaluate, loss)``: the flat step :math:`s` with :math:`\\tfrac12 s^\\top H s = \\delta`
            (``H`` the meta-KL's Hessian, so the KL at :math:`\\theta + s` is :math:`\\delta` to second
            order), ``evaluate(step) -> (surrogate loss, mean KL)`` at :math:`\\theta + \\mathrm{step}`
            (re-adapting), and the surrogate loss at :math:`\\theta`.
        """
        c = self.config
        pres, post = sample["pre"], sample["post"]
        names = [n for n, _ in self.policy.named_parameters()]
        params = dict(self.policy.named_parameters())
        theta = [params[n] for n in names]
        # The trust region bounds the KL of the policies actually deployed: theta' from the plain REINFORCE
        # step, whatever the estimator. LVC's inner surrogate has the same value but another autograd
        # Jacobian, and first_order drops the Jacobian from the gradient only; neither is the curvature of
        # the KL the line search checks (eq. meta-kl-hessian needs the true d theta' / d theta).
        own_graph = c.estimator != "lvc" and not c.first_order
        mg = self.meta_gradient(sample, retain_graph=c.fvp_method == "direct" and own_graph)
        loss, g, adapted, old = mg["loss"], mg["g"], mg["adapted"], mg["old"]
        old_dist, old_logp = mg["old_dist"], mg["old_log_probs"]
        if c.fvp_method == "direct":
            deployed = adapted if own_graph else adapt_steps(self.policy, params, pres, c.inner_lr, "maml")[0]
            fvp = meta_fvp_direct(lambda: mean_kl(self.policy, deployed, post, old_dist), theta, c.cg_damping)
        else:
            pre_c, post_c = pres[0], post
            if c.curvature_subsample < 1:
                pre_c = pres[0].subsample(c.curvature_subsample, self.curvature_rng)
                post_c = post.subsample(c.curvature_subsample, self.curvature_rng)
            if c.fvp_method == "analytic":  # F from the old adapted parameters themselves
                fvp = meta_fvp_analytic(self.policy, params, pre_c, post_c, c.inner_lr, old, False,
                                        c.cg_damping)
            else:
                dist_c = old_dist
                if post_c is not post:
                    with torch.no_grad():
                        dist_c = self.policy.per_task(post_c.obs, old)
                fvp = meta_fvp_factorized(self.policy, params, pre_c, post_c, dist_c, c.inner_lr, "maml",
                                          False, c.cg_damping, old)
        full_step = trust_region_step(fvp, g, c.max_kl, c.cg_iters, "MAML-TRPO")
        del fvp

        def evaluate(step: Tensor) -> tuple[float, float]:
            steps = unflatten_like(step, theta)
            new = {n: p.detach() + d for n, p, d in zip(names, theta, steps, strict=True)}
            adapted_new, _ = self._adapted(new, pres, create_graph=False, with_log_probs=False)
            with torch.no_grad():
                # One policy evaluation for both numbers. DiCE's extra term is zero in value, so the value of
                # the plain surrogate is the value of every estimator's surrogate.
                dist = self.policy.per_task(post.obs, adapted_new)
                lo = outer_loss(self.policy, adapted_new, post, old_logp, "maml",
                                log_probs=dist.log_prob(post.actions))
                kl = _masked_task_mean(kl_divergence(old_dist, dist), post).mean()
                return float(lo), float(kl)

        return full_step, evaluate, float(loss.detach())

    def meta_step(self, sample: dict[str, Any]) -> dict[str, float]:
        """One TRPO step on :math:`\\theta`: :meth:`trust_region_step`, then a backtracking line search."""
        c = self.config
        theta = list(self.policy.parameters())
        full_step, evaluate, loss = self.trust_region_step(sample)
        result = line_search(evaluate, full_step, loss, c.max_kl, None, 0.0, c.backtrack_ratio,
                             c.max_backtracks)
        if result.accepted:
            apply_step(theta, result.step)
        return {"surrogate_before": loss, "surrogate_after": result.loss, "kl": result.kl,
                "step_fraction": result.fraction, "accepted": float(result.accepted)}

    def iteration(self) -> dict[str, float]:
        """Sample a meta-batch of training tasks, adapt, take one meta-step; returns the logged row."""
        c = self.config
        t0 = time.perf_counter()
        tasks = self.family.sample_tasks(c.meta_batch_size, self.task_rng, split="train")
        sample = self.sample_meta_batch(tasks)
        t1 = time.perf_counter()
        stats = self.meta_step(sample)
        t2 = time.perf_counter()
        self.iterations_done += 1
        row = {"iteration": self.iterations_done,
               "return_pre": float(sample["pre_returns"][0].mean()),
               "return_post": float(sample["post_returns"].mean()),
               "env_steps": float(sample["steps"]),
               **stats, "sample_time": t1 - t0, "update_time": t2 - t1}
        self.logger.log(row)
        return row

    # ------------------------------------------------------------------ evaluation protocol
    def adaptation_rollouts(self, tasks: Sequence[Any], step_sizes: Sequence[float] = (0.1, 0.05, 0.05),
                            num_episodes: int | None = None, seed: int = 10_000
                            ) -> tuple[list[EpisodeBatch], list[dict[str, Tensor]]]:
        """The episodes behind :meth:`evaluate`: ``(batches, params)``, one entry per adaptation step.

        ``batches[i]`` holds the ``num_episodes`` episodes per task sampled after ``i`` steps (``B = (K, E)``;
        for 2D navigation its observations are the point's positions, so it draws the trajectories), and
        ``params[i]`` the parameters that sampled them, stacked per task (leading ``K``) for ``i >= 1``
        and the meta-parameters :math:`\theta` for ``i = 0``. Step sizes: 0.1 first, then 0.05 (Finn et al.).
        """
        c = self.config
        E = num_episodes or c.num_episodes
        for step in step_sizes:
            check_positive("evaluation step size", step)
        sampler = MetaBatchSampler(self.family, len(tasks), E, device=self.device, seed=seed,
                                   num_threads=c.num_threads, num_workers=c.num_workers)
        params = {k: v.detach() for k, v in self.policy.named_parameters()}
        current = None
        batches, used = [], []
        try:
            for i in range(len(step_sizes) + 1):
                with torch.no_grad():
                    batch = sampler.sample(tasks, self.policy, current)
                batches.append(batch)
                used.append(params if current is None else current)
                if i == len(step_sizes):
                    break
                data = self._data(batch)
                new = adapt(self.policy, params if current is None else current, data, step_sizes[i], "maml",
                            create_graph=False)
                current = _detached(new)
        finally:
            sampler.close()  # MuJoCo worker processes, if any
        return batches, used

    def evaluate(self, tasks: Sequence[Any], step_sizes: Sequence[float] = (0.1, 0.05, 0.05),
                 num_episodes: int | None = None, seed: int = 10_000) -> Tensor:
        """Mean return per task after 0, 1, ..., ``len(step_sizes)`` adaptation steps: ``[steps + 1, K]``.

        The protocol of Finn et al. (2017): on each (held-out) task, sample episodes with the current
        parameters, take a REINFORCE step (step size 0.1 first, then 0.05) with a freshly fitted linear
        baseline, sample again. The original estimator's inner loss is used (all estimators share its value).
        """
        batches, _ = self.adaptation_rollouts(tasks, step_sizes, num_episodes, seed)
        return torch.stack([b.episode_returns().mean(dim=1).cpu() for b in batches])

    def close(self) -> None:
        """Release the sampler's MuJoCo worker processes, if any (idempotent)."""
        self.sampler.close()

    # ------------------------------------------------------------------ state
    def _generators(self) -> dict[str, Any]:
        return {"tasks": self.task_rng, "curvature": self.curvature_rng}

    def state_dict(self) -> dict[str, Any]:
        """Everything the next meta-iterations depend on (a ``weights_only``-safe snapshot): the config, the
        policy's parameters, the iteration count, the sampler's environment generators and the random
        generators (the task draws, the curvature subsample, and the process-wide ones that sample actions).

        There is no optimiser (the meta-step is a TRPO step) and no running episode (every iteration samples
        whole episodes from a reset).
        """
        return to_safe({"config": config_state(self.config), "policy": self.policy.state_dict(),
                        "iterations_done": self.iterations_done, "sampler": self.sampler.state_dict(),
                        "rng": rng_state(self._generators())})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (as returned, or as read back by
        :func:`~meta_rl_lessons.serialization.load_checkpoint`), on a trainer built from the same config.

        Raises:
            ValueError: a state with missing entries or saved with another config (naming the fields).
        """
        check_state(type(self).__name__, self.config, state, ("policy", "iterations_done", "sampler", "rng"))
        self.policy.load_state_dict(state["policy"])
        self.iterations_done = int(state["iterations_done"])
        self.sampler.load_state_dict(state["sampler"])
        load_rng_state(state["rng"], self._generators())  # last: nothing may draw after it



# ============================================================================ exact meta-gradients (bandit)
def exact_bandit_meta_gradients(policy: Policy, means: Sequence[float], inner_lr: float, num_pre: int
                                ) -> dict[str, Tensor]:
    r"""Exact meta-gradients of a Bernoulli bandit with one-pull episodes, enumerating every pre-update batch.

    With ``num_pre`` pulls :math:`o = ((a_1, r_1), \dots)` before the update, the inner step
    :math:`\theta'(o) = \theta + \frac{\alpha}{N}\sum_i r_i\nabla\log\pi_\theta(a_i)` (no baseline) and the
    expected post-update reward :math:`F(\theta') = \sum_a \pi_{\theta'}(a)\, p_a`, the meta-objective
    :math:`J(\theta) = \sum_o P_\theta(o) F(\theta'(o))` (eq. ``maml-rl-objective``) is a finite sum, so
    autograd gives :math:`\nabla J` exactly. Also returned are the exact *expectations* of the original
    estimator, :math:`\sum_o P_\theta(o)\,\frac{d}{d\theta}F(\theta'(o))` (no pre-update sampling term), and
    of the LVC estimator (its inner Hessian carries :math:`\nabla\log\pi\nabla\log\pi^\top r`).

    Args:
        policy: a categorical policy over ``len(means)`` arms with a 1-dimensional (zero) observation.
        means: arm means :math:`p_a`.

    Returns:
        ``{"exact", "maml", "lvc", "objective"}``: flat gradients ``[n]`` (ascent directions) and :math:`J`.
    """
    import itertools

    params = dict(policy.named_parameters())
    names, theta = list(params), list(params.values())
    dtype = theta[0].dtype
    obs = torch.zeros(1, 1, dtype=dtype, device=theta[0].device)
    p = torch.as_tensor(means, dtype=dtype, device=obs.device)
    arms = range(len(means))

    def log_pi(prm):
        return torch.log_softmax(policy.raw(obs, prm)[0], -1)

    def post_return(grads):
        adapted = {n: t + inner_lr * g for n, t, g in zip(names, theta, grads, strict=True)}
        return (log_pi(adapted).exp() * p).sum()

    J, e_maml, e_lvc = 0.0, 0.0, 0.0
    for outcome in itertools.product(itertools.product(arms, (0, 1)), repeat=num_pre):
        lp = log_pi(params)
        prob = torch.stack([lp[a].exp() * (p[a] if r else 1 - p[a]) for a, r in outcome]).prod()
        inner = sum(lp[a] * r for a, r in outcome) / num_pre
        F = post_return(torch.autograd.grad(inner, theta, create_graph=True))
        J = J + prob * F
        e_maml = e_maml + prob.detach() * flat_concat(torch.autograd.grad(F, theta, retain_graph=True))
        inner_lvc = sum(magic_box(lp[a]) * r for a, r in outcome) / num_pre
        F_lvc = post_return(torch.autograd.grad(inner_lvc, theta, create_graph=True))
        e_lvc = e_lvc + prob.detach() * flat_concat(torch.autograd.grad(F_lvc, theta, retain_graph=True))
    exact = flat_concat(torch.autograd.grad(J, theta))
    return {"exact": exact, "maml": e_maml, "lvc": e_lvc, "objective": J.detach()}
