"""TRPO's numerical pieces against explicit matrices, and the trust-region guarantee."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from meta_rl_lessons.rl.trpo import (
    TRPO,
    TRPOConfig,
    cg_solve,
    conjugate_gradient,
    fisher_vector_product,
    flat_concat,
    line_search,
    trust_region_step,
    unflatten_like,
)

torch.set_num_threads(1)


def _explicit_fisher_categorical(policy, obs):
    """F = mean_s sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T, by one autograd pass per (s, a)."""
    params = list(policy.parameters())
    n = sum(p.numel() for p in params)
    F = torch.zeros(n, n, dtype=torch.float64)
    probs = policy(obs).probs.detach()
    for i in range(obs.shape[0]):
        for a in range(probs.shape[1]):
            logp = policy(obs[i]).log_prob(torch.tensor(a))
            g = flat_concat(torch.autograd.grad(logp, params)).double()
            F += probs[i, a] * torch.outer(g, g)
    return F / obs.shape[0]


def test_fisher_vector_product_equals_explicit_fisher_times_vector():
    torch.manual_seed(0)
    policy = CategoricalMLPPolicy(3, 4, hidden_sizes=(5,)).double()
    obs = torch.randn(6, 3, dtype=torch.float64)
    params = list(policy.parameters())
    with torch.no_grad():
        old = policy(obs)
    fvp = fisher_vector_product(lambda: kl_divergence(old, policy(obs)).mean(), params, damping=0.0)
    F = _explicit_fisher_categorical(policy, obs)
    for _ in range(3):
        v = torch.randn(F.shape[0], dtype=torch.float64)
        torch.testing.assert_close(fvp(v), F @ v, rtol=1e-8, atol=1e-10)
    v = torch.randn(F.shape[0], dtype=torch.float64)
    damped = fisher_vector_product(kl_divergence(old, policy(obs)).mean(), params, damping=0.3)
    torch.testing.assert_close(damped(v), F @ v + 0.3 * v, rtol=1e-8, atol=1e-10)


def test_fisher_vector_product_gaussian_equals_hessian_of_kl():
    torch.manual_seed(1)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(4,), init_log_std=-0.3).double()
    obs = torch.randn(5, 2, dtype=torch.float64)
    names = [n for n, _ in policy.named_parameters()]
    params = [p for _, p in policy.named_parameters()]
    theta0 = flat_concat(params).detach()
    with torch.no_grad():
        old = policy(obs)

    def kl_of_flat(flat):
        p = dict(zip(names, unflatten_like(flat, params), strict=True))
        return kl_divergence(old, policy(obs, p)).mean()

    H = torch.autograd.functional.hessian(kl_of_flat, theta0)
    fvp = fisher_vector_product(lambda: kl_divergence(old, policy(obs)).mean(), params)
    v = torch.randn_like(theta0)
    torch.testing.assert_close(fvp(v), H @ v, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("n", [5, 20])
def test_conjugate_gradient_solves_random_spd_systems(n):
    g = torch.Generator().manual_seed(n)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = M @ M.T + 0.5 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=3 * n, residual_tol=1e-20)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(A.numpy(), b.numpy()), rtol=1e-7, atol=1e-9)
    # few iterations still decrease the A-norm error monotonically towards the solution
    exact = torch.linalg.solve(A, b)
    errs = [((conjugate_gradient(lambda v: A @ v, b, iters=k) - exact) @ A
             @ (conjugate_gradient(lambda v: A @ v, b, iters=k) - exact)).item() for k in (1, 2, 4)]
    assert errs[0] > errs[1] > errs[2]


def _random_spd(n, seed):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    eigenvalues = torch.logspace(-2, 1, n, dtype=torch.float64)  # condition 1000: CG far from done early on
    Q, _ = torch.linalg.qr(M)
    return Q @ torch.diag(eigenvalues) @ Q.T, torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("iters", [1, 3, 7, 40])
def test_cg_solve_returns_the_product_at_its_solution_without_making_it(iters):
    """CG's own residual gives A x exactly: checked against the explicit A @ x, long before CG has converged
    (3 and 7 of 20 iterations, where A x is far from b) and after (40, stopped by the tolerance)."""
    A, b = _random_spd(20, seed=3)
    calls = []
    solution = cg_solve(lambda v: calls.append(v) or A @ v, b, iters=iters, residual_tol=1e-24)
    torch.testing.assert_close(solution.Ax, A @ solution.x, rtol=1e-10, atol=1e-12)
    assert solution.products == len(calls) <= iters
    if iters < 20:
        assert solution.products == iters
        assert (solution.Ax - b).norm() > 1e-3 * b.norm()  # not converged: b would be the wrong answer
    same = conjugate_gradient(lambda v: A @ v, b, iters, 1e-24)
    torch.testing.assert_close(solution.x, same, rtol=0, atol=0)


@pytest.mark.parametrize("cg_iters", [2, 5])
def test_trust_region_step_has_the_length_of_eq_trpo_step_at_cg_iters_products(cg_iters):
    """s = sqrt(2 delta / d^T A d) d with d from CG on A d = -g, d^T A d by the explicit matrix; so that
    1/2 s^T A s = delta (the quadratic model's KL on the boundary); and no product beyond CG's."""
    A, g = _random_spd(20, seed=4)
    calls = []
    step = trust_region_step(lambda v: calls.append(v) or A @ v, g, max_kl=0.02, cg_iters=cg_iters)
    d = conjugate_gradient(lambda v: A @ v, -g, cg_iters)
    torch.testing.assert_close(step, torch.sqrt(2 * 0.02 / (d @ A @ d)) * d, rtol=1e-12, atol=0)
    quadratic_kl = 0.5 * step @ A @ step
    torch.testing.assert_close(quadratic_kl, torch.tensor(0.02, dtype=torch.float64), rtol=1e-12, atol=0)
    assert len(calls) == cg_iters


def test_conjugate_gradient_rejects_indefinite_matrix():
    A = torch.diag(torch.tensor([1.0, -1.0]))
    with pytest.raises(FloatingPointError, match="not positive definite"):
        conjugate_gradient(lambda v: A @ v, torch.tensor([0.0, 1.0]))


def test_line_search_checks_both_kl_and_improvement():
    full = torch.tensor([1.0])
    # loss improves for any step, KL = step^2: only fractions with f^2 <= 0.1 pass
    res = line_search(lambda s: (-float(s), float(s) ** 2), full, 0.0, max_kl=0.1, backtrack_ratio=0.5)
    assert res.accepted and res.kl <= 0.1 and res.fraction == 0.25
    # KL always fine but the loss gets worse: rejected, zero step
    res = line_search(lambda s: (float(s), 0.0), full, 0.0, max_kl=0.1)
    assert not res.accepted and res.step.item() == 0.0 and res.fraction == 0.0
    # sufficient decrease: improvement must exceed accept_ratio * fraction * expected
    res = line_search(lambda s: (-0.01 * float(s), 0.0), full, 0.0, 0.1, expected_improvement=1.0,
                      accept_ratio=0.1)
    assert not res.accepted


def _random_gaussian_batch(T=20, B=6, obs_dim=3, act_dim=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, B, obs_dim, generator=g)
    z = torch.zeros(T, B, dtype=torch.bool)
    return EpisodeBatch(obs, torch.randn(T, B, act_dim, generator=g), torch.randn(T, B, generator=g),
                        obs, z, z, torch.ones(T, B))


@pytest.mark.parametrize("max_kl", [1e-3, 1e-2, 0.1])
def test_trpo_step_never_exceeds_the_kl_bound(max_kl):
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    for seed in range(3):
        trpo = TRPO(TRPOConfig(max_kl=max_kl, num_envs=1, seed=seed, device="cpu", progress=False,
                               baseline="none"), envs=envs)
        batch = _random_gaussian_batch(seed=seed)
        with torch.no_grad():
            before = trpo.policy(batch.observations)
        adv = torch.randn(batch.rewards.shape, generator=torch.Generator().manual_seed(seed)) * 10
        stats = trpo.policy_step(batch, adv)
        with torch.no_grad():
            kl = kl_divergence(before, trpo.policy(batch.observations)).mean().item()
        assert kl <= max_kl * (1 + 1e-5)
        assert stats["accepted"] == 1.0 and stats["surrogate_after"] < stats["surrogate_before"]
        assert kl == pytest.approx(stats["kl"], rel=1e-4, abs=1e-9)
    envs.close()
