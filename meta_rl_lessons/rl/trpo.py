r"""Trust region policy optimisation (TRPO): natural-gradient steps inside a KL ball.

Chapter 1, section "Natural gradient and the trust region". Each iteration solves, approximately,

.. math::
    \max_\theta\; L(\theta) = \mathbb E_t\Big[
    \frac{\pi_\theta(a_t\mid s_t)}{\pi_{\theta_k}(a_t\mid s_t)} \hat A_t\Big]
    \quad\text{s.t.}\quad \bar D_\mathrm{KL}(\theta_k \,\|\, \theta) =
    \mathbb E_t\big[D_\mathrm{KL}(\pi_{\theta_k}(\cdot\mid s_t)\,\|\,
    \pi_\theta(\cdot\mid s_t))\big]
    \le \delta \qquad \text{(eq. trpo-problem)}

by a linear model of :math:`L` (gradient :math:`g`) and a quadratic model of the KL (its Hessian at
:math:`\theta_k` is the Fisher matrix :math:`F`, eq. fisher-kl): the step is
:math:`\Delta = \sqrt{2\delta / (s^\top F s)}\, s` with :math:`s \approx F^{-1} g` (eq. trpo-step),
where :math:`s` comes from conjugate gradient using only Fisher-vector products
:math:`Fv = \nabla_\theta\big((\nabla_\theta \bar D_\mathrm{KL})^\top v\big)` (eq. fvp), and a
backtracking line search shrinks :math:`\Delta` until the *exact* KL is within :math:`\delta` and the
surrogate improves.

The three numerical pieces are general functions that MAML-TRPO reuses:

* :func:`fisher_vector_product` — any KL (tensor or closure) over any list of parameter tensors; the
  gradient graph of the KL is built once and reused by every product;
* :func:`cg_solve` (and :func:`conjugate_gradient`, its solution alone) — any symmetric positive-definite
  matrix-vector product;
* :func:`line_search` — any pure ``evaluate(step) -> (loss, kl)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import torch
from torch import Tensor
from torch.distributions import kl_divergence

from meta_rl_lessons.rl.advantages import discounted_returns, gae, normalize_advantages
from meta_rl_lessons.rl.baselines import StateBaseline
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.losses import masked_mean
from meta_rl_lessons.rl.sampling import VectorEnvTrainer, VectorSampler, check_physics
from meta_rl_lessons.rl.utils import (
    CSVLogger,
    check_config_choice,
    check_config_common,
    check_config_numbers,
    check_config_range,
    check_finite,
    check_positive,
    check_positive_ints,
    check_state,
    config_state,
)
from meta_rl_lessons.serialization import to_safe
from meta_rl_lessons.trainer import load_rng_state, rng_state

__all__ = [
    "CGSolution",
    "LineSearchResult",
    "TRPO",
    "TRPOConfig",
    "cg_solve",
    "conjugate_gradient",
    "fisher_vector_product",
    "flat_concat",
    "line_search",
    "unflatten_like",
]


# ============================================================================ numerical building blocks
def flat_concat(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector ``[sum of numels]``."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_like(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector back into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        out.append(vector[i:i + t.numel()].view_as(t))
        i += t.numel()
    if i != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries but the tensors hold {i}")
    return out


def fisher_vector_product(
    kl: Tensor | Callable[[], Tensor], params: Sequence[Tensor], damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    r"""Return ``v -> (H + damping I) v`` with ``H`` the Hessian of ``kl`` w.r.t. ``params`` (eq. fvp).

    At :math:`\theta = \theta_k` the Hessian of the mean KL
    :math:`\bar D_\mathrm{KL}(\theta_k\|\theta)` is the (average) Fisher information matrix, so this is
    :math:`(F + \lambda I)v`. Computed by double backprop: :math:`g = \nabla \bar D_\mathrm{KL}` is built
    once with ``create_graph=True`` and every product differentiates :math:`g^\top v` (one backward pass
    each, graph retained).

    Args:
        kl: the scalar KL, or a zero-argument closure computing it (called once).
        params: the tensors to differentiate with respect to (``requires_grad``); any list, e.g. MAML's
            meta-parameters.
        damping: :math:`\lambda \ge 0`, added for numerical stability of conjugate gradient.

    Returns:
        A function from flat vectors ``[n]`` to flat vectors ``[n]``, ``n = sum(p.numel() for p in params)``.
    """
    check_positive("damping", damping, allow_zero=True)
    params = list(params)
    value = kl() if callable(kl) else kl
    if value.dim() != 0:
        raise ValueError(f"fisher_vector_product needs a scalar KL, got shape {tuple(value.shape)}")
    grads = torch.autograd.grad(value, params, create_graph=True, allow_unused=True)
    flat_grad = flat_concat(
        [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)])

    def product(v: Tensor) -> Tensor:
        if v.shape != flat_grad.shape:
            raise ValueError(f"vector has shape {tuple(v.shape)}, expected {tuple(flat_grad.shape)}")
        hv = torch.autograd.grad(flat_grad @ v.detach(), params, retain_graph=True, allow_unused=True)
        out = flat_concat([torch.zeros_like(p) if h is None else h for p, h in zip(params, hv, strict=True)])
        return out + damping * v

    return product


class CGSolution(NamedTuple):
    """What :func:`cg_solve` returns."""

    x: Tensor
    """``[n]``, the approximate solution of :math:`A x = b`."""
    Ax: Tensor
    r"""``[n]``, :math:`A x` without another product: :math:`b - r`, with :math:`r` conjugate gradient's own
    residual (updated from the products it made, :math:`r \leftarrow r - \alpha A p`)."""
    products: int
    """The matrix-vector products made (``iters``, or fewer when the residual fell below the tolerance)."""


def cg_solve(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> CGSolution:
    r"""Approximately solve :math:`A x = b` for symmetric positive-definite :math:`A`, given only ``matvec``.

    The classic Hestenes-Stiefel iteration, starting from :math:`x_0 = 0`; stops after ``iters`` products or
    when :math:`\|r\|^2 <` ``residual_tol``. After :math:`n` iterations it is exact (in exact arithmetic)
    for an :math:`n \times n` system; TRPO uses about 10.

    The residual is kept up to date from the products themselves: with :math:`x = \sum_j \alpha_j p_j`,
    :math:`r = b - \sum_j \alpha_j A p_j = b - A x` by linearity alone (no conjugacy needed), so :math:`A x`
    comes for free. The trust-region step needs :math:`x^\top A x` for its length (eq. trpo-step), which
    saves the one product after the solve that TRPO implementations often make.

    Args:
        matvec: ``v [n] -> A v [n]``.
        b: ``[n]``.

    Returns:
        :class:`CGSolution` ``(x [n], Ax [n], products)``.
    """
    if iters <= 0:
        raise ValueError(f"conjugate gradient needs iters >= 1, got {iters}")
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x
    p = b.clone()  # search direction
    rr = r @ r
    products = 0
    for _ in range(iters):
        if rr < residual_tol:
            break
        Ap = matvec(p)
        products += 1
        pAp = p @ Ap
        if pAp <= 0:
            raise FloatingPointError(
                f"conjugate_gradient: p^T A p = {pAp.item():.3e} <= 0, the matrix is not positive definite "
                "(add damping)"
            )
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return CGSolution(x, b - r, products)


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """:func:`cg_solve`'s ``x [n]`` alone (same arguments)."""
    return cg_solve(matvec, b, iters, residual_tol).x


@dataclass
class LineSearchResult:
    """Outcome of :func:`line_search`."""

    accepted: bool
    """Whether a step satisfied both conditions (else the step is zero: keep the old parameters)."""
    step: Tensor
    """The accepted step (``fraction * full_step``), or zeros."""
    fraction: float
    """The accepted fraction of the full step (0 if none)."""
    loss: float
    """Surrogate loss at the accepted point (the old loss if none)."""
    kl: float
    """KL at the accepted point (0 if none)."""
    backtracks: int
    """Number of shrinkings tried before acceptance (``max_backtracks`` if none)."""


@torch.no_grad()
def line_search(
    evaluate: Callable[[Tensor], tuple[Tensor | float, Tensor | float]],
    full_step: Tensor,
    loss_before: float,
    max_kl: float,
    expected_improvement: float | None = None,
    accept_ratio: float = 0.0,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 10,
) -> LineSearchResult:
    r"""Backtracking line search for a trust-region step (eq. trpo-linesearch).

    Tries ``step = backtrack_ratio**i * full_step`` for ``i = 0, 1, ...`` and accepts the first one with

    * ``kl <= max_kl`` (the quadratic model of the KL may be wrong: the *exact* KL is checked), and
    * ``loss_before - loss > accept_ratio * fraction * expected_improvement`` (strict improvement of the
      surrogate loss; with ``accept_ratio = 0`` any improvement, else an Armijo-type sufficient decrease).

    Args:
        evaluate: pure function ``step [n] -> (surrogate loss, mean KL)`` at ``theta_old + step`` (it must not
            modify the parameters; evaluate with ``policy(obs, params=...)``).
        full_step: ``[n]``, the full trust-region step.
        loss_before: the surrogate loss at ``theta_old``.
        max_kl: the trust-region radius :math:`\delta`.
        expected_improvement: first-order predicted decrease of the loss for the full step, ``-g . full_step``
            (needed only when ``accept_ratio > 0``).
        accept_ratio: fraction of the expected improvement required.
        backtrack_ratio: shrink factor in ``(0, 1)``.
        max_backtracks: number of step sizes tried.
    """
    if not 0 < backtrack_ratio < 1:
        raise ValueError(f"backtrack_ratio must lie in (0, 1), got {backtrack_ratio}")
    check_positive("max_kl", max_kl)
    if accept_ratio > 0 and expected_improvement is None:
        raise ValueError("accept_ratio > 0 needs expected_improvement")
    for i in range(max_backtracks):
        fraction = backtrack_ratio**i
        step = fraction * full_step
        loss, kl = (float(x) for x in evaluate(step))
        improvement = loss_before - loss
        needed = accept_ratio * fraction * expected_improvement if accept_ratio > 0 else 0.0
        if math.isfinite(loss) and math.isfinite(kl) and kl <= max_kl and improvement > needed:
            return LineSearchResult(True, step, fraction, loss, kl, i)
    return LineSearchResult(False, torch.zeros_like(full_step), 0.0, loss_before, 0.0, max_backtracks)


def trust_region_step(fvp: Callable[[Tensor], Tensor], gradient: Tensor, max_kl: float, cg_iters: int = 10,
                      what: str = "TRPO") -> Tensor:
    r"""The full trust-region step (eq. trpo-step): :math:`s = \sqrt{2\delta / d^\top F d}\; d` with
    :math:`d \approx -F^{-1} g` from :func:`cg_solve`, so that :math:`\tfrac12 s^\top F s = \delta`.
    :math:`F d` is conjugate gradient's own (:attr:`CGSolution.Ax`), so the step costs ``cg_iters`` products
    of ``fvp``, not one more.

    Shared by :class:`TRPO` (``F`` the Fisher matrix) and MAML-TRPO (``F`` the meta-KL's Hessian).

    Args:
        fvp: ``v [n] -> F v [n]`` (damping included).
        gradient: ``[n]``, the gradient :math:`g` of the surrogate *loss*.
        max_kl: the radius :math:`\delta`.
        cg_iters: conjugate-gradient iterations.
        what: the algorithm's name, for the error message.

    Raises:
        FloatingPointError: when :math:`d^\top F d` is not positive (the curvature is singular at ``d``).
    """
    direction, F_direction, _ = cg_solve(fvp, -gradient, cg_iters)  # d ~ -F^{-1} g (a descent direction)
    shs = 0.5 * (direction @ F_direction)
    if not torch.isfinite(shs) or shs <= 0:
        raise FloatingPointError(f"{what}: s^T F s = {float(shs):.3e} is not positive; increase cg_damping")
    return direction * torch.sqrt(max_kl / shs)


@torch.no_grad()
def apply_step(params: Sequence[Tensor], step: Tensor) -> None:
    """Add the flat ``step`` to ``params`` in place (the inverse of :func:`flat_concat`'s layout)."""
    for p, d in zip(params, unflatten_like(step, params), strict=True):
        p.add_(d)


# ============================================================================ the algorithm
@dataclass
class TRPOConfig:
    """Hyper-parameters of :class:`TRPO` (defaults close to rllab / Spinning Up)."""

    env_id: str = "InvertedPendulum-v5"
    """gymnasium environment id (ignored when an environment is passed to :class:`TRPO`)."""
    num_envs: int = 8
    """Environments stepped together while collecting episodes."""
    episodes_per_iteration: int = 16
    """Whole episodes per iteration (from fresh resets)."""
    max_episode_steps: int | None = None
    """Override of the environment's time limit (short horizons for quick experiments)."""
    physics: str = "mujoco"
    """``"mujoco"``: ``env_id`` as registered; ``"warp"``: MuJoCo Warp physics for a MetaRL locomotion id, on
    ``device`` (see :func:`~meta_rl_lessons.rl.sampling.make_vector_env`; ignored when an environment is
    passed to :class:`TRPO`)."""
    iterations: int = 50
    """Number of TRPO iterations."""
    max_kl: float = 0.01
    r"""Trust-region radius :math:`\delta` in (eq. trpo-problem)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""
    cg_damping: float = 0.1
    r"""Damping :math:`\lambda` added to the Fisher matrix, :math:`(F + \lambda I)`."""
    fvp_subsample: float = 1.0
    """Fraction of the steps used for the Fisher-vector products (rllab's subsampling; 1.0: all)."""
    backtrack_ratio: float = 0.8
    """Line-search shrink factor."""
    max_backtracks: int = 15
    """Line-search steps tried before giving up (then the policy is unchanged this iteration)."""
    accept_ratio: float = 0.0
    """Required fraction of the linearly predicted improvement (0: any improvement)."""
    gamma: float = 0.99
    r"""Discount factor :math:`\gamma`."""
    gae_lambda: float = 0.97
    r"""GAE :math:`\lambda` (eq. gae)."""
    normalize_advantages: bool = True
    """Normalise advantages over the batch (the trust region fixes the step size, not its scale)."""
    baseline: str = "value"
    """``"value"`` (an MLP trained by Adam), ``"linear"`` (eq. linear-baseline) or ``"none"``."""
    value_learning_rate: float = 1e-3
    """Adam step size of the value network."""
    value_iters: int = 80
    """Full-batch Adam steps on the value network per iteration."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy (and value network)."""
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
        check_positive_ints(self, "num_envs", "episodes_per_iteration", "iterations", "cg_iters",
                            "max_backtracks", "value_iters")
        check_physics(self.env_id, self.physics)
        check_config_numbers(self, "max_kl", "value_learning_rate")
        check_config_numbers(self, "cg_damping", allow_zero=True)
        check_config_range(self, "accept_ratio", 0.0, 1.0, high_open=True)
        check_config_range(self, "fvp_subsample", 0.0, 1.0, low_open=True)
        check_config_range(self, "backtrack_ratio", 0.0, 1.0, low_open=True, high_open=True)
        check_config_range(self, "gamma", 0.0, 1.0, low_open=True)
        check_config_range(self, "gae_lambda", 0.0, 1.0)
        check_config_choice(self, "baseline", ("value", "linear", "none"))


class TRPO(VectorEnvTrainer):
    """TRPO trainer: ``TRPO(config).train()`` or one :meth:`iteration` at a time (the
    :class:`~meta_rl_lessons.trainer.Trainer` protocol).

    Attributes:
        policy: the policy (on ``device``); value: the value network (``baseline="value"``) or ``None``.
        baseline: the :class:`~meta_rl_lessons.rl.baselines.StateBaseline` (``config.baseline``).
        logger: per-iteration metrics.
    """

    name = "trpo"
    return_key = "episode_return"

    def __init__(self, config: TRPOConfig, envs: gym.vector.VectorEnv | None = None) -> None:
        obs_space, _ = self._setup(config, envs)  # seeds, device, vector env, policy
        c = self.config
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

    # ------------------------------------------------------------------ advantages
    def advantages(self, batch: EpisodeBatch) -> tuple[Tensor, Tensor]:
        """``(advantages, value targets)`` ``[T, B]``: GAE (eq. gae) with the baseline *before* it is refitted
        on this batch (fitting first would make the baseline depend on the actions it scores)."""
        c = self.config
        values, next_values = self.baseline.values(batch) or (torch.zeros_like(batch.rewards),) * 2
        adv, _ = gae(batch.rewards, values, next_values, batch.terminated, batch.truncated, c.gamma,
                     c.gae_lambda, batch.mask)
        # Monte-Carlo targets for the baseline, bootstrapped at truncations (eq. return)
        targets = discounted_returns(batch.rewards, c.gamma, batch.terminated, batch.truncated, batch.mask,
                                     next_values)
        if c.normalize_advantages:
            adv = normalize_advantages(adv, batch.mask)
        return adv, targets

    # ------------------------------------------------------------------ the policy step
    def policy_step(self, batch: EpisodeBatch, advantages: Tensor) -> dict[str, float]:
        """One trust-region step on the policy (eqs. trpo-problem, trpo-step, trpo-linesearch)."""
        c = self.config
        obs, act, mask = batch.observations, batch.actions, batch.mask
        names = [n for n, _ in self.policy.named_parameters()]
        params = [p for _, p in self.policy.named_parameters()]
        with torch.no_grad():
            old_dist = self.policy(obs)
            old_logp = old_dist.log_prob(act)

        def surrogate(p_dict=None) -> Tensor:  # L(theta), as a loss to minimise
            ratio = (self.policy(obs, p_dict).log_prob(act) - old_logp).exp()
            return -masked_mean(ratio * advantages, mask)

        def mean_kl(p_dict=None, rows: Tensor | None = None) -> Tensor:  # KL(pi_old || pi_theta), masked mean
            if rows is None:
                return masked_mean(kl_divergence(old_dist, self.policy(obs, p_dict)), mask)
            with torch.no_grad():
                old_rows = self.policy(obs[rows])
            return masked_mean(kl_divergence(old_rows, self.policy(obs[rows], p_dict)), mask[rows])

        loss = surrogate()
        check_finite("TRPO surrogate loss", loss)
        g = flat_concat(torch.autograd.grad(loss, params))
        # Fisher-vector products on a subsample of time rows (rllab's trick); the KL's graph is built once
        rows = None
        if c.fvp_subsample < 1.0:
            n_rows = max(1, int(round(c.fvp_subsample * obs.shape[0])))
            rows = torch.randperm(obs.shape[0], device=obs.device)[:n_rows]
        fvp = fisher_vector_product(lambda: mean_kl(rows=rows), params, c.cg_damping)
        full_step = trust_region_step(fvp, g, c.max_kl, c.cg_iters)  # (eq. trpo-step)
        expected = float(-(g @ full_step))

        def evaluate(step: Tensor) -> tuple[float, float]:
            new = {n: p + d for n, p, d in zip(names, params, unflatten_like(step, params), strict=True)}
            return surrogate(new), mean_kl(new)

        result = line_search(evaluate, full_step, loss.item(), c.max_kl, expected, c.accept_ratio,
                             c.backtrack_ratio, c.max_backtracks)
        if result.accepted:
            apply_step(params, result.step)
        return {
            "surrogate_before": loss.item(),
            "surrogate_after": result.loss,
            "kl": result.kl,
            "step_fraction": result.fraction,
            "backtracks": result.backtracks,
            "accepted": float(result.accepted),
            "expected_improvement": expected,
        }

    def iteration(self) -> dict[str, float]:
        """Collect episodes, compute advantages, take a trust-region step, refit the baseline."""
        c = self.config
        t0 = time.perf_counter()
        batch = self.sampler.collect_episodes(c.episodes_per_iteration)
        t1 = time.perf_counter()
        adv, targets = self.advantages(batch)
        stats = self.policy_step(batch, adv)
        stats["baseline_loss"] = self.baseline.fit(batch, targets, "TRPO")
        t2 = time.perf_counter()
        self.iterations_done += 1
        episodes = self.sampler.pop_episode_stats()
        row = {
            "iteration": self.iterations_done,
            "env_steps": self.sampler.total_steps,
            "batch_steps": batch.num_steps,
            "episode_return": float(episodes["returns"].mean()),
            "episode_length": float(episodes["lengths"].mean()),
            **stats,
            "sample_time": t1 - t0,
            "update_time": t2 - t1,
        }
        self.logger.log(row)
        return row

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything the next iterations depend on (``weights_only``-safe): config, policy, value network
        and its Adam state (or the linear baseline's weights), the sampler (its environments) and the
        process-wide generators (actions and the Fisher subsample are drawn from torch's)."""
        return to_safe({
            "config": config_state(self.config),
            "iterations_done": self.iterations_done,
            "policy": self.policy.state_dict(),
            "baseline": self.baseline.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
        })

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s result (also as read back by
        :func:`~meta_rl_lessons.serialization.load_checkpoint`) on a TRPO built from the same config.

        Raises:
            ValueError: missing entries, or a state saved with another config (naming the fields).
        """
        check_state("TRPO", self.config, state, ("iterations_done", "policy", "baseline", "sampler", "rng"))
        self.policy.load_state_dict(state["policy"])
        self.baseline.load_state_dict(state["baseline"])
        self.sampler.load_state_dict(state["sampler"])
        self.iterations_done = int(state["iterations_done"])
        load_rng_state(state["rng"])  # last: nothing after it draws random numbers
