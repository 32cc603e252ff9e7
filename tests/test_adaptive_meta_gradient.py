"""Meta-gradient RL: lambda-returns vs GAE, the meta-gradient w.r.t. gamma and lambda vs central finite
differences in float64, and the online learner."""

from __future__ import annotations

import math

import pytest
import torch

from meta_rl_lessons.adaptive.meta_gradient import (
    MetaGradientAC,
    MetaGradientConfig,
    inner_update,
    lambda_returns,
    meta_gradient,
    validation_advantages,
    validation_loss,
)
from meta_rl_lessons.rl.advantages import gae
from meta_rl_lessons.rl.batch import EpisodeBatch
from meta_rl_lessons.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, ValueNetwork

torch.set_num_threads(1)


def _flags(T: int, B: int, g: torch.Generator):
    terminated = torch.rand(T, B, generator=g) < 0.1
    truncated = (torch.rand(T, B, generator=g) < 0.05) & ~terminated
    return terminated, truncated


def test_lambda_returns_match_gae_plus_values():
    g = torch.Generator().manual_seed(0)
    T, B = 30, 5
    terminated, truncated = _flags(T, B, g)
    rewards = torch.randn(T, B, generator=g, dtype=torch.float64)
    values = torch.randn(T, B, generator=g, dtype=torch.float64)
    # consistent bootstrap values: V(s'_t) = V(s_{t+1}) inside an episode, a fresh final value at its end
    next_values = torch.randn(T, B, generator=g, dtype=torch.float64)
    inside = ~(terminated | truncated)
    next_values[:-1][inside[:-1]] = values[1:][inside[:-1]]
    for gamma, lam in [(0.99, 0.95), (0.9, 0.0), (0.5, 1.0)]:
        _, expected = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
        got = lambda_returns(rewards, next_values, terminated, truncated, gamma, lam)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def _batch(policy, T: int, B: int, obs_dim: int, g: torch.Generator) -> EpisodeBatch:
    obs = torch.randn(T, B, obs_dim, generator=g, dtype=torch.float64)
    with torch.no_grad():
        dist = policy(obs)
        actions = dist.sample()
    terminated, truncated = _flags(T, B, g)
    return EpisodeBatch(observations=obs, actions=actions, rewards=torch.randn(T, B, generator=g,
                        dtype=torch.float64), next_observations=torch.randn(T, B, obs_dim, generator=g,
                        dtype=torch.float64), terminated=terminated, truncated=truncated,
                        mask=torch.ones(T, B, dtype=torch.float64), log_probs=dist.log_prob(actions))


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_meta_gradient_matches_central_finite_differences_in_float64(discrete, clip):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    obs_dim = 3
    policy = CategoricalMLPPolicy(obs_dim, 2, (8,)) if discrete else GaussianMLPPolicy(obs_dim, 2, (8,))
    policy = policy.double()
    value = ValueNetwork(obs_dim, (8,)).double()
    params = {**{f"pi.{k}": p for k, p in policy.named_parameters()},
              **{f"v.{k}": p for k, p in value.named_parameters()}}
    batch, val_batch = _batch(policy, 12, 4, obs_dim, g), _batch(policy, 12, 4, obs_dim, g)
    lr, gamma_bar, lam_bar = 0.5, 0.99, 1.0
    kw = {"max_grad_norm": clip}

    def update(gamma: float, lam: float):
        theta = {k: p.detach().requires_grad_(True) for k, p in params.items()}
        return inner_update(theta, batch, policy, value, gamma, lam, lr, create_graph=False, **kw)

    for gamma0, lam0 in [(0.9, 0.8), (0.6, 0.95)]:
        # L' weights log-probabilities with advantages that are constants (a policy-gradient surrogate):
        # freeze them at the nominal point, so the scalar function below has exactly the meta-gradient
        adv = validation_advantages(update(gamma0, lam0), val_batch, value, gamma_bar, lam_bar)

        def objective(gamma: float, lam: float, adv=adv) -> float:
            return validation_loss(update(gamma, lam), val_batch, policy, value, gamma_bar, lam_bar,
                                   advantages=adv).item()

        gamma = torch.tensor(gamma0, dtype=torch.float64, requires_grad=True)
        lam = torch.tensor(lam0, dtype=torch.float64, requires_grad=True)
        grad = meta_gradient(params, batch, val_batch, policy, value, gamma, lam, lr, gamma_bar, lam_bar,
                             **kw)
        h = 1e-6
        fd_gamma = (objective(gamma0 + h, lam0) - objective(gamma0 - h, lam0)) / (2 * h)
        fd_lam = (objective(gamma0, lam0 + h) - objective(gamma0, lam0 - h)) / (2 * h)
        assert abs(fd_gamma) > 1e-4  # the update really depends on gamma: the check is not vacuous
        torch.testing.assert_close(grad[0].item(), fd_gamma, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(grad[1].item(), fd_lam, rtol=1e-6, atol=1e-9)


def test_online_learner_adapts_gamma_and_fixed_baseline_keeps_it():
    cfg = dict(num_envs=2, num_steps=16, total_steps=2 * 16 * 12, hidden_sizes=(16,), gamma=0.9)
    adapted = MetaGradientAC(MetaGradientConfig(**cfg, meta_lr=0.05)).train()
    gammas = adapted.column("gamma")
    assert len(gammas) == 12 and abs(gammas[-1] - 0.9) > 1e-3
    assert all(math.isfinite(x) for x in adapted.column("meta_grad_gamma")[1:])
    assert adapted.column("lambda")[-1] == pytest.approx(0.9)  # adapt_lambda=False
    fixed = MetaGradientAC(MetaGradientConfig(**cfg, meta_lr=0.0)).train()
    assert set(fixed.column("gamma").round(6)) == {0.9}


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="MetaGradientConfig.gamma must lie in \\(0, 1\\)"):
        MetaGradientConfig(gamma=1.0)
    with pytest.raises(ValueError, match="MetaGradientConfig.num_steps must be a positive integer"):
        MetaGradientConfig(num_steps=0)
