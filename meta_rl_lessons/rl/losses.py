r"""The losses that several trainers share, written once (chapter 1; chapter 4 uses them recurrently).

=====================================  ========================================================  ==========
function                               what                                                      equation
=====================================  ========================================================  ==========
:func:`clipped_surrogate`              PPO's pessimistic clipped policy loss, with its KL and     ppo-clip
                                       clip-fraction diagnostics
:func:`value_loss`                     squared error of the value head, optionally clipped
                                       around the rollout's values (PPO's ``clip_vloss``)
:func:`explained_variance`             :math:`1 - \mathrm{Var}[R - V] / \mathrm{Var}[R]`
=====================================  ========================================================  ==========

Every function takes an optional ``mask`` of the same shape as its per-step inputs (1 for a real step, 0 for
padding); without one, every entry counts. Means over a mask divide by the number of real steps.
Advantage normalisation is :func:`meta_rl_lessons.rl.advantages.normalize_advantages`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["clipped_surrogate", "explained_variance", "masked_mean", "value_loss"]


def masked_mean(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """``x.mean()``, or the mean over the entries where ``mask`` is 1 (``mask`` broadcastable to ``x``)."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum()


def clipped_surrogate(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_coef: float,
                      mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    r"""PPO's clipped surrogate *loss* (eq. ppo-clip), to be minimised:

    .. math:: L = -\,\mathbb{E}_t\big[\min(\rho_t \hat A_t,\ \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,
       \hat A_t)\big], \qquad \rho_t = \exp(\log\pi_\theta(a_t|s_t) - \log\pi_{\text{old}}(a_t|s_t)).

    Args:
        log_probs: ``[...]`` log-probabilities under the current parameters (with gradient).
        old_log_probs, advantages: ``[...]``, from the rollout (no gradient needed).
        clip_coef: :math:`\epsilon > 0`.
        mask: optional ``[...]`` of 0/1.

    Returns:
        ``(loss, stats)``: the scalar loss, and detached ``approx_kl`` (the ``(ρ - 1) - log ρ`` estimator of
        :math:`\mathrm{KL}(\pi_{\text{old}}\|\pi_\theta)`, never negative) and ``clip_fraction`` (the share
        of steps whose ratio left the clip range).
    """
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    loss = -masked_mean(torch.min(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages),
                        mask)
    with torch.no_grad():
        stats = {"approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
                 "clip_fraction": masked_mean(((ratio - 1).abs() > clip_coef).float(), mask)}
    return loss, stats


def value_loss(values: Tensor, returns: Tensor, old_values: Tensor | None = None,
               clip_coef: float | None = None, mask: Tensor | None = None) -> Tensor:
    r"""Mean squared error :math:`\mathbb{E}_t[(V(s_t) - R_t)^2]`.

    With ``old_values`` and ``clip_coef``, the pessimistic clipped form of PPO's reference code: the larger of
    the plain error and the error of :math:`V_{\text{old}} + \mathrm{clip}(V - V_{\text{old}}, \pm\epsilon)`.
    """
    if old_values is None or clip_coef is None:
        return masked_mean((values - returns) ** 2, mask)
    clipped = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
    return masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


@torch.no_grad()
def explained_variance(returns: Tensor, values: Tensor, mask: Tensor | None = None) -> float:
    r""":math:`1 - \mathrm{Var}[R - V] / \mathrm{Var}[R]` over the (real) steps: 1 for a perfect value
    function, 0 for a constant one, negative for one worse than a constant; NaN when the returns do not vary.
    """
    if mask is not None:
        real = mask.bool()
        returns, values = returns[real], values[real]
    var = returns.var()
    return float(1 - (returns - values).var() / var) if var > 0 else math.nan
