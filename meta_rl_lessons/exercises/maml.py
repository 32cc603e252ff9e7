r"""Exercises of chapter 2 (MAML, derived): one differentiable inner step, and Reptile's update.

================================  ======================================================  ====================
exercise                          compared with                                           equation (chapter 2)
================================  ======================================================  ====================
:func:`inner_step_template`       :func:`meta_rl_lessons.maml.supervised.adapt` and       the inner update and
                                  :func:`~meta_rl_lessons.maml.supervised.meta_gradient`  the meta-gradient
:func:`reptile_template`          :func:`meta_rl_lessons.maml.supervised.reptile_update`  Reptile's update
================================  ======================================================  ====================

The inner step is checked twice: its *values* :math:`\theta'` against the package, and the *meta-gradient*
through it, :math:`\nabla_\theta L^{\mathrm{val}}(\theta'(\theta))`, against the package's second-order
meta-gradient. An inner step whose gradient was taken without ``create_graph=True`` has the right values but
the first-order meta-gradient; the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

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
from meta_rl_lessons.maml import supervised

__all__ = [
    "check_inner_step",
    "check_reptile_update",
    "inner_step_template",
    "reference_inner_step",
    "reference_reptile_update",
    "reptile_template",
]

DTYPE = torch.float64
Params = Mapping[str, Tensor]


# ============================================================================ the inner step
def inner_step_template(
    model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, inner_lr: float
) -> dict[str, Tensor]:
    r"""One step of gradient descent on one task's support loss, *differentiably* (chapter 2's inner update).

    :math:`\theta' = \theta - \alpha \nabla_\theta L^{\mathrm{tr}}(\theta)` with the mean squared error
    :math:`L^{\mathrm{tr}}(\theta) = \frac1K\sum_k (f_\theta(x_k) - y_k)^2` of the model evaluated with
    ``torch.func.functional_call(model, params, (x,))``. The result must remain a differentiable function of
    ``params``, second derivatives included, so that the meta-gradient (chapter 2) can flow through
    it.

    Args:
        model: the network (used only as a function; its own parameters are not the ones to adapt).
        params: ``name -> tensor`` (the names of ``dict(model.named_parameters())``), ``requires_grad=True``.
        x, y: the support set, ``[K, 1]`` each.
        inner_lr: :math:`\alpha > 0`.

    Returns:
        :math:`\theta'` as a new dict with the same keys and shapes (``params`` itself must not change).
    """
    raise NotImplementedError(
        "exercise: implement one differentiable MAML inner step (the inner update of "
        "chapter 2), then run maml.check_inner_step(your_function)"
    )


def reference_inner_step(
    model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, inner_lr: float
) -> dict[str, Tensor]:
    """The package's :func:`~meta_rl_lessons.maml.supervised.adapt` with one step (the template's
    signature)."""
    return supervised.adapt(model, params, x, y, inner_lr, 1)


def _model(hidden: tuple[int, ...], seed: int, device: torch.device) -> tuple[nn.Module, dict[str, Tensor]]:
    torch.manual_seed(seed)
    model = supervised.make_regressor(hidden, dtype=DTYPE).to(device)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    return model, params


def _sinusoid_data(gen: torch.Generator, n: int, k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    family = supervised.SinusoidFamily()
    tasks = family.sample_tasks(n, gen, dtype=DTYPE)
    x, y = family.sample_data(tasks, k, gen)
    return x.to(device), y.to(device)


def _as_params(out: object, like: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    if not isinstance(out, Mapping):
        raise StudentError(f"{what}: expected a dict name -> tensor, got {type(out).__name__}")
    missing, extra = set(like) - set(out), set(out) - set(like)
    if missing or extra:
        raise StudentError(
            f"{what}: keys differ from params' (missing {sorted(missing)}, unexpected {sorted(extra)})"
        )
    for k in like:
        if not isinstance(out[k], Tensor):
            raise StudentError(f"{what}[{k!r}] is a {type(out[k]).__name__}, expected a tensor")
    return dict(out)


def _compare_params(
    got: Mapping[str, Tensor], want: Mapping[str, Tensor], atol: float, rtol: float, what: str
) -> tuple[bool, float, float, str]:
    ok_all, worst_abs, worst_rel, first_bad = True, 0.0, 0.0, ""
    for k, w in want.items():
        g = as_tensor(got[k], f"{what}[{k!r}]", w.detach())
        ok, a, r = compare(g, w, atol, rtol)
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
        if not ok and ok_all:
            first_bad = k
        ok_all = ok_all and ok
    return ok_all, worst_abs, worst_rel, first_bad


def _flat(d: Mapping[str, Tensor], keys: list[str]) -> Tensor:
    return torch.cat([d[k].detach().reshape(-1) for k in keys])


def check_inner_step(
    student: Callable[..., Mapping[str, Tensor]], *, seed: int = 0, device: str | torch.device = "cpu"
) -> CheckReport:
    """Check a MAML inner step (signature of :func:`inner_step_template`): the adapted parameters, and the
    second-order meta-gradient of a query loss through them, against the package (float64).

    Cases vary the network (a linear model and two small ReLU networks), the support size ``K`` (1 to 10) and
    the step size :math:`\\alpha` (0.01 to 0.5).
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    specs = [
        ("linear model f(x) = wx + b, K=5, α=0.1", (), 5, 0.1),
        ("ReLU network 1-16-16-1, K=10, α=0.01 (the paper's step size)", (16, 16), 10, 0.01),
        ("ReLU network 1-8-1, K=1 (one support point), α=0.3", (8,), 1, 0.3),
        ("ReLU network 1-16-16-1, K=5, α=0.5 (a large step)", (16, 16), 5, 0.5),
    ]
    report = CheckReport(
        "MAML inner step and the meta-gradient through it (chapter 2)",
        "meta_rl_lessons.maml.supervised.adapt / meta_gradient",
    )
    atol, rtol = 1e-10, 1e-7
    for i, (desc, hidden, k, lr) in enumerate(specs):
        model, theta = _model(hidden, seed * 100 + i, device)
        sx, sy = _sinusoid_data(gen, 1, k, device)
        qx, qy = _sinusoid_data(gen, 1, 10, device)

        def body(desc=desc, model=model, theta=theta, sx=sx[0], sy=sy[0], qx=qx[0], qy=qy[0], lr=lr) -> Case:
            keys = list(theta)
            want = supervised.adapt(model, theta, sx, sy, lr, 1)
            params = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
            before = {k: v.detach().clone() for k, v in params.items()}
            got = _as_params(call(student, model, params, sx, sy, lr), theta, "the adapted parameters")
            if any(not torch.equal(params[k].detach(), before[k]) for k in keys):
                raise StudentError(
                    "your function changed params in place; return new tensors θ − α g instead"
                )
            ok, err_abs, err_rel, bad = _compare_params(got, want, atol, rtol, "θ'")
            if not ok:
                g = supervised.adapt(model, theta, sx, sy, 1.0, 1)  # theta - grad
                grad = {k: theta[k] - g[k] for k in keys}
                flat_got = _flat(got, keys)
                known = [
                    (
                        "you stepped uphill: θ' = θ + α∇L; gradient descent subtracts the gradient",
                        lambda: _flat({k: theta[k] + lr * grad[k] for k in keys}, keys),
                    ),
                    (
                        f"your gradient is K = {sx.shape[0]} times too large: the loss is the *mean* "
                        "squared error",
                        lambda: (
                            None
                            if sx.shape[0] == 1
                            else _flat({k: theta[k] - lr * sx.shape[0] * grad[k] for k in keys}, keys)
                        ),
                    ),
                    (
                        "your gradient is half the right one: d/dθ (f − y)² = 2 (f − y) df/dθ",
                        lambda: _flat({k: theta[k] - 0.5 * lr * grad[k] for k in keys}, keys),
                    ),
                    ("you returned θ unchanged", lambda: _flat(theta, keys)),
                    (
                        "you returned the gradient step α∇L, not θ − α∇L",
                        lambda: _flat({k: lr * grad[k] for k in keys}, keys),
                    ),
                ]
                hit = match_known_mistake(flat_got, known, atol, rtol)
                diag = f"θ'[{bad!r}] differs from θ − α∇L^tr(θ)" + (f"; looks like: {hit}" if hit else "")
                return Case(desc, False, err_abs, err_rel, diag)
            # the meta-gradient through the student's step
            if not any(isinstance(got[k], Tensor) and got[k].requires_grad for k in keys):
                return Case(
                    desc,
                    False,
                    err_abs,
                    err_rel,
                    "θ' has the right values but is detached from θ (no autograd graph): the meta-"
                    "gradient cannot flow through the inner step. Do not detach, and build the inner "
                    "gradient with torch.autograd.grad(..., create_graph=True)",
                )
            query = supervised.mse_loss(model, got, qx, qy)
            grads = torch.autograd.grad(query, [params[k] for k in keys], allow_unused=True)
            mine = {
                k: (torch.zeros_like(params[k]) if g is None else g) for k, g in zip(keys, grads, strict=True)
            }
            _, so = supervised.meta_gradient(model, theta, sx[None], sy[None], qx[None], qy[None], lr, 1)
            _, fo = supervised.meta_gradient(
                model, theta, sx[None], sy[None], qx[None], qy[None], lr, 1, first_order=True
            )
            ok_g, g_abs, g_rel, bad = _compare_params(mine, so, atol, rtol, "meta-gradient")
            if ok_g:
                return Case(desc, True, max(err_abs, g_abs), max(err_rel, g_rel))
            if compare(_flat(mine, keys), _flat(fo, keys), atol, rtol)[0]:
                diag = (
                    "θ' has the right values, but the meta-gradient through it is the *first-order* one "
                    "of chapter 2: ∇L^tr(θ) was treated as a constant. Compute the inner gradient with "
                    "torch.autograd.grad(loss, params, create_graph=True) so autograd can differentiate it "
                    "again (the Hessian term of the meta-gradient)"
                )
            elif any(g is None for g in grads):
                missing = [k for k, g in zip(keys, grads, strict=True) if g is None]
                diag = (
                    f"θ' has the right values, but the meta-gradient does not reach {missing}: those "
                    "adapted parameters are not connected to θ in autograd"
                )
            else:
                diag = (
                    f"θ' has the right values, but the meta-gradient through it differs from the package's "
                    f"(first at {bad!r}); does θ' depend on θ only through θ − α∇L^tr(θ)?"
                )
            return Case(desc, False, max(err_abs, g_abs), max(err_rel, g_rel), diag)

        report.cases.append(run_case(desc, body))
    return report


# ============================================================================ Reptile
def reptile_template(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    inner_lr: float,
    inner_steps: int,
    outer_step: float,
) -> dict[str, Tensor]:
    r"""One Reptile meta-update (Reptile's update in chapter 2).

    For every task :math:`i`, start from :math:`\theta` and take ``inner_steps`` steps of full-batch gradient
    descent with step ``inner_lr`` on the task's mean squared error, giving :math:`\phi_i`; then move
    :math:`\theta` towards the average: :math:`\theta + \epsilon\,(\frac1n\sum_i \phi_i - \theta)`. No second
    derivatives are needed (the result may be detached).

    Args:
        model: the network, evaluated with ``torch.func.functional_call(model, params, (x,))``.
        params: :math:`\theta`, ``name -> tensor``.
        x, y: ``[n, K, 1]``: ``n`` tasks with ``K`` points each.
        inner_lr: SGD step size; inner_steps: ``k >= 1``; outer_step: :math:`\epsilon`.

    Returns:
        the new :math:`\theta` as a dict with the same keys and shapes.
    """
    raise NotImplementedError(
        "exercise: implement Reptile's update (chapter 2), then run "
        "maml.check_reptile_update(your_function)"
    )


def reference_reptile_update(
    model: nn.Module,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    inner_lr: float,
    inner_steps: int,
    outer_step: float,
) -> dict[str, Tensor]:
    """The package's :func:`~meta_rl_lessons.maml.supervised.reptile_update`."""
    return supervised.reptile_update(model, params, x, y, inner_lr, inner_steps, outer_step)


def check_reptile_update(
    student: Callable[..., Mapping[str, Tensor]], *, seed: int = 0, device: str | torch.device = "cpu"
) -> CheckReport:
    """Check a Reptile update (signature of :func:`reptile_template`) against the package's, in float64.

    Cases: one task; several tasks with ``k = 1`` (Reptile is then an SGD step on the pooled loss);
    several tasks with ``k = 3`` and ``k = 5``; ``ε = 1`` (θ becomes the average of the φ_i).
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    specs = [
        ("one task, K=5, k=3 inner steps, α=0.02, ε=0.5", (16,), 1, 5, 3, 0.02, 0.5),
        (
            "n=4 tasks, K=5, k=1 inner step (an SGD step on the pooled loss), ε=0.1",
            (16, 16),
            4,
            5,
            1,
            0.01,
            0.1,
        ),
        ("n=5 tasks, K=10, k=3 inner steps, α=0.02, ε=0.1", (16, 16), 5, 10, 3, 0.02, 0.1),
        (
            "n=3 tasks, K=4, k=5 inner steps, α=0.05, ε=1 (θ becomes the mean of the φ_i)",
            (8,),
            3,
            4,
            5,
            0.05,
            1.0,
        ),
    ]
    report = CheckReport(
        "Reptile update (chapter 2)", "meta_rl_lessons.maml.supervised.reptile_update"
    )
    atol, rtol = 1e-10, 1e-7
    for i, (desc, hidden, n, k, steps, lr, eps) in enumerate(specs):
        model, theta = _model(hidden, seed * 100 + 50 + i, device)
        x, y = _sinusoid_data(gen, n, k, device)

        def body(desc=desc, model=model, theta=theta, x=x, y=y, steps=steps, lr=lr, eps=eps) -> Case:
            keys = list(theta)
            want = supervised.reptile_update(model, theta, x, y, lr, steps, eps)
            params = {k: v.clone() for k, v in theta.items()}
            got = _as_params(call(student, model, params, x, y, lr, steps, eps), theta, "the updated θ")
            if any(not torch.equal(params[k], theta[k]) for k in keys):
                raise StudentError("your function changed params in place; return a new dict instead")
            ok, err_abs, err_rel, bad = _compare_params(got, want, atol, rtol, "θ")
            if ok:
                return Case(desc, True, err_abs, err_rel)
            phi = supervised.adapt_tasks(model, theta, x, y, lr, steps)
            phi1 = supervised.adapt_tasks(model, theta, x, y, lr, 1)

            def sequential(average: bool) -> Tensor | None:  # each task continues from the previous phi
                if x.shape[0] == 1:
                    return None
                p, phis = dict(theta), []
                for j in range(x.shape[0]):
                    p = supervised.adapt(model, p, x[j], y[j], lr, steps)
                    phis.append(p)
                end = {k2: torch.stack([ph[k2] for ph in phis]).mean(0) for k2 in keys} if average else p
                return _flat({k2: theta[k2] + eps * (end[k2] - theta[k2]) for k2 in keys}, keys)

            known = [
                (
                    "you move away from the tasks: the update is θ + ε(φ̄ − θ), not θ + ε(θ − φ̄)",
                    lambda: _flat({k2: theta[k2] - eps * (phi[k2].mean(0) - theta[k2]) for k2 in keys}, keys),
                ),
                (
                    "you use only the last task's φ; average φ_i over all tasks",
                    lambda: (
                        None
                        if x.shape[0] == 1
                        else _flat({k2: theta[k2] + eps * (phi[k2][-1] - theta[k2]) for k2 in keys}, keys)
                    ),
                ),
                (
                    "each task starts from the previous task's φ: every φ_i must start from θ",
                    lambda: sequential(True),
                ),
                (
                    "you chain the tasks (each starts from the previous task's φ) and keep the last: every "
                    "φ_i must start from θ",
                    lambda: sequential(False),
                ),
                (
                    "you take one inner step whatever inner_steps says",
                    lambda: (
                        None
                        if steps == 1
                        else _flat(
                            {k2: theta[k2] + eps * (phi1[k2].mean(0) - theta[k2]) for k2 in keys}, keys
                        )
                    ),
                ),
                (
                    "you return φ̄ itself: the outer step ε is missing",
                    lambda: None if eps == 1.0 else _flat({k2: phi[k2].mean(0) for k2 in keys}, keys),
                ),
                ("you return θ unchanged", lambda: _flat(theta, keys)),
            ]
            hit = match_known_mistake(_flat(got, keys), known, atol, rtol)
            diag = f"θ[{bad!r}] differs from the package's update" + (f"; looks like: {hit}" if hit else "")
            return Case(desc, False, err_abs, err_rel, diag)

        report.cases.append(run_case(desc, body))
    return report
