r"""Exercises of the chapter "MAML for RL": DiCE's magic box, and the inner REINFORCE loss with padding.

================================  ================================================  ========================
exercise                          compared with                                     equation (chapter 3)
================================  ================================================  ========================
:func:`magic_box_template`        :func:`meta_rl_lessons.maml.rl.magic_box`         DiCE's objective
:func:`inner_loss_template`       :func:`meta_rl_lessons.maml.rl.inner_loss`        the inner REINFORCE step
================================  ================================================  ========================

The magic box is checked on its value, its gradient *and its second derivative*: ``1 + x - x.detach()`` has
the right value and the right first derivative, and is still wrong for MAML, which differentiates twice.
"""

from __future__ import annotations

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
)
from meta_rl_lessons.maml import rl as maml_rl
from meta_rl_lessons.rl.policies import CategoricalMLPPolicy

__all__ = [
    "check_inner_loss",
    "check_magic_box",
    "inner_loss_template",
    "magic_box_template",
    "reference_inner_loss",
    "reference_magic_box",
]

DTYPE = torch.float64


# ============================================================================ magic box
def magic_box_template(x: Tensor) -> Tensor:
    r"""DiCE's "magic box" :math:`\boxdot(x) = \exp(x - \perp x)` (chapter 3), elementwise.

    :math:`\perp` stops gradients (``detach``). The result evaluates to exactly 1 and behaves under
    differentiation like :math:`\nabla\boxdot(f) = \boxdot(f)\nabla f`, *at every order*, so that
    :math:`\boxdot(\log\pi)\,R` has the score-function gradient and the right Hessian. It must be
    finite for any finite ``x`` (a sum of many log-probabilities can be :math:`-10^4`).

    Args:
        x: any shape, e.g. the summed log-probabilities of each episode.

    Returns:
        same shape, dtype and device as ``x``.
    """
    raise NotImplementedError(
        "exercise: implement the magic box (chapter 3), then run "
        "maml_rl.check_magic_box(your_function)"
    )


def reference_magic_box(x: Tensor) -> Tensor:
    """The package's :func:`~meta_rl_lessons.maml.rl.magic_box`."""
    return maml_rl.magic_box(x)


def _f_scalar(t: Tensor) -> Tensor:
    return torch.sin(t[0]) + t[0] * t[1] - 0.5 * t[2] ** 2


def _f_vector(t: Tensor) -> Tensor:
    return torch.stack([torch.sin(t[0]) * t[1], t[1] * t[2] + t[0] ** 2, torch.cos(t[2]) - t[0]])


def _f_large(t: Tensor) -> Tensor:  # a sum of 2000 log-probabilities: very negative
    return -1500.0 + 3.0 * t[0] - t[1] * t[2]


def _f_positive(t: Tensor) -> Tensor:
    return 800.0 + t[0] * t[1] + t[2]


def _grad_and_hessian(fn: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient ``[n]`` and Hessian ``[n, n]`` of a scalar function by double backpropagation."""
    t = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(t), t, create_graph=True)
    rows = [torch.autograd.grad(g[i], t, retain_graph=True)[0] for i in range(t.numel())]
    return g.detach(), torch.stack(rows).detach()


def check_magic_box(
    student: Callable[[Tensor], Tensor], *, seed: int = 0, device: str | torch.device = "cpu"
) -> CheckReport:
    """Check a magic box (signature of :func:`magic_box_template`) on ``f(θ)`` for several functions ``f``:
    the value (all ones), the gradient and the Hessian of ``Σ c ⊡(f(θ))`` with respect to ``θ`` (float64)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    specs: list[tuple[str, Callable[[Tensor], Tensor]]] = [
        ("scalar f(θ) = sin θ₁ + θ₁θ₂ − θ₃²/2", _f_scalar),
        ("vector f(θ) of 3 entries (one per episode), weighted by returns c", _f_vector),
        ("f(θ) ≈ −1500 (the log-probability of a 2000-step batch): exp(f) underflows to 0", _f_large),
        ("f(θ) ≈ +800: exp(f) overflows to inf", _f_positive),
    ]
    report = CheckReport("DiCE magic box (chapter 3)", "meta_rl_lessons.maml.rl.magic_box")
    atol, rtol = 1e-9, 1e-7
    for desc, f in specs:
        theta = torch.randn(3, generator=gen, dtype=DTYPE).to(device)
        c = torch.randn(3, generator=gen, dtype=DTYPE).to(device)

        def body(desc=desc, f=f, theta=theta, c=c) -> Case:
            def objective(box: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
                out = box(f(t))
                return (out * c[: out.numel()].view_as(out)).sum() if out.dim() else out * c[0]

            fx = f(theta)
            got_value = as_tensor(
                call(student, fx.detach().clone().requires_grad_(True)), "⊡(x)", fx.detach()
            )
            ok, err_abs, err_rel = compare(got_value, torch.ones_like(fx), atol, rtol)
            if not ok:
                known = [
                    ("you return exp(x): the exponent is x − ⊥x, which is zero in value", lambda: fx.exp()),
                    ("you return x itself", lambda: fx),
                ]
                hit = match_known_mistake(got_value, known, atol, rtol)
                nonfinite = not bool(torch.isfinite(got_value).all())
                diag = (
                    f"⊡(x) must evaluate to 1 everywhere; got {got_value.flatten()[:3].tolist()}"
                    + (
                        "; exp(x) / exp(⊥x) overflows or underflows for large |x|: subtract inside the "
                        "exponent, exp(x − ⊥x)"
                        if nonfinite
                        else ""
                    )
                    + (f"; looks like: {hit}" if hit else "")
                )
                return Case(desc, False, err_abs, err_rel, diag)
            # gradient and Hessian of sum(c * box(f(theta)))
            t = theta.clone().requires_grad_(True)
            try:
                out = objective(student, t)
            except Exception as err:
                raise StudentError(f"your function raised {type(err).__name__}: {err}") from err
            want_grad, want_hess = _grad_and_hessian(lambda u: objective(maml_rl.magic_box, u), theta)
            if not out.requires_grad:
                return Case(
                    desc,
                    False,
                    err_abs,
                    err_rel,
                    "⊡(x) has the right value but no gradient: ⊡(f) must carry ∇f "
                    "(did you return torch.ones_like(x)?)",
                )
            (g,) = torch.autograd.grad(out, t, create_graph=True)
            ok_g, g_abs, g_rel = compare(g, want_grad, atol, rtol)
            if not ok_g:
                flipped = compare(g, -want_grad, atol, rtol)[0]
                diag = (
                    "∇⊡(f) should be ⊡(f)∇f = ∇f; "
                    + (
                        "yours is −∇f: the exponent is x − ⊥x, not ⊥x − x"
                        if flipped
                        else f"yours differs by up to {g_abs:.2e}"
                    )
                    + (
                        "; exp(x)/exp(⊥x) is not finite for large |x|"
                        if not bool(torch.isfinite(g).all())
                        else ""
                    )
                )
                return Case(desc, False, g_abs, g_rel, diag)
            rows = []
            for i in range(3):
                if not g[i].requires_grad:
                    rows.append(torch.zeros(3, dtype=DTYPE, device=device))
                    continue
                (h,) = torch.autograd.grad(g[i], t, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros(3, dtype=DTYPE, device=device) if h is None else h)
            hess = torch.stack(rows)
            ok_h, h_abs, h_rel = compare(hess, want_hess, atol, rtol)
            if not ok_h:
                return Case(
                    desc,
                    False,
                    h_abs,
                    h_rel,
                    "value and gradient are right, but the second derivative is not: ∇²⊡(f) must be "
                    "⊡(f)(∇²f + ∇f∇fᵀ). 1 + x − ⊥x (or any form linear in x) misses the ∇f∇fᵀ term, "
                    "which is the part of MAML's Hessian that DiCE exists to supply: use exp(x − ⊥x)",
                )
            return Case(desc, True, max(err_abs, g_abs, h_abs), max(err_rel, g_rel, h_rel))

        report.cases.append(run_case(desc, body))
    return report


# ============================================================================ inner REINFORCE loss
def inner_loss_template(log_probs: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    r"""The per-task inner REINFORCE loss of MAML-RL (the inner REINFORCE step of chapter 3).

    :math:`L^{\mathrm{in}}_k = -\frac{1}{N_k}\sum_{t, e} m_{k,t,e}\,\log\pi_\theta(a_{k,t,e}\mid s_{k,t,e})\,
    \Psi_{k,t,e}` where :math:`N_k = \sum_{t,e} m_{k,t,e}` is the number of *real* steps of task ``k``
    (episodes have different lengths; padding steps have ``mask == 0`` and must not count).

    Args:
        log_probs: ``[K, T, E]`` log-probabilities of the actions (differentiable w.r.t. the policy).
        advantages: ``[K, T, E]``, :math:`\Psi` (constants; zero or not on padding).
        mask: ``[K, T, E]`` float, 1 for real steps, 0 for padding.

    Returns:
        ``[K]``, one loss per task, differentiable w.r.t. ``log_probs``.
    """
    raise NotImplementedError(
        "exercise: implement the inner REINFORCE loss (chapter 3), "
        "then run maml_rl.check_inner_loss(your_function)"
    )


def reference_inner_loss(log_probs: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """:func:`meta_rl_lessons.maml.rl.inner_loss` on given log-probabilities: the REINFORCE term averaged by
    the package's :func:`~meta_rl_lessons.maml.rl.task_mean` (the check itself compares with ``inner_loss``
    on a real policy)."""
    return -maml_rl.task_mean(log_probs * advantages, mask)


def _episode_mask(gen: torch.Generator, K: int, T: int, E: int, lengths: list[int] | None) -> Tensor:
    if lengths is None:
        lengths = torch.randint(1, T + 1, (K * E,), generator=gen).tolist()
    mask = torch.zeros(K, T, E, dtype=DTYPE)
    for i, n in enumerate(lengths):
        mask[i // E, :n, i % E] = 1.0
    return mask


def check_inner_loss(
    student: Callable[[Tensor, Tensor, Tensor], Tensor], *, seed: int = 0, device: str | torch.device = "cpu"
) -> CheckReport:
    """Check an inner REINFORCE loss (signature of :func:`inner_loss_template`) against
    :func:`meta_rl_lessons.maml.rl.inner_loss` on a real categorical policy with per-task parameters: the
    losses ``[K]`` and their gradient with respect to the policy's parameters (through ``log_probs``)."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    specs: list[tuple[str, int, int, int, list[int] | None, bool]] = [
        ("K=2 tasks, T=5, E=3 episodes, all of full length (no padding)", 2, 5, 3, [5] * 6, False),
        (
            "K=3 tasks, T=6, E=2, episodes of lengths 6, 2 | 3, 3 | 1, 6 (padding after each end)",
            3,
            6,
            2,
            [6, 2, 3, 3, 1, 6],
            False,
        ),
        (
            "K=2, T=8, E=4, random episode lengths, advantages non-zero on padding (the mask must "
            "remove them)",
            2,
            8,
            4,
            None,
            True,
        ),
        ("K=1 task, T=4, E=1, a single episode of length 1", 1, 4, 1, [1], False),
    ]
    report = CheckReport(
        "MAML-RL inner REINFORCE loss (chapter 3)", "meta_rl_lessons.maml.rl.inner_loss"
    )
    atol, rtol = 1e-10, 1e-8
    for i, (desc, K, T, E, lengths, dirty) in enumerate(specs):
        torch.manual_seed(seed * 100 + i)
        policy = CategoricalMLPPolicy(3, 4, hidden_sizes=(8,)).to(device=device, dtype=DTYPE)
        obs = torch.randn(K, T, E, 3, generator=gen, dtype=DTYPE)
        actions = torch.randint(0, 4, (K, T, E), generator=gen)
        mask = _episode_mask(gen, K, T, E, lengths)
        adv = torch.randn(K, T, E, generator=gen, dtype=DTYPE)
        if not dirty:
            adv = adv * mask
        obs, actions, mask, adv = obs.to(device), actions.to(device), mask.to(device), adv.to(device)

        def body(desc=desc, K=K, policy=policy, obs=obs, actions=actions, mask=mask, adv=adv) -> Case:
            data = maml_rl.TaskData(
                obs,
                actions,
                mask,
                adv,
                torch.zeros(K, dtype=DTYPE, device=device),
                torch.ones(K, dtype=DTYPE, device=device),
                mask.sum(dim=(1, 2)),
            )
            names = [n for n, _ in policy.named_parameters()]
            base = {
                n: p.detach().unsqueeze(0).repeat(K, *([1] * p.dim())) for n, p in policy.named_parameters()
            }
            ref_params = {n: v.clone().requires_grad_(True) for n, v in base.items()}
            want = maml_rl.inner_loss(policy, ref_params, data)
            want_grads = torch.autograd.grad(want.sum(), [ref_params[n] for n in names])
            params = {n: v.clone().requires_grad_(True) for n, v in base.items()}
            log_probs = policy.per_task(obs, params).log_prob(actions)
            out = call(student, log_probs, adv.clone(), mask.clone())
            got = as_tensor(out, "the per-task losses", want.detach())
            ok, err_abs, err_rel = compare(got, want, atol, rtol)
            if not ok:
                lp = log_probs.detach()
                real = mask.sum(dim=(1, 2))
                known = [
                    (
                        "you average over all T·E entries, padding included: divide by each task's "
                        "number of real "
                        "steps, mask.sum()",
                        lambda: -(lp * adv * mask).sum(dim=(1, 2)) / (lp.shape[1] * lp.shape[2]),
                    ),
                    (
                        "padding steps enter your sum: multiply by the mask",
                        lambda: -(lp * adv).sum(dim=(1, 2)) / real,
                    ),
                    (
                        "padding steps enter your mean: multiply by the mask and divide by the real steps",
                        lambda: -(lp * adv).mean(dim=(1, 2)),
                    ),
                    (
                        "wrong sign: the loss to minimise is −E[log π Ψ]",
                        lambda: (lp * adv * mask).sum(dim=(1, 2)) / real,
                    ),
                    (
                        "you sum instead of averaging over each task's real steps",
                        lambda: -(lp * adv * mask).sum(dim=(1, 2)),
                    ),
                    (
                        "you average each episode first and then over episodes; the package averages "
                        "over all "
                        "real steps of a task (long episodes weigh more)",
                        lambda: -(((lp * adv * mask).sum(1) / mask.sum(1).clamp_min(1.0)).mean(1)),
                    ),
                    (
                        "you pooled all tasks into one number",
                        lambda: torch.full_like(want, float(-(lp * adv * mask).sum() / mask.sum())),
                    ),
                ]
                hit = match_known_mistake(got, known, atol, rtol)
                diag = (
                    f"losses {[round(float(v), 5) for v in got]}, expected "
                    f"{[round(float(v), 5) for v in want.detach()]}" + (f"; looks like: {hit}" if hit else "")
                )
                return Case(desc, False, err_abs, err_rel, diag)
            if not isinstance(out, Tensor) or not out.requires_grad:
                return Case(
                    desc,
                    False,
                    err_abs,
                    err_rel,
                    "the values are right but the losses are not differentiable w.r.t. log_probs (a "
                    "detach, .item() or NumPy on the way?): the inner step needs their gradient",
                )
            grads = torch.autograd.grad(out.sum(), [params[n] for n in names], allow_unused=True)
            worst_abs, worst_rel, ok_g = 0.0, 0.0, True
            for g, w in zip(grads, want_grads, strict=True):
                g = torch.zeros_like(w) if g is None else g
                ok1, a, r = compare(g, w, atol, rtol)
                ok_g, worst_abs, worst_rel = ok_g and ok1, max(worst_abs, a), max(worst_rel, r)
            diag = (
                ""
                if ok_g
                else (
                    "the values are right but the gradient w.r.t. the policy parameters differs: "
                    "are the advantages treated as constants (no gradient through Ψ)?"
                )
            )
            return Case(desc, ok_g, max(err_abs, worst_abs), max(err_rel, worst_rel), diag)

        report.cases.append(run_case(desc, body))
    return report
