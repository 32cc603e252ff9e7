"""Supervised MAML: meta-gradients against a hand-derived closed form and finite differences (float64),
first-order MAML and Reptile against their definitions, errors, and a seeded learning test."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import DEVICES
from torch import nn

from meta_rl_lessons.maml.supervised import (
    SinusoidConfig,
    SinusoidFamily,
    adapt,
    evaluate_adaptation,
    make_regressor,
    meta_gradient,
    meta_loss,
    peak_memory_bytes,
    reptile_update,
    train_sinusoid,
)

torch.set_num_threads(1)


def _linear_problem(n=4, d=3, K=6, Q=7, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, 1).double().to(device)
    params = {k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(device)
              for k, v in model.named_parameters()}
    data = [torch.randn(n, k, dim, generator=g, dtype=torch.float64).to(device)
            for k, dim in ((K, d), (K, 1), (Q, d), (Q, 1))]
    return model, params, data


def _closed_form(params, sx, sy, qx, qy, alpha, steps, first_order=False):
    """Hand derivation. With X~ = [X, 1] and w = [weight, bias], L(w) = |X~ w - y|^2 / K is quadratic:
    grad = H w - c with H = 2 X~^T X~ / K and c = 2 X~^T y / K. One inner step is affine in w,
    w <- (I - a H) w + a c, so after m steps dw'/dw = (I - a H)^m and (H symmetric) the meta-gradient of
    L_val(w') is (I - a H)^m grad L_val(w'). First order keeps only grad L_val(w')."""
    w0 = torch.cat([params["weight"].reshape(-1), params["bias"]])
    total = torch.zeros_like(w0)
    for i in range(sx.shape[0]):
        Xs = torch.cat([sx[i], torch.ones_like(sx[i][:, :1])], dim=1)
        Xq = torch.cat([qx[i], torch.ones_like(qx[i][:, :1])], dim=1)
        H = 2 * Xs.T @ Xs / Xs.shape[0]
        c = 2 * Xs.T @ sy[i, :, 0] / Xs.shape[0]
        w = w0.clone()
        for _ in range(steps):
            w = w - alpha * (H @ w - c)
        g_val = 2 * Xq.T @ (Xq @ w - qy[i, :, 0]) / Xq.shape[0]
        eye = torch.eye(len(w0), dtype=w0.dtype, device=w0.device)
        jac = torch.linalg.matrix_power(eye - alpha * H, steps)
        total += g_val if first_order else jac.T @ g_val
    return total / sx.shape[0]


def _flat(grads):
    return torch.cat([grads["weight"].reshape(-1), grads["bias"]])


def _finite_differences(model, params, data, alpha, steps, h=1e-5):
    w0 = _flat(params)
    out = torch.zeros_like(w0)
    for j in range(len(w0)):
        vals = []
        for sign in (1, -1):
            w = w0.clone()
            w[j] += sign * h
            p = {"weight": w[:-1].view_as(params["weight"]), "bias": w[-1:]}
            vals.append(float(meta_loss(model, p, *data, alpha, steps)))
        out[j] = (vals[0] - vals[1]) / (2 * h)
    return out


def _rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_second_order_meta_gradient_equals_closed_form_and_finite_differences(device, steps):
    model, params, data = _linear_problem(device=device)
    alpha = 0.15
    _, grads = meta_gradient(model, params, *data, alpha, steps)
    exact = _closed_form(params, *data, alpha, steps)
    fd = _finite_differences(model, params, data, alpha, steps)
    assert _rel_err(_flat(grads), exact) < 1e-6
    assert _rel_err(fd, exact) < 1e-6
    # The Hessian term matters here: first order is far from the exact meta-gradient (the test can fail).
    assert _rel_err(_closed_form(params, *data, alpha, steps, first_order=True), exact) > 1e-2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_equals_closed_form_without_hessian(device, steps):
    model, params, data = _linear_problem(seed=1, device=device)
    _, grads = meta_gradient(model, params, *data, 0.1, steps, first_order=True)
    assert _rel_err(_flat(grads), _closed_form(params, *data, 0.1, steps, first_order=True)) < 1e-10


def test_meta_gradient_of_the_mlp_matches_finite_differences():
    """Beyond the linear model: the 2x40 ReLU regressor in float64, along a random direction."""
    torch.manual_seed(0)
    model = make_regressor(dtype=torch.float64)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    fam = SinusoidFamily()
    gen = torch.Generator().manual_seed(3)
    tasks = fam.sample_tasks(3, gen, dtype=torch.float64)
    data = (*fam.sample_data(tasks, 5, gen), *fam.sample_data(tasks, 5, gen))
    _, grads = meta_gradient(model, params, *data, 0.01, 2)
    direction = {k: torch.randn_like(v) for k, v in params.items()}
    h = 1e-6
    plus = meta_loss(model, {k: v + h * direction[k] for k, v in params.items()}, *data, 0.01, 2)
    minus = meta_loss(model, {k: v - h * direction[k] for k, v in params.items()}, *data, 0.01, 2)
    fd = float(plus - minus) / (2 * h)
    analytic = float(sum((grads[k] * direction[k]).sum() for k in params))
    assert abs(fd - analytic) / abs(analytic) < 1e-6


def test_reptile_update_equals_its_definition():
    model, params, (x, y, _, _) = _linear_problem(seed=2)
    inner_lr, k, eps = 0.05, 4, 0.3
    new = reptile_update(model, params, x, y, inner_lr, k, eps)
    # The definition, written with plain autograd and a loop over tasks.
    phis = []
    for i in range(x.shape[0]):
        w = {n: v.clone().requires_grad_(True) for n, v in params.items()}
        for _ in range(k):
            loss = ((x[i] @ w["weight"].T + w["bias"] - y[i]) ** 2).mean()
            g = torch.autograd.grad(loss, list(w.values()))
            w = {n: (v - inner_lr * gi).detach().requires_grad_(True)
                 for (n, v), gi in zip(w.items(), g, strict=True)}
        phis.append(w)
    for n, v in params.items():
        mean_phi = torch.stack([p[n] for p in phis]).mean(0)
        torch.testing.assert_close(new[n], v + eps * (mean_phi - v), rtol=1e-12, atol=1e-12)


def test_adapt_with_zero_steps_is_identity_and_memory_grows_with_order():
    model, params, data = _linear_problem()
    out = adapt(model, params, data[0][0], data[1][0], 0.1, 0)
    assert all(out[k] is not None and torch.equal(out[k], params[k]) for k in params)
    mlp = make_regressor()
    p = {k: v.detach().clone().requires_grad_(True) for k, v in mlp.named_parameters()}
    fam = SinusoidFamily()
    gen = torch.Generator().manual_seed(0)
    tasks = fam.sample_tasks(5, gen)
    d = (*fam.sample_data(tasks, 10, gen), *fam.sample_data(tasks, 10, gen))
    def cost(steps, first_order):
        return peak_memory_bytes(lambda: meta_gradient(mlp, p, *d, 0.01, steps, first_order=first_order))

    # Second order keeps every inner step's graph alive: memory grows with the steps; first order does not.
    assert cost(6, False) > 2 * cost(1, False) > 0
    assert cost(6, True) < 1.5 * cost(1, True)


# (config errors: tests/test_bad_inputs_meta.py)
def test_bad_inputs_raise_clear_errors():
    model, params, (sx, sy, qx, qy) = _linear_problem()
    with pytest.raises(ValueError, match="inner_lr must be a finite number > 0, got 0"):
        meta_gradient(model, params, sx, sy, qx, qy, 0.0, 1)
    with pytest.raises(ValueError, match=r"\[n_tasks, K, dim\]"):
        meta_gradient(model, params, sx[0], sy, qx, qy, 0.1, 1)
    with pytest.raises(FloatingPointError, match="not finite"):
        meta_gradient(model, params, sx, sy * float("nan"), qx, qy, 0.1, 1)
    with pytest.raises(ValueError, match="x must have shape"):
        SinusoidFamily().sample_tasks(2)(torch.zeros(3, 4, 1))


@pytest.mark.slow
def test_maml_beats_pretraining_after_one_step():
    """Seeded, small budget (about 10 s): after one adaptation step on held-out sinusoids, MAML's query MSE
    is well below the pretrained network's (Finn et al. report 0.67 vs 2.41 at 70k iterations)."""
    results = {}
    for method in ("maml", "pretrain"):
        r = train_sinusoid(SinusoidConfig(method=method, iterations=800, k_shot=10, seed=0, log_every=800))
        mse = evaluate_adaptation(r.model, r.params, k_shot=10, steps=(1,), num_tasks=300, seed=7)[1]
        results[method] = float(mse.mean())
    assert math.isfinite(results["maml"])
    assert results["maml"] < 0.8 * results["pretrain"], results


@pytest.mark.parametrize("method", ["maml", "reptile"])
def test_trainer_resumes_exactly_and_matches_train_sinusoid(method, tmp_path) -> None:
    """SinusoidTrainer stopped after 4 of 7 iterations, saved to a checkpoint file and loaded by a fresh
    trainer, ends with the SinusoidResult of an uninterrupted train_sinusoid: same loss record (including a
    log_every window cut by the checkpoint) and the same parameters, bit for bit."""
    from meta_rl_lessons.maml.supervised import SinusoidTrainer
    from meta_rl_lessons.serialization import load_checkpoint, save_checkpoint

    cfg = SinusoidConfig(method=method, iterations=7, meta_batch_size=3, hidden_sizes=(6,), seed=2,
                         log_every=3)
    whole = train_sinusoid(cfg)
    first = SinusoidTrainer(cfg)
    for _ in range(4):
        first.iteration()
    save_checkpoint(first.state_dict(), tmp_path / "s.pt")
    torch.manual_seed(99)  # the process-wide generators are part of the state
    second = SinusoidTrainer(cfg)
    second.load_state_dict(load_checkpoint(tmp_path / "s.pt"))
    second.train()
    resumed = second.result()
    assert resumed.iterations == whole.iterations == [3, 6, 7]
    assert resumed.losses == whole.losses
    assert all(torch.equal(resumed.params[k], whole.params[k]) for k in whole.params)
    with pytest.raises(ValueError, match=r"different SinusoidConfig \(seed: 2 in the state, 3 here\)"):
        SinusoidTrainer(SinusoidConfig(method=method, iterations=7, meta_batch_size=3, hidden_sizes=(6,),
                                       seed=3, log_every=3)).load_state_dict(first.state_dict())
