r"""Returns, advantages and the linear feature baseline, over padded time-major batches.

All functions take tensors shaped ``[T, *B]`` (``T`` time steps, any batch dimensions ``B``) as stored in an
:class:`~meta_rl_lessons.rl.batch.EpisodeBatch`, and handle the three ways a column can stop:

* **termination** (``terminated[t]``): the MDP reached a terminal state; the value after it is zero;
* **truncation** (``truncated[t]``): a time limit cut the episode; the state after it still has value, so
  we *bootstrap* from :math:`V(s'_t)`, the value of the true final observation ``next_observations[t]``;
* **end of the rollout** (``t = T - 1`` without either flag): the column was cut by the sampler, which is a
  truncation as far as the return is concerned, so we bootstrap there too.

After a boundary a new episode may start in the same column (fixed-length rollouts); the recursions below
never carry anything across a boundary. Padding steps (``mask == 0``) get zero returns and advantages.

Equations (labels as in chapter 1):

* discounted return :math:`G_t = \sum_{k\ge 0} \gamma^k r_{t+k}` (eq. return), computed backwards as
  :math:`G_t = r_t + \gamma G_{t+1}`;
* TD error :math:`\delta_t = r_t + \gamma (1 - \mathrm{term}_t) V(s'_t) - V(s_t)` (eq. td-error);
* GAE :math:`\hat A_t = \sum_{l\ge 0} (\gamma\lambda)^l \delta_{t+l}` (eq. gae), computed backwards as
  :math:`\hat A_t = \delta_t + \gamma\lambda (1 - \mathrm{done}_t) \hat A_{t+1}`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from meta_rl_lessons.rl.batch import EpisodeBatch

__all__ = [
    "LinearFeatureBaseline",
    "as_flags",
    "discounted_returns",
    "episode_time_steps",
    "fit_linear_baseline",
    "gae",
    "gae_from_batch",
    "linear_baseline_features",
    "normalize_advantages",
    "solve_ridge",
]


def _check_gamma_lam(gamma: float, lam: float | None = None) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"discount gamma must lie in [0, 1], got {gamma}")
    if lam is not None and not 0.0 <= lam <= 1.0:
        raise ValueError(f"GAE lambda must lie in [0, 1], got {lam}")


def _check_tensor(fn: str, name: str, x: Tensor, shape: torch.Size | None = None,
                  what: str = "rewards") -> None:
    """Raise ``ValueError`` unless ``x`` is a tensor (of ``shape``, the shape of ``what``)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if shape is not None and x.shape != shape:
        raise ValueError(f"{fn}: {name} has shape {tuple(x.shape)}, expected {tuple(shape)} (the shape of "
                         f"{what}, [T, *B]); nothing is broadcast")


def _check_rewards(fn: str, rewards: Tensor) -> None:
    _check_tensor(fn, "rewards", rewards)
    if rewards.dim() < 1 or rewards.shape[0] < 1 or not rewards.is_floating_point():
        raise ValueError(f"{fn}: rewards must be a floating-point tensor [T, *B] with T >= 1, got shape "
                         f"{tuple(rewards.shape)} and dtype {rewards.dtype}")


def as_flags(fn: str, name: str, flags: Tensor, shape: torch.Size, what: str = "rewards") -> Tensor:
    """Episode-boundary flags as a bool tensor of ``shape``: bool as it is, integer or float 0/1 converted
    (``~`` on an int64 tensor is a bitwise not, ``~1 == -2``: used as a mask it silently gives wrong results).

    Raises:
        ValueError: ``flags`` is not a tensor of ``shape``, or holds values other than 0 and 1 (naming them).
    """
    _check_tensor(fn, name, flags, shape, what)
    if flags.dtype == torch.bool:
        return flags
    if flags.is_complex():
        raise ValueError(f"{fn}: {name} must be bool or 0/1, got dtype {flags.dtype}")
    bad = (flags != 0) & (flags != 1)
    if bool(bad.any()):
        values = torch.unique(flags[bad])[:5].tolist()
        raise ValueError(f"{fn}: {name} must be bool or 0/1 (integer or float), got values {values} "
                         f"(dtype {flags.dtype})")
    return flags != 0


def _flags(
    terminated: Tensor, truncated: Tensor, mask: Tensor | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """``(end, boot, mask)``: where a column's return stops (a boundary or the last row), where it
    bootstraps (an end that is not a termination), and the float mask."""
    end = terminated | truncated
    end = end.clone()
    end[-1] = True  # the rollout is cut after its last row
    boot = end & ~terminated
    m = torch.ones_like(terminated, dtype=dtype) if mask is None else mask.to(dtype)
    return end, boot, m


def discounted_returns(
    rewards: Tensor,
    gamma: float,
    terminated: Tensor | None = None,
    truncated: Tensor | None = None,
    mask: Tensor | None = None,
    next_values: Tensor | None = None,
) -> Tensor:
    r"""Discounted reward-to-go :math:`G_t = r_t + \gamma G_{t+1}` (eq. return), restarted at episode ends.

    Args:
        rewards: ``[T, *B]``.
        gamma: discount factor in ``[0, 1]``.
        terminated, truncated: ``[T, *B]`` bool episode-boundary flags (``None``: no boundaries inside).
        mask: ``[T, *B]`` float, 1 for real steps (``None``: all real).
        next_values: ``[T, *B]`` values :math:`V(s'_t)` of ``next_observations``. Where an episode is
            truncated (or the rollout ends) :math:`G_t` bootstraps with :math:`\gamma V(s'_t)`; ``None``
            means no bootstrap (Monte-Carlo returns of the observed rewards only).

    Returns:
        ``[T, *B]`` returns, zero on padding.

    Raises:
        ValueError: ``gamma`` outside ``[0, 1]``; an argument whose shape is not that of ``rewards``; flags
            that are not bool or 0/1.
    """
    fn = "discounted_returns"
    _check_gamma_lam(gamma)
    _check_rewards(fn, rewards)
    shape = rewards.shape
    terminated = None if terminated is None else as_flags(fn, "terminated", terminated, shape)
    truncated = None if truncated is None else as_flags(fn, "truncated", truncated, shape)
    for name, x in (("mask", mask), ("next_values", next_values)):
        if x is not None:
            _check_tensor(fn, name, x, shape)
    no = torch.zeros_like(rewards, dtype=torch.bool)
    end, boot, m = _flags(no if terminated is None else terminated, no if truncated is None else truncated,
                          mask, rewards.dtype)
    tail = torch.zeros_like(rewards) if next_values is None else next_values * boot
    out = torch.empty_like(rewards)
    g = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        g = m[t] * (rewards[t] + gamma * torch.where(end[t], tail[t], g))
        out[t] = g
    return out


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Generalized advantage estimation (eq. gae) with termination/truncation handled.

    Args:
        rewards: ``[T, *B]``.
        values: ``[T, *B]`` :math:`V(s_t)` of ``observations``.
        next_values: ``[T, *B]`` :math:`V(s'_t)` of ``next_observations`` (the true final observation at
            episode ends, so a truncated episode bootstraps from the right state).
        terminated, truncated: ``[T, *B]`` bool.
        gamma: discount in ``[0, 1]``; lam: :math:`\lambda \in [0, 1]` (0: TD error, 1: Monte-Carlo).
        mask: ``[T, *B]`` float (``None``: all real).

    Returns:
        ``(advantages, returns)``, both ``[T, *B]`` and zero on padding; ``returns = advantages + values``
        are the :math:`\lambda`-returns used as value targets.

    Raises:
        ValueError: ``gamma`` or ``lam`` outside ``[0, 1]``; ``values``, ``next_values``, a flag or ``mask``
            whose shape is not that of ``rewards`` (a ``[B]`` value would otherwise broadcast silently);
            flags that are not bool or 0/1.
    """
    fn = "gae"
    _check_gamma_lam(gamma, lam)
    _check_rewards(fn, rewards)
    shape = rewards.shape
    _check_tensor(fn, "values", values, shape)
    _check_tensor(fn, "next_values", next_values, shape)
    terminated = as_flags(fn, "terminated", terminated, shape)
    truncated = as_flags(fn, "truncated", truncated, shape)
    if mask is not None:
        _check_tensor(fn, "mask", mask, shape)
    end, _, m = _flags(terminated, truncated, mask, rewards.dtype)
    # (eq. td-error): zero value after a termination, V(s'_t) otherwise (including truncation).
    deltas = rewards + gamma * next_values * (~terminated) - values
    carry = (~end).to(rewards.dtype) * (gamma * lam)  # coefficient of A_{t+1} in A_t: cut at every boundary
    adv = torch.empty_like(rewards)
    a = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        a = m[t] * (deltas[t] + carry[t] * a)  # (eq. gae), backwards
        adv[t] = a
    return adv, (adv + values) * m


def gae_from_batch(
    batch: EpisodeBatch, values: Tensor, next_values: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """:func:`gae` on an :class:`EpisodeBatch`; ``values``/``next_values`` are ``[T, *B]``."""
    return gae(batch.rewards, values, next_values, batch.terminated, batch.truncated, gamma, lam, batch.mask)


def normalize_advantages(advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Shift and scale advantages to mean 0 and standard deviation 1 over the *real* steps.

    Args:
        advantages: ``[T, *B]`` (or any shape).
        mask: same shape, 1 for real steps; padding stays 0 in the output and is excluded from the
            statistics (an unmasked mean would be pulled towards zero by padding).

    Raises:
        ValueError: ``mask`` of another shape, or fewer than 2 real steps.
    """
    _check_tensor("normalize_advantages", "advantages", advantages)
    if mask is not None:
        _check_tensor("normalize_advantages", "mask", mask, advantages.shape, "advantages")
    if mask is None:
        mask = torch.ones_like(advantages)
    n = mask.sum()
    if n < 2:
        raise ValueError(f"normalize_advantages needs at least 2 real steps, got {int(n.item())}")
    mean = (advantages * mask).sum() / n
    var = (((advantages - mean) * mask) ** 2).sum() / (n - 1)
    return (advantages - mean) / (var.sqrt() + eps) * mask


# --------------------------------------------------------------------------- linear feature baseline
def episode_time_steps(terminated: Tensor, truncated: Tensor) -> Tensor:
    """Time since the start of the current episode, ``[T, *B]`` float (0 at row 0 and after every end).

    Raises:
        ValueError: flags of different shapes, or not bool or 0/1.
    """
    _check_tensor("episode_time_steps", "terminated", terminated)
    terminated = as_flags("episode_time_steps", "terminated", terminated, terminated.shape)
    truncated = as_flags("episode_time_steps", "truncated", truncated, terminated.shape, "terminated")
    ends = (terminated | truncated).to(torch.long)
    T = ends.shape[0]
    idx = torch.arange(T, device=ends.device).view(T, *([1] * (ends.dim() - 1))).expand_as(ends)
    # index of the most recent episode start at or before t: (last end before t) + 1
    starts = torch.where(ends.bool(), idx + 1, torch.zeros_like(idx))
    starts = torch.cat([torch.zeros_like(starts[:1]), starts[:-1]], dim=0).cummax(dim=0).values
    return (idx - starts).to(torch.get_default_dtype())


def linear_baseline_features(observations: Tensor, time_steps: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Features of the linear baseline of Duan et al. (2016) (eq. linear-baseline).

    :math:`\phi(s, t) = [s, s^2, t/100, (t/100)^2, (t/100)^3, 1]` with :math:`s` clipped to
    ``[-10, 10]`` (as in rllab), zero on padding.

    Args:
        observations: ``[T, *B, obs_dim]``; time_steps: ``[T, *B]``; mask: ``[T, *B]``.

    Returns:
        ``[T, *B, 2 * obs_dim + 4]``.

    Raises:
        ValueError: ``time_steps`` or ``mask`` not of shape ``observations.shape[:-1]``.
    """
    fn = "linear_baseline_features"
    _check_tensor(fn, "observations", observations)
    if observations.dim() < 2:
        raise ValueError(f"{fn}: observations must be [T, *B, obs_dim], got shape "
                         f"{tuple(observations.shape)}")
    _check_tensor(fn, "time_steps", time_steps, observations.shape[:-1], "observations[..., 0]")
    if mask is not None:
        _check_tensor(fn, "mask", mask, observations.shape[:-1], "observations[..., 0]")
    o = observations.clamp(-10.0, 10.0)
    t = (time_steps.to(o.dtype) / 100.0).unsqueeze(-1)
    feats = torch.cat([o, o * o, t, t * t, t * t * t, torch.ones_like(t)], dim=-1)
    return feats if mask is None else feats * mask.unsqueeze(-1).to(o.dtype)


def fit_linear_baseline(
    features: Tensor, targets: Tensor, reg_coeff: float = 1e-5, max_tries: int = 5
) -> Tensor:
    r"""Ridge-regularised least squares :math:`w = (X^\top X + c I)^{-1} X^\top y`, batched.

    Solved in float64 by Cholesky; where the factorisation fails or gives non-finite weights (an
    ill-conditioned :math:`X^\top X`), the regularisation :math:`c` is multiplied by 10 and that problem
    solved again, up to ``max_tries`` times (rllab's rule), independently for every problem in the batch.

    Args:
        features: ``[*K, M, F]`` (``*K`` independent problems, e.g. one per task; padding rows all zero).
        targets: ``[*K, M]`` (zero on padding).

    Returns:
        weights ``[*K, F]`` in the dtype of ``features``.
    """
    if reg_coeff <= 0:
        raise ValueError(f"reg_coeff must be positive, got {reg_coeff}")
    X = features.to(torch.float64)
    y = targets.to(torch.float64)
    xtx = X.transpose(-1, -2) @ X
    xty = (X.transpose(-1, -2) @ y.unsqueeze(-1)).squeeze(-1)
    return solve_ridge(xtx, xty, reg_coeff, max_tries).to(features.dtype)


def solve_ridge(xtx: Tensor, xty: Tensor, reg_coeff: float = 1e-5, max_tries: int = 5) -> Tensor:
    r"""The ridge solve behind :func:`fit_linear_baseline` from the normal equations: ``xtx [*K, F, F]``,
    ``xty [*K, F]`` -> :math:`w = (X^\top X + c I)^{-1} X^\top y` ``[*K, F]`` in float64."""
    xtx, xty = xtx.to(torch.float64), xty.to(torch.float64)
    F = xtx.shape[-1]
    eye = torch.eye(F, dtype=torch.float64, device=xtx.device)
    reg = torch.full(xtx.shape[:-2], float(reg_coeff), dtype=torch.float64, device=xtx.device)
    weights = torch.zeros_like(xty)
    todo = torch.ones_like(reg, dtype=torch.bool)
    for _ in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(xtx + reg[..., None, None] * eye)
        w = torch.cholesky_solve(xty.unsqueeze(-1), chol).squeeze(-1)
        ok = (info == 0) & torch.isfinite(w).all(dim=-1)
        weights = torch.where((todo & ok).unsqueeze(-1), w, weights)
        todo = todo & ~ok
        if not bool(todo.any()):
            break
        reg = torch.where(todo, reg * 10.0, reg)
    if bool(todo.any()):
        raise FloatingPointError(
            f"linear baseline: least squares stayed ill-conditioned after {max_tries} tries (final "
            f"regularisation up to {float(reg.max()):.1e}); check the observations for NaN/inf"
        )
    return weights


class LinearFeatureBaseline:
    """The linear feature baseline of Duan et al. (2016), fitted on Monte-Carlo returns (eq. linear-baseline).

    ``fit(batch, returns)`` regresses returns on :func:`linear_baseline_features`; ``per_task=True`` fits
    one independent baseline per leading batch dimension (``B = (num_tasks, num_episodes)``, as MAML needs),
    all in one batched solve. ``predict(batch)`` returns :math:`V(s_t)` ``[T, *B]`` and
    ``predict_next(batch)`` returns :math:`V(s'_t)` (features of ``next_observations`` at time ``t + 1``).

    Args:
        reg_coeff: initial ridge coefficient :math:`c` (multiplied by 10 on ill-conditioning).
        per_task: fit one baseline per entry of the first batch dimension.
        leave_one_out: (with ``per_task``, ``B = (K, E)``) predict each episode with a baseline fitted on the
            *other* episodes of its task. A baseline fitted on the episode it is subtracted from depends on
            that episode's actions, so :math:`\\mathbb E[\\nabla\\log\\pi(a_t\\mid s_t)\\,b(s_t)]` is not
            zero: a bias of order :math:`1/E` that is large when there are few episodes per feature. Left out,
            episodes are independent and the policy-gradient estimate stays unbiased. (With one episode per
            task the baseline is zero.)
    """

    def __init__(self, reg_coeff: float = 1e-5, per_task: bool = False, leave_one_out: bool = False) -> None:
        if reg_coeff <= 0:
            raise ValueError(f"reg_coeff must be positive, got {reg_coeff}")
        if leave_one_out and not per_task:
            raise ValueError("leave_one_out=True needs per_task=True (batch dimensions (num_tasks, "
                             "num_episodes))")
        self.reg_coeff = reg_coeff
        self.per_task = per_task
        self.leave_one_out = leave_one_out
        self.weights: Tensor | None = None

    def _rows(self, feats: Tensor) -> Tensor:
        """``[T, *B, F]`` -> ``[M, F]`` (one problem) or ``[K, M, F]`` (per task, ``B = (K, ...)``)."""
        if not self.per_task:
            return feats.reshape(-1, feats.shape[-1])
        if feats.dim() < 4:
            raise ValueError(
                f"per_task=True needs batch dimensions (num_tasks, num_episodes), got features of shape "
                f"{tuple(feats.shape)} ([T, *B, F])"
            )
        return feats.movedim(1, 0).reshape(feats.shape[1], -1, feats.shape[-1])

    def _features(self, batch: EpisodeBatch, next_obs: bool = False) -> Tensor:
        t = episode_time_steps(batch.terminated, batch.truncated)
        obs = batch.next_observations if next_obs else batch.observations
        return linear_baseline_features(obs, t + 1 if next_obs else t, batch.mask)

    def fit(self, batch: EpisodeBatch, returns: Tensor) -> LinearFeatureBaseline:
        """Fit to ``returns`` ``[T, *B]`` (usually :func:`discounted_returns` of the batch)."""
        if self.leave_one_out:
            return self._fit_leave_one_out(batch, returns)
        X = self._rows(self._features(batch))
        y = (returns * batch.mask).movedim(1, 0) if self.per_task else returns * batch.mask
        self.weights = fit_linear_baseline(X, y.reshape(X.shape[:-1]), self.reg_coeff)
        return self

    def _fit_leave_one_out(self, batch: EpisodeBatch, returns: Tensor) -> LinearFeatureBaseline:
        feats = self._features(batch)  # [T, K, E, F]
        if feats.dim() != 4:
            raise ValueError(f"leave_one_out=True needs batch dimensions (num_tasks, num_episodes), got "
                             f"features of shape {tuple(feats.shape)} ([T, K, E, F])")
        X = feats.to(torch.float64)
        y = (returns * batch.mask).to(torch.float64)
        # Normal equations per episode, then per task minus the episode's own: one solve per (task, episode).
        xtx_e = torch.einsum("tkef,tkeg->kefg", X, X)
        xty_e = torch.einsum("tkef,tke->kef", X, y)
        xtx = xtx_e.sum(1, keepdim=True) - xtx_e
        xty = xty_e.sum(1, keepdim=True) - xty_e
        self.weights = solve_ridge(xtx, xty, self.reg_coeff).to(feats.dtype)  # [K, E, F]
        return self

    def _predict(self, feats: Tensor) -> Tensor:
        if self.weights is None:
            raise RuntimeError("LinearFeatureBaseline.predict() called before fit()")
        if self.leave_one_out:  # weights [K, E, F]; feats [T, K, E, F]
            return (feats * self.weights.unsqueeze(0)).sum(-1)
        if self.per_task:  # weights [K, F]; feats [T, K, ..., F]
            w = self.weights.view(1, self.weights.shape[0], *([1] * (feats.dim() - 3)), -1)
            return (feats * w).sum(-1)
        return feats @ self.weights

    def predict(self, batch: EpisodeBatch) -> Tensor:
        """:math:`V(s_t)`, ``[T, *B]`` (zero on padding)."""
        return self._predict(self._features(batch))

    def predict_next(self, batch: EpisodeBatch) -> Tensor:
        """:math:`V(s'_t)` of ``next_observations`` at time ``t + 1``, ``[T, *B]`` (zero on padding)."""
        return self._predict(self._features(batch, next_obs=True))
