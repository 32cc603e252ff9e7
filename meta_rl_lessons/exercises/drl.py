r"""Exercises of chapter 1 (deep RL basics): GAE, the TRPO line search, the PPO clipped surrogate.

Each exercise has a *template* (the signature and docstring to implement, raising ``NotImplementedError``), a
*reference* wrapper around the package's own code with the same signature, and a ``check_*`` function::

    from meta_rl_lessons.exercises import drl

    def my_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
        ...

    print(drl.check_gae(my_gae))          # a readable report; .raise_if_failed() to stop on failure

===========================  ============================================  ===================================
exercise                     compared with                                 what it computes (chapter 1)
===========================  ============================================  ===================================
:func:`gae_template`         :func:`meta_rl_lessons.rl.advantages.gae`     the TD error and the GAE recursion
:func:`line_search_template` :func:`meta_rl_lessons.rl.trpo.line_search`   TRPO's backtracking line search
:func:`ppo_clip_template`    ``rl.losses.clipped_surrogate``               PPO's clipped surrogate
===========================  ============================================  ===================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from meta_rl_lessons.exercises.report import (
    Case,
    CheckReport,
    StudentError,
    as_tensor,
    call,
    compare,
    match_known_mistake,
    run_case,
    seq,
)
from meta_rl_lessons.rl.advantages import gae as _package_gae
from meta_rl_lessons.rl.losses import clipped_surrogate
from meta_rl_lessons.rl.trpo import line_search as _package_line_search

__all__ = [
    "check_gae",
    "check_line_search",
    "check_ppo_clip_loss",
    "gae_template",
    "line_search_template",
    "ppo_clip_template",
    "reference_gae",
    "reference_line_search",
    "reference_ppo_clip_loss",
]

DTYPE = torch.float64


# ============================================================================ GAE
def gae_template(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    r"""Generalized advantage estimates :math:`\hat A_t` of a fixed-length rollout (chapter 1).

    :math:`\delta_t = r_t + \gamma (1 - \mathrm{term}_t) V(s'_t) - V(s_t)` (the TD error) and
    :math:`\hat A_t = \delta_t + \gamma\lambda\,(1 - \mathrm{done}_t)\,\hat A_{t+1}`, computed backwards from
    the last row, where ``done = terminated | truncated``. Every column may hold several episodes: after a
    boundary a new episode starts in the same column, and nothing may flow across it. The last row of the
    rollout is cut by the sampler, not by the MDP: treat it like a truncation.

    Args:
        rewards: ``[T, B]`` float, :math:`r_t`.
        values: ``[T, B]``, :math:`V(s_t)` of the observation at which action ``t`` was taken.
        next_values: ``[T, B]``, :math:`V(s'_t)` of the observation *after* step ``t``; at an episode end this
            is the true final observation (not the reset observation in the next row).
        terminated: ``[T, B]`` bool, the MDP reached a terminal state at step ``t`` (no value after it).
        truncated: ``[T, B]`` bool, a time limit cut the episode at step ``t`` (the state still has value).
        gamma: discount :math:`\gamma \in [0, 1]`; lam: :math:`\lambda \in [0, 1]`.

    Returns:
        advantages ``[T, B]``, same dtype and device as ``rewards``.
    """
    raise NotImplementedError(
        "exercise: implement GAE (the recursion of chapter 1), then run drl.check_gae(your_function)"
    )


def reference_gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """The package's :func:`~meta_rl_lessons.rl.advantages.gae` with the template's signature."""
    return _package_gae(rewards, values, next_values, terminated, truncated, gamma, lam)[0]


def _gae_loop(
    r: Tensor,
    v: Tensor,
    nv: Tensor,
    term: Tensor,
    trunc: Tensor,
    gamma: float,
    lam: float,
    *,
    cut: bool = True,
    reset_value: bool = False,
    trunc_is_term: bool = False,
    ignore_term: bool = False,
    boot_last: bool = True,
    carry: str = "gl",
    delta_discount: str = "g",
) -> Tensor:
    """GAE written as a plain double loop, with switches that reproduce common mistakes (for diagnoses)."""
    T, B = r.shape
    out = torch.zeros_like(r)
    for b in range(B):
        a = 0.0
        for t in reversed(range(T)):
            is_term = bool(term[t, b]) and not ignore_term
            is_trunc = bool(trunc[t, b])
            if trunc_is_term and is_trunc:
                is_term = True
            end = bool(term[t, b]) or is_trunc or t == T - 1
            v_next = float(v[t + 1, b]) if reset_value and t < T - 1 else float(nv[t, b])
            if is_term or (t == T - 1 and not boot_last and not is_trunc):
                v_next = 0.0
            disc = gamma if delta_discount == "g" else gamma * lam
            delta = float(r[t, b]) + disc * v_next - float(v[t, b])
            coef = {"gl": gamma * lam, "g": gamma, "l": lam}[carry]
            a = delta + (0.0 if (end and cut) or t == T - 1 else coef * a)
            out[t, b] = a
    return out


def _gae_inputs(
    gen: torch.Generator,
    T: int,
    B: int,
    term_at: list[tuple[int, int]],
    trunc_at: list[tuple[int, int]],
    device: torch.device,
) -> dict[str, Tensor]:
    """Random rewards and values; ``next_values[t] = values[t + 1]`` inside an episode (same observation) and
    an independent final value at every boundary and at the last row."""
    r = torch.randn(T, B, generator=gen, dtype=DTYPE)
    v = torch.randn(T, B, generator=gen, dtype=DTYPE)
    final = torch.randn(T, B, generator=gen, dtype=DTYPE)
    term = torch.zeros(T, B, dtype=torch.bool)
    trunc = torch.zeros(T, B, dtype=torch.bool)
    for t, b in term_at:
        term[t, b] = True
    for t, b in trunc_at:
        trunc[t, b] = True
    nv = final.clone()
    inside = ~(term | trunc)
    inside[-1] = False
    nv[:-1] = torch.where(inside[:-1], v[1:], final[:-1])
    return {
        k: x.to(device)
        for k, x in dict(rewards=r, values=v, next_values=nv, terminated=term, truncated=trunc).items()
    }


def _random_flags(gen: torch.Generator, T: int, B: int, p: float) -> list[tuple[int, int]]:
    mask = torch.rand(T, B, generator=gen) < p
    return [tuple(x) for x in mask.nonzero().tolist()]


def _gae_diagnosis(
    got: Tensor, want: Tensor, inp: dict[str, Tensor], gamma: float, lam: float, atol: float, rtol: float
) -> str:
    args = [inp[k].cpu() for k in ("rewards", "values", "next_values", "terminated", "truncated")]
    g = got.cpu()
    known = [
        (
            "your advantages run across episode boundaries: restart the backward sum at every terminated or "
            "truncated step (A_t = δ_t there)",
            lambda: _gae_loop(*args, gamma, lam, cut=False),
        ),
        (
            "at an episode end you bootstrap from values[t + 1], the value of the next row's *reset* "
            "observation; use next_values[t], the true final observation",
            lambda: _gae_loop(*args, gamma, lam, reset_value=True),
        ),
        (
            "you treat truncation like termination: a time-limit cut still bootstraps with γ V(s'_t)",
            lambda: _gae_loop(*args, gamma, lam, trunc_is_term=True),
        ),
        (
            "you bootstrap after a terminated step: a terminal state has no value, δ_t = r_t − V(s_t)",
            lambda: _gae_loop(*args, gamma, lam, ignore_term=True),
        ),
        (
            "the last row of the rollout is cut by the sampler, not by the MDP: bootstrap there with "
            "γ V(s'_{T−1}) from next_values",
            lambda: _gae_loop(*args, gamma, lam, boot_last=False),
        ),
        (
            "the recursion multiplies A_{t+1} by γ only: the coefficient is γλ",
            lambda: _gae_loop(*args, gamma, lam, carry="g"),
        ),
        (
            "the recursion multiplies A_{t+1} by λ only: the coefficient is γλ",
            lambda: _gae_loop(*args, gamma, lam, carry="l"),
        ),
        (
            "the TD error discounts V(s'_t) by γλ: it is δ_t = r_t + γ V(s'_t) − V(s_t), λ only "
            "enters the sum",
            lambda: _gae_loop(*args, gamma, lam, delta_discount="gl"),
        ),
        ("your advantages have the wrong sign (δ_t = r_t + γ V(s'_t) − V(s_t))", lambda: -want.cpu()),
        ("you returned the λ-returns A_t + V(s_t), not the advantages", lambda: want.cpu() + args[1]),
    ]
    lines = []
    hit = match_known_mistake(g, known, atol, rtol)
    if hit:
        lines.append(f"looks like: {hit}")
    bad = ~((g - want.cpu()).abs() <= atol + rtol * want.cpu().abs())
    cols = bad.any(0).nonzero()
    if len(cols):
        b = int(cols[0])
        t = int(bad[:, b].nonzero().max())  # errors propagate backwards: the latest bad step is the source
        term, trunc = bool(args[3][t, b]), bool(args[4][t, b])
        kind = (
            "a terminated step"
            if term
            else "a truncated step"
            if trunc
            else "the last row of the rollout"
            if t == args[0].shape[0] - 1
            else "the step before an episode boundary"
            if bool(args[3][t + 1, b] | args[4][t + 1, b]) and t + 1 < args[0].shape[0] - 1
            else "a step inside an episode"
        )
        lines.append(
            f"the latest wrong advantage in column b={b} is at t={t}, {kind} "
            f"(got {float(g[t, b]):.4f}, expected {float(want[t, b]):.4f}); errors there propagate "
            "to earlier steps"
        )
    return "\n".join(lines)


def check_gae(
    student: Callable[..., Tensor], *, seed: int = 0, num_random: int = 4, device: str | torch.device = "cpu"
) -> CheckReport:
    """Check a GAE implementation (signature of :func:`gae_template`) against the package's.

    Fixed edge cases (no boundary, terminations, a truncation next to a termination, both flags at the last
    row, λ = 0 and λ = 1, γ = 1) and ``num_random`` random rollouts with random boundaries, in float64.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    cases: list[tuple[str, int, int, list, list, float, float]] = [
        ("T=7, B=3, no episode boundary: bootstrap only after the last row", 7, 3, [], [], 0.99, 0.95),
        ("T=7, B=3, episodes terminate at (t=2, b=0) and (t=5, b=2)", 7, 3, [(2, 0), (5, 2)], [], 0.99, 0.95),
        (
            "T=8, B=2, a time-limit truncation at (t=3, b=1) and a termination at (t=5, b=0)",
            8,
            2,
            [(5, 0)],
            [(3, 1)],
            0.9,
            0.8,
        ),
        (
            "T=6, B=2, terminated at the last row of column 0, truncated at the last row of column 1",
            6,
            2,
            [(5, 0)],
            [(5, 1)],
            0.97,
            0.9,
        ),
        (
            "λ = 0: the advantages are the TD errors; boundaries at (t=1, b=0) and (t=3, b=1)",
            6,
            2,
            [(1, 0)],
            [(3, 1)],
            0.9,
            0.0,
        ),
        (
            "λ = 1: Monte-Carlo return minus V; boundaries at (t=2, b=0) and (t=4, b=0)",
            7,
            2,
            [(2, 0)],
            [(4, 0)],
            0.95,
            1.0,
        ),
        ("γ = 1, T=1 (a single step), B=4, one termination", 1, 4, [(0, 2)], [], 1.0, 0.95),
    ]
    for i in range(num_random):
        T = int(torch.randint(4, 13, (1,), generator=gen))
        B = int(torch.randint(1, 5, (1,), generator=gen))
        term = _random_flags(gen, T, B, 0.15)
        trunc = [x for x in _random_flags(gen, T, B, 0.1) if x not in term]
        gamma = float(0.8 + 0.2 * torch.rand(1, generator=gen))
        lam = float(torch.rand(1, generator=gen))
        cases.append(
            (
                f"random rollout {i + 1}: T={T}, B={B}, {len(term)} terminations, {len(trunc)} "
                f"truncations, γ={gamma:.3f}, λ={lam:.3f}",
                T,
                B,
                term,
                trunc,
                gamma,
                lam,
            )
        )
    report = CheckReport("GAE (the recursion of chapter 1)", "meta_rl_lessons.rl.advantages.gae")
    atol, rtol = 1e-9, 1e-7

    for desc, T, B, term, trunc, gamma, lam in cases:
        inp = _gae_inputs(gen, T, B, term, trunc, device)

        def body(desc=desc, inp=inp, gamma=gamma, lam=lam) -> Case:
            want = reference_gae(*inp.values(), gamma, lam)
            got = as_tensor(call(student, *inp.values(), gamma, lam), "the advantages", want)
            ok, err_abs, err_rel = compare(got, want, atol, rtol)
            diag = "" if ok else _gae_diagnosis(got, want, inp, gamma, lam, atol, rtol)
            return Case(desc, ok, err_abs, err_rel, diag)

        report.cases.append(run_case(desc, body))
    return report


# ============================================================================ TRPO line search
def line_search_template(
    evaluate: Callable[[Tensor], tuple[float, float]],
    full_step: Tensor,
    loss_before: float,
    max_kl: float,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 10,
) -> Tensor:
    r"""TRPO's backtracking line search (chapter 1).

    Try the fractions ``backtrack_ratio**i`` of ``full_step`` for ``i = 0, 1, ..., max_backtracks - 1`` and
    return the first step ``fraction * full_step`` whose exact mean KL is at most ``max_kl`` *and* whose
    surrogate loss is strictly below ``loss_before`` (a NaN loss or KL never qualifies). If no fraction
    qualifies, return a zero step: the policy keeps its parameters this iteration.

    Args:
        evaluate: ``step [n] -> (loss, kl)``, the surrogate loss and mean KL at ``theta_old + step``
            (plain floats).
        full_step: ``[n]``, the full trust-region step :math:`\sqrt{2\delta / s^\top F s}\, s`.
        loss_before: the surrogate loss at ``theta_old``.
        max_kl: :math:`\delta`.
        backtrack_ratio: shrink factor in ``(0, 1)``; max_backtracks: number of fractions tried.

    Returns:
        the accepted step ``[n]`` (zeros if none), same dtype and device as ``full_step``.
    """
    raise NotImplementedError(
        "exercise: implement TRPO's backtracking line search (chapter 1), "
        "then run drl.check_line_search(your_function)"
    )


def reference_line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    full_step: Tensor,
    loss_before: float,
    max_kl: float,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 10,
) -> Tensor:
    """The package's :func:`~meta_rl_lessons.rl.trpo.line_search` (``accept_ratio=0``), returning the step."""
    return _package_line_search(
        evaluate,
        full_step,
        loss_before,
        max_kl,
        backtrack_ratio=backtrack_ratio,
        max_backtracks=max_backtracks,
    ).step


class _Problem:
    """A surrogate loss and a KL along ``full_step``: ``loss(f) = loss_before + slope f + curv f^2 / 2`` and
    ``kl(f) = kl_full f^2`` at ``step = f * full_step`` (plus a small off-line term, so only steps along
    ``full_step`` behave as the table says). Records the fractions the student tried."""

    def __init__(
        self,
        full_step: Tensor,
        loss_before: float,
        slope: float,
        curv: float,
        kl_full: float,
        nan_above: float | None = None,
    ) -> None:
        self.full_step, self.loss_before = full_step, loss_before
        self.slope, self.curv, self.kl_full, self.nan_above = slope, curv, kl_full, nan_above
        self.tried: list[float] = []

    def fraction(self, step: Tensor) -> float:
        fs = self.full_step
        return float((step.detach().to(fs) @ fs) / (fs @ fs))

    def at(self, f: float, off: float = 0.0) -> tuple[float, float]:
        if self.nan_above is not None and f > self.nan_above:
            return math.nan, math.nan
        loss = self.loss_before + self.slope * f + 0.5 * self.curv * f * f + off
        return loss, self.kl_full * f * f + off

    def __call__(self, step: Tensor) -> tuple[float, float]:
        if not isinstance(step, Tensor) or step.shape != self.full_step.shape:
            raise ValueError(
                f"evaluate expects a step tensor of shape {tuple(self.full_step.shape)}, got "
                f"{getattr(step, 'shape', type(step).__name__)}"
            )
        f = self.fraction(step)
        off = float((step.detach().to(self.full_step) - f * self.full_step).norm())
        self.tried.append(f)
        return self.at(f, off)


def _line_search_diagnosis(
    prob: _Problem, got: Tensor, ref_fraction: float, max_kl: float, ratio: float, n: int
) -> str:
    f = prob.fraction(got)
    if float((got.to(prob.full_step) - f * prob.full_step).norm()) > 1e-9 * (
        1 + float(prob.full_step.norm())
    ):
        return "your step is not a multiple of full_step: the line search only scales the full step"
    loss, kl = prob.at(f)
    tried = f"you evaluated fractions {seq(prob.tried)}" if prob.tried else "you never called evaluate"
    candidates = [ratio**i for i in range(n)]
    if ref_fraction == 0.0:
        why = (
            f"no fraction in {seq(candidates[:4])}{'...' if n > 4 else ''} has KL <= {max_kl:g} and a loss "
            f"below {prob.loss_before:g}, so the step must be zero (keep the old parameters)"
        )
        if not any(abs(f - c) <= 1e-9 for c in candidates):
            return f"{why}; you returned fraction {f:.4g} ({tried})"
        return (
            f"{why}; you returned fraction {f:.4g}, where the loss is {loss:.4g} and the KL {kl:.4g} "
            f"({tried}). Check that the improvement is strict and that NaN never qualifies."
        )
    ref_loss, ref_kl = prob.at(ref_fraction)
    if f == 0.0:
        return (
            f"you returned a zero step, but fraction {ref_fraction:.4g} qualifies (loss {ref_loss:.4g} < "
            f"{prob.loss_before:g}, KL {ref_kl:.4g} <= {max_kl:g}); {tried}"
        )
    if f > ref_fraction + 1e-12:
        reasons = []
        if not (kl <= max_kl):
            reasons.append(
                f"its KL {kl:.4g} exceeds max_kl {max_kl:g} (check the exact KL, not just the loss)"
            )
        if not (loss < prob.loss_before):
            reasons.append(f"its loss {loss:.4g} is not below loss_before {prob.loss_before:g}")
        why = " and ".join(reasons) if reasons else "it is not one of the fractions backtrack_ratio**i"
        return (
            f"you accepted fraction {f:.4g} although {why}; the first qualifying fraction is "
            f"{ref_fraction:.4g}; {tried}"
        )
    if abs(f - ref_fraction * ratio) < 1e-12:
        return (
            f"you returned fraction {f:.4g}, one shrink too far: the first candidate is the full step "
            f"(fraction 1) and fraction {ref_fraction:.4g} already qualifies; {tried}"
        )
    return (
        f"you backtracked to fraction {f:.4g}, past the first qualifying fraction {ref_fraction:.4g} "
        f"(loss {ref_loss:.4g}, KL {ref_kl:.4g}); {tried}"
    )


def check_line_search(
    student: Callable[..., Tensor], *, seed: int = 0, num_random: int = 3, device: str | torch.device = "cpu"
) -> CheckReport:
    """Check a line search (signature of :func:`line_search_template`) against the package's.

    Cases: the full step is accepted; the KL forces backtracking; the loss overshoots; no fraction works
    (reject); the loss is NaN at large steps; a flat loss (no strict improvement: reject); a different
    ``backtrack_ratio``; and ``num_random`` random quadratic problems.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    n = 6
    # (description, slope, curvature, KL of the full step, max_kl, ratio, max_backtracks, nan_above)
    specs: list[tuple[str, float, float, float, float, float, int, float | None]] = [
        (
            "the full step improves the loss and its KL is inside the trust region: accept fraction 1",
            -1.0,
            0.5,
            0.008,
            0.01,
            0.5,
            10,
            None,
        ),
        (
            "the full step's KL is 9x max_kl: backtrack until the exact KL fits (fraction 1/4)",
            -1.0,
            0.2,
            0.09,
            0.01,
            0.5,
            10,
            None,
        ),
        (
            "the full step overshoots (the loss rises): backtrack until the loss improves",
            -1.0,
            6.0,
            0.005,
            0.01,
            0.5,
            10,
            None,
        ),
        (
            "full_step is an ascent direction: no fraction improves the loss, return a zero step",
            1.0,
            0.5,
            0.001,
            0.01,
            0.5,
            10,
            None,
        ),
        (
            "the loss and KL are NaN above fraction 0.3 (a diverged policy): NaN never qualifies",
            -1.0,
            0.5,
            0.005,
            0.01,
            0.5,
            10,
            0.3,
        ),
        (
            "the loss is flat (equal to loss_before everywhere): no strict improvement, return a zero step",
            0.0,
            0.0,
            0.001,
            0.01,
            0.5,
            10,
            None,
        ),
        (
            "backtrack_ratio=0.8, max_backtracks=15, KL 6x max_kl at the full step",
            -2.0,
            1.0,
            0.06,
            0.01,
            0.8,
            15,
            None,
        ),
        (
            "max_backtracks=3 and the KL only fits at fraction 1/8: reject (return a zero step)",
            -1.0,
            0.1,
            0.5,
            0.01,
            0.5,
            3,
            None,
        ),
    ]
    for i in range(num_random):
        slope = -float(0.1 + torch.rand(1, generator=gen))
        curv = float(4 * torch.rand(1, generator=gen))
        kl_full = float(0.002 + 0.1 * torch.rand(1, generator=gen))
        ratio = float(0.5 + 0.4 * torch.rand(1, generator=gen))
        specs.append(
            (
                f"random quadratic {i + 1}: slope {slope:.3f}, curvature {curv:.3f}, KL of full step "
                f"{kl_full:.4f}, max_kl 0.01, backtrack_ratio {ratio:.3f}",
                slope,
                curv,
                kl_full,
                0.01,
                ratio,
                10,
                None,
            )
        )
    report = CheckReport(
        "TRPO backtracking line search (chapter 1)",
        "meta_rl_lessons.rl.trpo.line_search",
    )
    for desc, slope, curv, kl_full, max_kl, ratio, mb, nan_above in specs:
        full = torch.randn(n, generator=gen, dtype=DTYPE).to(device)
        loss_before = float(torch.randn(1, generator=gen))

        def body(
            desc=desc,
            full=full,
            loss_before=loss_before,
            slope=slope,
            curv=curv,
            kl_full=kl_full,
            max_kl=max_kl,
            ratio=ratio,
            mb=mb,
            nan_above=nan_above,
        ) -> Case:
            ref_prob = _Problem(full, loss_before, slope, curv, kl_full, nan_above)
            res = _package_line_search(
                ref_prob, full, loss_before, max_kl, backtrack_ratio=ratio, max_backtracks=mb
            )
            prob = _Problem(full, loss_before, slope, curv, kl_full, nan_above)
            out = call(student, prob, full, loss_before, max_kl, ratio, mb)
            if isinstance(out, tuple):
                raise StudentError("return only the accepted step tensor (zeros if none), not a tuple")
            got = as_tensor(out, "the step", res.step)
            ok, err_abs, err_rel = compare(got, res.step, 1e-10, 1e-8)
            diag = "" if ok else _line_search_diagnosis(prob, got, res.fraction, max_kl, ratio, mb)
            return Case(desc, ok, err_abs, err_rel, diag)

        report.cases.append(run_case(desc, body))
    return report


# ============================================================================ PPO clipped surrogate
def ppo_clip_template(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_coef: float
) -> Tensor:
    r"""PPO's clipped surrogate *loss* (chapter 1), to be minimised.

    :math:`L = -\frac1N\sum_t \min\big(\rho_t \hat A_t,\ \mathrm{clip}(\rho_t, 1-\epsilon,
    1+\epsilon)\hat A_t\big)`
    with the probability ratio :math:`\rho_t = \pi_\theta(a_t\mid s_t)/\pi_{\theta_\mathrm{old}}(a_t\mid s_t)
    = \exp(\log\pi_\theta - \log\pi_{\theta_\mathrm{old}})`.

    Args:
        log_probs: ``[N]``, :math:`\log\pi_\theta(a_t\mid s_t)` (requires grad: the loss must stay
            differentiable with respect to it).
        old_log_probs: ``[N]``, under the policy that collected the data (constants).
        advantages: ``[N]``, :math:`\hat A_t` (constants).
        clip_coef: :math:`\epsilon > 0`.

    Returns:
        the scalar loss (a 0-dimensional tensor).
    """
    raise NotImplementedError(
        "exercise: implement PPO's clipped surrogate loss (chapter 1), "
        "then run drl.check_ppo_clip_loss(your_function)"
    )


def reference_ppo_clip_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_coef: float
) -> Tensor:
    """The loss of :func:`meta_rl_lessons.rl.losses.clipped_surrogate` (what :meth:`PPO.loss
    <meta_rl_lessons.rl.ppo.PPO.loss>` uses) on given tensors, without its statistics."""
    return clipped_surrogate(log_probs, old_log_probs, advantages, clip_coef)[0]


def _ppo_variants(lp: Tensor, old: Tensor, adv: Tensor, eps: float) -> list[tuple[str, Callable[[], Tensor]]]:
    ratio = (lp - old).exp()
    clipped = ratio.clamp(1 - eps, 1 + eps)
    return [
        (
            "you use only the clipped term; PPO takes the minimum (the pessimistic bound) of the "
            "unclipped and "
            "clipped terms",
            lambda: -(clipped * adv).mean(),
        ),
        (
            "you take the maximum of the two terms; PPO takes the minimum (the pessimistic bound)",
            lambda: -torch.max(ratio * adv, clipped * adv).mean(),
        ),
        (
            "you clip the advantages instead of the probability ratio",
            lambda: -torch.min(ratio * adv, ratio * adv.clamp(1 - eps, 1 + eps)).mean(),
        ),
        (
            "your ratio is log π − log π_old; the ratio is exp(log π − log π_old)",
            lambda: -torch.min((lp - old) * adv, (lp - old).clamp(1 - eps, 1 + eps) * adv).mean(),
        ),
        (
            "your ratio is inverted (π_old / π)",
            lambda: -torch.min((old - lp).exp() * adv, (old - lp).exp().clamp(1 - eps, 1 + eps) * adv).mean(),
        ),
        (
            "you return the objective to maximise; the loss is its negative",
            lambda: torch.min(ratio * adv, clipped * adv).mean(),
        ),
        ("you sum over the batch; the loss is a mean", lambda: -torch.min(ratio * adv, clipped * adv).sum()),
        (
            "your loss has no clipping at all (the plain importance-sampling surrogate)",
            lambda: -(ratio * adv).mean(),
        ),
    ]


def check_ppo_clip_loss(
    student: Callable[..., Tensor], *, seed: int = 0, num_random: int = 3, device: str | torch.device = "cpu"
) -> CheckReport:
    """Check a clipped surrogate loss (signature of :func:`ppo_clip_template`): its value and its gradient
    with respect to ``log_probs`` (zero where the clipped term is the minimum)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    # (description, N, log-ratio scale, advantage sign: +1, -1 or 0 for mixed, clip)
    specs: list[tuple[str, int, float, int, float]] = [
        ("N=8, ratios within 1 ± 0.05, mixed advantages, ε=0.2 (nothing is clipped)", 8, 0.02, 0, 0.2),
        (
            "N=12, ratios spread over [0.4, 2.5], mixed advantages, ε=0.2 (both sides clipped)",
            12,
            0.9,
            0,
            0.2,
        ),
        ("N=10, ratios far from 1, all advantages positive, ε=0.1", 10, 0.8, 1, 0.1),
        (
            "N=10, ratios far from 1, all advantages negative, ε=0.3 (where ρ > 1 + ε the unclipped term is "
            "the minimum and keeps its gradient)",
            10,
            0.8,
            -1,
            0.3,
        ),
        ("N=1, a single sample with a large ratio, ε=0.2", 1, 1.5, 1, 0.2),
    ]
    for i in range(num_random):
        N = int(torch.randint(2, 40, (1,), generator=gen))
        scale = float(0.1 + torch.rand(1, generator=gen))
        eps = float(0.05 + 0.3 * torch.rand(1, generator=gen))
        specs.append(
            (f"random batch {i + 1}: N={N}, log-ratio scale {scale:.2f}, ε={eps:.3f}", N, scale, 0, eps)
        )
    report = CheckReport(
        "PPO clipped surrogate loss (chapter 1)",
        "the loss of meta_rl_lessons.rl.losses.clipped_surrogate",
    )
    atol, rtol = 1e-10, 1e-8
    for desc, N, scale, sign, eps in specs:
        old = torch.randn(N, generator=gen, dtype=DTYPE) - 1.0
        lp_value = old + scale * torch.randn(N, generator=gen, dtype=DTYPE)
        adv = torch.randn(N, generator=gen, dtype=DTYPE)
        if N == 1:
            lp_value = old + scale
        if sign:
            adv = sign * adv.abs()
        old, lp_value, adv = old.to(device), lp_value.to(device), adv.to(device)

        def body(desc=desc, old=old, lp_value=lp_value, adv=adv, eps=eps) -> Case:
            lp_ref = lp_value.clone().requires_grad_(True)
            want = reference_ppo_clip_loss(lp_ref, old, adv, eps)
            (want_grad,) = torch.autograd.grad(want, lp_ref)
            lp = lp_value.clone().requires_grad_(True)
            out = call(student, lp, old, adv, eps)
            got = as_tensor(out, "the loss", want.detach())
            ok, err_abs, err_rel = compare(got, want, atol, rtol)
            if not ok:
                hit = match_known_mistake(got, _ppo_variants(lp_value, old, adv, eps), atol, rtol)
                diag = f"loss {float(got):.6g}, expected {float(want.detach()):.6g}" + (
                    f"; looks like: {hit}" if hit else ""
                )
                return Case(desc, False, err_abs, err_rel, diag)
            if not isinstance(out, Tensor) or not out.requires_grad:
                return Case(
                    desc,
                    False,
                    err_abs,
                    err_rel,
                    "the value is right but the loss is not differentiable w.r.t. log_probs (did you use "
                    ".item(), .detach() or NumPy?); the optimiser needs its gradient",
                )
            (got_grad,) = torch.autograd.grad(out, lp, allow_unused=True)
            if got_grad is None:
                return Case(
                    desc, False, err_abs, err_rel, "the loss does not depend on log_probs in autograd"
                )
            ok_g, g_abs, g_rel = compare(got_grad, want_grad, atol, rtol)
            diag = (
                ""
                if ok_g
                else (
                    "the value is right but the gradient w.r.t. log_probs differs (max abs error "
                    f"{g_abs:.2e}); it must be zero exactly where the clipped term is the minimum"
                )
            )
            return Case(desc, ok_g, max(err_abs, g_abs), max(err_rel, g_rel), diag)

        report.cases.append(run_case(desc, body))
    return report
