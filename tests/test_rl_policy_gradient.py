"""The REINFORCE estimator against the exact policy gradient of a tiny tabular MDP."""

import numpy as np
import pytest
import torch

from meta_rl_lessons.rl.advantages import discounted_returns
from meta_rl_lessons.rl.reinforce import reinforce_loss, reinforce_weights
from meta_rl_lessons.rl.tabular import (
    TabularMDP,
    exact_policy_gradient,
    exact_return,
    per_episode_score_gradients,
    random_tabular_mdp,
    sample_episodes,
)

torch.set_num_threads(1)


def _numpy_exact_J(theta, mdp):
    """J(theta) by plain NumPy linear algebra (independent of the package's torch code)."""
    th = theta.detach().numpy()
    pi = np.exp(th - th.max(1, keepdims=True))
    pi /= pi.sum(1, keepdims=True)
    P, R, mu0 = mdp.P.numpy(), mdp.R.numpy(), mdp.mu0.numpy()
    P_pi = np.einsum("sa,sat->st", pi, P)
    r_pi = (pi * R).sum(1)
    return mu0 @ np.linalg.solve(np.eye(len(mu0)) - mdp.gamma * P_pi, r_pi)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_exact_gradient_autograd_matches_closed_form_and_finite_differences(gamma):
    mdp = random_tabular_mdp(4, 3, gamma=gamma, seed=1)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 3, dtype=torch.float64, generator=gen).requires_grad_()
    J = exact_return(theta, mdp)
    assert J.item() == pytest.approx(_numpy_exact_J(theta, mdp), rel=1e-12)
    (grad,) = torch.autograd.grad(J, theta)
    torch.testing.assert_close(grad, exact_policy_gradient(theta, mdp), rtol=1e-10, atol=1e-12)
    # central finite differences of the NumPy J
    eps, fd = 1e-6, np.zeros((4, 3))
    for s in range(4):
        for a in range(3):
            d = torch.zeros(4, 3, dtype=torch.float64)
            d[s, a] = eps
            fd[s, a] = (_numpy_exact_J(theta + d, mdp) - _numpy_exact_J(theta - d, mdp)) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), fd, atol=1e-8)


def test_monte_carlo_returns_match_exact_J():
    mdp = random_tabular_mdp(3, 2, seed=2)
    theta = torch.tensor([[0.5, -0.5], [0.0, 1.0], [-1.0, 0.3]], dtype=torch.float64)
    batch = sample_episodes(theta, mdp, 40_000, torch.Generator().manual_seed(1))
    returns = batch.episode_returns()
    se = returns.std() / len(returns) ** 0.5
    assert abs(returns.mean() - exact_return(theta, mdp)) < 4 * se


@pytest.mark.parametrize("variant", ["total_return", "reward_to_go", "baseline"])
def test_reinforce_estimator_mean_converges_to_exact_gradient(variant):
    mdp = random_tabular_mdp(3, 2, seed=0)
    theta = torch.tensor([[0.3, -0.2], [1.0, 0.0], [-0.5, 0.5]], dtype=torch.float64, requires_grad=True)
    exact = exact_policy_gradient(theta, mdp)
    gen = torch.Generator().manual_seed(123)
    estimates = []
    for _ in range(10):  # 10 independent batches: their spread gives the standard error
        batch = sample_episodes(theta, mdp, 5_000, gen)
        assert not batch.truncated.any()
        if variant == "baseline":  # the exact state values are a valid (action-independent) baseline
            with torch.no_grad():
                pi = torch.softmax(theta, -1)
                P_pi = torch.einsum("sa,sat->st", pi, mdp.P)
                V = torch.linalg.solve(torch.eye(3, dtype=torch.float64) - P_pi, (pi * mdp.R).sum(-1))
            values = batch.observations @ V
            next_values = batch.next_observations @ V
            psi = reinforce_weights(batch, 1.0, values=values, next_values=next_values, gae_lambda=1.0)
        else:
            psi = reinforce_weights(batch, 1.0, reward_to_go=(variant == "reward_to_go"))
        log_probs = torch.log_softmax(theta, -1)[batch.observations.argmax(-1), batch.actions]
        (g,) = torch.autograd.grad(-reinforce_loss(log_probs, psi, batch.mask), theta)
        estimates.append(g)
    est = torch.stack(estimates)
    mean, se = est.mean(0), est.std(0) / len(estimates) ** 0.5
    assert ((mean - exact).abs() <= 4 * se + 1e-3).all(), (mean, exact, se)
    assert (mean - exact).norm() / exact.norm() < 0.1


def test_reward_to_go_and_value_baseline_reduce_variance():
    mdp = random_tabular_mdp(3, 2, seed=0)
    theta = torch.tensor([[0.3, -0.2], [1.0, 0.0], [-0.5, 0.5]], dtype=torch.float64)
    batch = sample_episodes(theta, mdp, 20_000, torch.Generator().manual_seed(7))
    total = reinforce_weights(batch, 1.0, reward_to_go=False)
    to_go = discounted_returns(batch.rewards, 1.0, batch.terminated, batch.truncated, batch.mask)
    pi = torch.softmax(theta, -1)
    P_pi = torch.einsum("sa,sat->st", pi, mdp.P)
    V = torch.linalg.solve(torch.eye(3, dtype=torch.float64) - P_pi, (pi * mdp.R).sum(-1))
    with_baseline = (to_go - batch.observations @ V) * batch.mask  # G_t - V(s_t)
    variances = {}
    for name, psi in {"total": total, "to_go": to_go, "baseline": with_baseline}.items():
        per_ep = per_episode_score_gradients(theta, batch, psi)
        variances[name] = per_ep.var(0).sum().item()
    assert variances["to_go"] < variances["total"]
    assert variances["baseline"] < variances["to_go"]


def test_per_episode_score_gradients_match_autograd():
    mdp = random_tabular_mdp(3, 2, seed=3)
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(3, 2, dtype=torch.float64, generator=gen).requires_grad_()
    batch = sample_episodes(theta, mdp, 5, torch.Generator().manual_seed(0))
    psi = reinforce_weights(batch, 1.0)
    closed = per_episode_score_gradients(theta, batch, psi)
    for i in range(5):
        lp = torch.log_softmax(theta, -1)[batch.observations[:, i].argmax(-1), batch.actions[:, i]]
        (g,) = torch.autograd.grad((lp * psi[:, i] * batch.mask[:, i]).sum(), theta)
        torch.testing.assert_close(closed[i], g)


def test_reinforce_loss_shape_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        reinforce_loss(torch.zeros(3, 2), torch.zeros(3, 1), torch.ones(3, 2))
    with pytest.raises(ValueError, match="sum to at most 1"):
        TabularMDP(torch.ones(2, 1, 2), torch.zeros(2, 1), torch.ones(2) / 2)


def test_discount_weighting_gives_the_exact_discounted_gradient_and_dropping_it_does_not():
    mdp = random_tabular_mdp(3, 2, stop_prob=0.1, gamma=0.9, seed=0)
    theta = torch.tensor([[0.3, -0.2], [1.0, 0.0], [-0.5, 0.5]], dtype=torch.float64)
    exact = exact_policy_gradient(theta, mdp).flatten()
    batch = sample_episodes(theta, mdp, 20_000, torch.Generator().manual_seed(11))
    z = {}
    for weighting in (True, False):
        psi = reinforce_weights(batch, 0.9, discount_weighting=weighting)  # (eq. pg-discounted) when True
        per_ep = per_episode_score_gradients(theta, batch, psi).flatten(1)
        se = per_ep.std(0) / per_ep.shape[0] ** 0.5
        z[weighting] = ((per_ep.mean(0) - exact) / se).abs().max().item()
    assert z[True] < 4.5  # unbiased: within sampling error of the exact gradient
    assert z[False] > 10  # the common gamma^t-free estimator is measurably biased for this objective


def test_linear_baseline_predict_next_uses_next_observation_at_time_t_plus_1():
    from meta_rl_lessons.rl.advantages import LinearFeatureBaseline, linear_baseline_features

    mdp = random_tabular_mdp(3, 2, seed=4)
    theta = torch.zeros(3, 2, dtype=torch.float64)
    batch = sample_episodes(theta, mdp, 50, torch.Generator().manual_seed(0))
    ret = discounted_returns(batch.rewards, 1.0, batch.terminated, batch.truncated, batch.mask)
    base = LinearFeatureBaseline().fit(batch, ret)
    T = batch.horizon
    t_next = torch.arange(1, T + 1, dtype=torch.float64).view(T, 1).expand_as(batch.rewards)
    feats = linear_baseline_features(batch.next_observations, t_next, batch.mask)
    torch.testing.assert_close(base.predict_next(batch), feats @ base.weights)
