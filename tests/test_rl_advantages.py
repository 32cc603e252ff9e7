"""Returns, GAE, normalization and the linear feature baseline, against independent computations."""

import numpy as np
import pytest
import torch

from meta_rl_lessons.rl.advantages import (
    LinearFeatureBaseline,
    discounted_returns,
    episode_time_steps,
    fit_linear_baseline,
    gae,
    linear_baseline_features,
    normalize_advantages,
)
from meta_rl_lessons.rl.batch import EpisodeBatch

torch.set_num_threads(1)


def _random_rollout(T=23, B=5, seed=0, p_term=0.1, p_trunc=0.1, pad=True):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, B, generator=g, dtype=torch.float64)
    values = torch.randn(T, B, generator=g, dtype=torch.float64)
    next_values = torch.randn(T, B, generator=g, dtype=torch.float64)
    u = torch.rand(T, B, generator=g)
    terminated = u < p_term
    truncated = (u >= p_term) & (u < p_term + p_trunc)
    mask = torch.ones(T, B, dtype=torch.float64)
    if pad:  # column 0 ends (terminates) at t=10 and is padded afterwards
        terminated[10, 0], truncated[10, 0] = True, False
        mask[11:, 0] = 0
        terminated[11:, 0] = truncated[11:, 0] = False
        rewards[11:, 0] = values[11:, 0] = next_values[11:, 0] = 0
    return rewards, values, next_values, terminated, truncated, mask


def _segments(term_col, trunc_col, mask_col):
    """Episodes of one column as lists of time indices (plain Python)."""
    segs, cur = [], []
    for t in range(len(term_col)):
        if mask_col[t] == 0:
            continue
        cur.append(t)
        if term_col[t] or trunc_col[t]:
            segs.append(cur)
            cur = []
    if cur:
        segs.append(cur)
    return segs


def _reference_gae(rewards, values, next_values, terminated, truncated, mask, gamma, lam):
    T, B = rewards.shape
    adv = np.zeros((T, B))
    for b in range(B):
        for seg in _segments(terminated[:, b].tolist(), truncated[:, b].tolist(), mask[:, b].tolist()):
            for i, t in enumerate(seg):
                total = 0.0
                for j, s in enumerate(seg[i:]):
                    v_next = 0.0 if terminated[s, b] else float(next_values[s, b])
                    # inside an episode V(s') of step s is the value used by the TD error of step s
                    delta = float(rewards[s, b]) + gamma * v_next - float(values[s, b])
                    total += (gamma * lam) ** j * delta
                adv[t, b] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.7)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_plain_python_loop(gamma, lam, seed):
    r, v, nv, term, trunc, mask = _random_rollout(seed=seed)
    adv, ret = gae(r, v, nv, term, trunc, gamma, lam, mask)
    expected = _reference_gae(r, v, nv, term, trunc, mask, gamma, lam)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), (expected + v.numpy()) * mask.numpy(), atol=1e-10)
    assert (adv[mask == 0] == 0).all()


def test_gae_lambda_zero_is_td_error():
    r, v, nv, term, trunc, mask = _random_rollout(seed=3)
    adv, _ = gae(r, v, nv, term, trunc, 0.97, 0.0, mask)
    td = (r + 0.97 * nv * (~term).double() - v) * mask
    torch.testing.assert_close(adv, td)


def test_gae_lambda_one_is_monte_carlo_advantage():
    # consistent values: V(s'_t) = V(s_{t+1}) inside an episode, as in real data
    r, v, nv, term, trunc, mask = _random_rollout(seed=4)
    nv = nv.clone()
    same_episode = ~(term | trunc)
    nv[:-1][same_episode[:-1]] = v[1:][same_episode[:-1]]
    gamma = 0.95
    adv, _ = gae(r, v, nv, term, trunc, gamma, 1.0, mask)
    # Monte-Carlo return of the observed rewards, bootstrapped from V(s') only at truncations / rollout end
    T, B = r.shape
    mc = np.zeros((T, B))
    for b in range(B):
        for seg in _segments(term[:, b].tolist(), trunc[:, b].tolist(), mask[:, b].tolist()):
            last = seg[-1]
            tail = 0.0 if term[last, b] else float(nv[last, b])
            for i, t in enumerate(seg):
                rest = seg[i:]
                observed = sum(gamma**j * float(r[s, b]) for j, s in enumerate(rest))
                mc[t, b] = observed + gamma ** len(rest) * tail
    np.testing.assert_allclose(adv.numpy(), (mc - v.numpy()) * mask.numpy(), atol=1e-10)
    ret = discounted_returns(r, gamma, term, trunc, mask, next_values=nv)
    np.testing.assert_allclose(ret.numpy(), mc, atol=1e-10)


def test_discounted_returns_without_bootstrap_whole_episodes():
    r = torch.tensor([[1.0, 2.0], [1.0, 0.0], [1.0, 0.0]])
    term = torch.tensor([[False, True], [False, False], [True, False]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    ret = discounted_returns(r, 0.5, term, torch.zeros_like(term), mask)
    torch.testing.assert_close(ret, torch.tensor([[1.75, 2.0], [1.5, 0.0], [1.0, 0.0]]))


def test_normalize_advantages_uses_only_real_steps():
    adv = torch.tensor([[1.0, 5.0], [3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    out = normalize_advantages(adv, mask)
    real = np.array([1.0, 5.0, 3.0])
    expected = (real - real.mean()) / real.std(ddof=1)
    np.testing.assert_allclose(out[mask == 1].numpy(), expected, rtol=1e-5)
    assert out[1, 1] == 0
    with pytest.raises(ValueError, match="at least 2"):
        normalize_advantages(torch.ones(1, 1))


def test_episode_time_steps_restart_after_each_end():
    term = torch.tensor([0, 0, 1, 0, 0, 0, 0], dtype=torch.bool).view(7, 1)
    trunc = torch.tensor([0, 0, 0, 0, 1, 0, 0], dtype=torch.bool).view(7, 1)
    t = episode_time_steps(term, trunc)
    assert t.view(-1).tolist() == [0, 1, 2, 0, 1, 0, 1]


def test_fit_linear_baseline_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 200, 9))
    y = rng.normal(size=(3, 200))
    w = fit_linear_baseline(torch.from_numpy(X), torch.from_numpy(y), reg_coeff=1e-5)
    for k in range(3):
        ref = np.linalg.lstsq(X[k].T @ X[k] + 1e-5 * np.eye(9), X[k].T @ y[k], rcond=None)[0]
        np.testing.assert_allclose(w[k].numpy(), ref, rtol=1e-8, atol=1e-10)


def test_linear_baseline_rank_deficient_raises_regularisation():
    # all-zero features: X^T X = 0 is singular; with c=0 a solve would fail, the ridge term makes it work
    X = torch.zeros(50, 4, dtype=torch.float64)
    w = fit_linear_baseline(X, torch.ones(50, dtype=torch.float64))
    assert torch.isfinite(w).all() and (w == 0).all()
    # NaN features cannot be fixed by any regularisation: a clear error rather than NaN weights
    with pytest.raises(FloatingPointError, match="ill-conditioned"):
        fit_linear_baseline(torch.full((5, 3), float("nan")), torch.ones(5))


@pytest.mark.parametrize("per_task", [False, True])
def test_linear_feature_baseline_on_batch_matches_numpy(per_task):
    torch.manual_seed(0)
    T, K, E, D = 12, 3, 4, 2
    obs = torch.randn(T, K, E, D, dtype=torch.float64) * 4
    mask = torch.ones(T, K, E, dtype=torch.float64)
    mask[8:, 0, 1] = 0
    term = torch.zeros(T, K, E, dtype=torch.bool)
    term[7, 0, 1] = True
    obs = obs * mask.unsqueeze(-1)
    rewards = torch.randn(T, K, E, dtype=torch.float64) * mask
    batch = EpisodeBatch(obs, torch.zeros(T, K, E), rewards, obs, term, torch.zeros_like(term), mask)
    ret = discounted_returns(rewards, 0.99, term, None, mask)
    base = LinearFeatureBaseline(per_task=per_task).fit(batch, ret)
    pred = base.predict(batch)

    def feats(o, t):  # rllab's features, written out in numpy
        o = np.clip(o, -10, 10)
        tt = t / 100.0
        return np.concatenate([o, o**2, tt, tt**2, tt**3, np.ones_like(tt)], axis=-1)

    groups = [(slice(None), k) for k in range(K)] if per_task else [(slice(None), slice(None))]
    for sel in groups:
        o = obs[sel].numpy().reshape(T, -1, D)
        m = mask[sel].numpy().reshape(T, -1)
        t = np.broadcast_to(np.arange(T)[:, None], m.shape)[..., None].astype(float)
        X = feats(o, t)[m > 0]
        y = ret[sel].numpy().reshape(T, -1)[m > 0]
        w = np.linalg.lstsq(X.T @ X + 1e-5 * np.eye(X.shape[1]), X.T @ y, rcond=None)[0]
        expected = (feats(o, t) @ w) * m
        np.testing.assert_allclose(pred[sel].numpy().reshape(T, -1), expected, rtol=1e-6, atol=1e-8)


def test_linear_baseline_features_shape_and_padding():
    obs = torch.randn(4, 2, 3)
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    f = linear_baseline_features(obs, torch.arange(4.0).view(4, 1).expand(4, 2), mask)
    assert f.shape == (4, 2, 10)
    assert (f[3] == 0).all() and (f[2, 1] == 0).all()


def test_bad_gamma_lambda():
    r = torch.zeros(3, 2)
    b = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="gamma must lie in"):
        gae(r, r, r, b, b, 1.5, 0.9)
    with pytest.raises(ValueError, match="lambda must lie in"):
        gae(r, r, r, b, b, 0.9, -0.1)
