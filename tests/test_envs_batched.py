"""Batched pure-torch envs against the gymnasium versions; RL² wrappers; device parametrisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import meta_rl_lessons.envs as envs

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_navigation_batched_equals_gymnasium(device):
    fam = envs.Navigation2DFamily(horizon=30)
    tasks = fam.sample_tasks(3, 0) + [envs.NavigationTask((0.05, 0.02))]  # the last one is reached
    benv = fam.make_batched(4, 2, device=device, seed=0)
    benv.set_tasks(tasks)
    bobs = benv.reset()
    rng = np.random.default_rng(1)
    actions = rng.uniform(-0.2, 0.2, size=(30, 4, 2, 2)).astype(np.float32)  # beyond the clip range
    actions[:, 3, :, :] = np.array([0.05, 0.02], dtype=np.float32) / 3  # reaches the goal after 3 steps
    gyms = []
    for k in range(4):
        for _ in range(2):
            env = fam.make_env()
            env.reset(seed=0, options={"task": tasks[k]})
            gyms.append(env)
    assert torch.equal(bobs.cpu(), torch.zeros(4, 2, 2))
    for t in range(30):
        o, r, te, tr = benv.step(torch.as_tensor(actions[t], device=device))
        for i, env in enumerate(gyms):
            k, e = divmod(i, 2)
            go, gr, gte, gtr, _ = env.step(actions[t, k, e])
            np.testing.assert_allclose(o[k, e].cpu().numpy(), go, atol=1e-6)
            assert r[k, e].item() == pytest.approx(gr, abs=1e-6)
            if t < 3 or k != 3:  # after reaching the goal the gym episode is over; compare until then
                assert bool(te[k, e]) == gte and bool(tr[k, e]) == gtr
    assert bool(tr.all())


@pytest.mark.parametrize("device", DEVICES)
def test_bandit_batched_matches_gymnasium(device):
    fam = envs.BernoulliBanditFamily(num_arms=4, episode_length=5)
    tasks = fam.sample_tasks(3, 0)
    benv = fam.make_batched(3, 4000, device=device, seed=0)
    benv.set_tasks(tasks)
    assert benv.reset().shape == (3, 4000, 1)
    actions = torch.arange(4, device=device).repeat(3, 1000)  # each arm pulled by 1000 copies per task
    _, r, te, tr = benv.step(actions)
    means = torch.tensor([t.means for t in tasks], dtype=torch.float32)
    assert torch.equal(benv.expected_reward(actions).cpu(), means.repeat(1, 1000))
    freq = r.cpu().reshape(3, 1000, 4).mean(1)
    assert torch.allclose(freq, means, atol=4 * 0.5 / 1000**0.5)  # 4 standard errors
    assert not te.any() and not tr.any()
    for _ in range(4):
        *_, tr = benv.step(actions)
    assert tr.all()
    # the gymnasium env pays the same expected reward for the same (task, arm)
    env = fam.make_env(task=tasks[1])
    env.reset(seed=0)
    for a in range(4):
        assert env.step(a)[4]["expected_reward"] == pytest.approx(means[1, a].item(), abs=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_tabular_mdp_batched_matches_gymnasium(device):
    fam = envs.TabularMDPFamily()
    task = fam.sample_tasks(1, 0)[0]
    benv = fam.make_batched(1, 20000, device=device, seed=0)
    benv.set_tasks([task])
    obs = benv.reset()
    assert obs.shape == (1, 20000, 10) and torch.all(obs[..., 0] == 1) and obs.sum() == 20000
    a = 3
    o, r, _, _ = benv.step(torch.full((1, 20000), a, device=device))
    freq = o.cpu().double().mean((0, 1)).numpy()
    P = task.transitions[0, a]
    assert np.all(np.abs(freq - P) <= 4 * np.sqrt(P * (1 - P) / 20000) + 1e-9)
    assert r.cpu().mean().item() == pytest.approx(task.reward_means[0, a], abs=4 / 20000**0.5)
    assert r.cpu().std().item() == pytest.approx(1.0, abs=0.03)
    # gymnasium: same task, same first action, 3000 fresh episodes
    env = fam.make_env(task=task)
    env.reset(seed=0)
    nxt, rew = np.zeros(10), []
    for _ in range(3000):
        env.reset()
        o, rr, _, _, info = env.step(a)
        nxt += o
        rew.append(rr)
        assert info["expected_reward"] == task.reward_means[0, a]
    assert np.all(np.abs(nxt / 3000 - P) <= 4 * np.sqrt(P * (1 - P) / 3000) + 1e-9)
    assert np.mean(rew) == pytest.approx(task.reward_means[0, a], abs=4 / 3000**0.5)
    # episodes are truncated after 10 steps
    for _ in range(9):
        *_, tr = benv.step(torch.zeros(1, 20000, dtype=torch.long, device=device))
    assert tr.all()


def test_batched_seed_gives_same_stream_and_partial_reset():
    fam = envs.TabularMDPFamily()
    tasks = fam.sample_tasks(2, 0)

    def run(seed):
        env = fam.make_batched(2, 5, seed=seed)
        env.set_tasks(tasks)
        env.reset()
        out = [torch.cat([x.float().flatten() for x in env.step(torch.ones(2, 5, dtype=torch.long))])
               for _ in range(5)]
        return torch.cat(out), env

    a, env = run(1)
    b, _ = run(1)
    assert torch.equal(a, b) and not torch.equal(a, run(2)[0])
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1, 2] = True
    obs = env.reset(mask)
    assert obs[1, 2, 0] == 1 and env.steps[1, 2] == 0 and env.steps[0, 0] == 5
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        env.step(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="expected 2 tasks"):
        env.set_tasks(tasks[:1])
    fresh = fam.make_batched(1, 1)
    with pytest.raises(RuntimeError, match="set_tasks"):
        fresh.reset()


def test_rl2_wrapper_layout_discrete():
    env = envs.RL2Wrapper(envs.BernoulliBanditEnv(num_arms=3, episode_length=1), episodes_per_trial=3)
    obs, _ = env.reset(seed=0, options={"task": {"means": (0.0, 1.0, 0.0)}})
    assert obs.shape == (1 + 3 + 2,) and np.array_equal(obs, np.zeros(6))
    obs, r, te, tr, _ = env.step(1)
    assert r == 1.0 and not (te or tr)
    np.testing.assert_array_equal(obs, [0, 0, 1, 0, 1.0, 1.0])  # [obs | one-hot a | r | done]
    obs, r, te, tr, _ = env.step(2)
    np.testing.assert_array_equal(obs, [0, 0, 0, 1, 0.0, 1.0])
    obs, r, te, tr, _ = env.step(0)
    assert tr and not te  # third episode ends the trial
    np.testing.assert_array_equal(obs, [0, 1, 0, 0, 0.0, 0.0])
    # a new trial resamples the task from the family (train split)
    env.reset()
    assert env.unwrapped.get_task() != envs.BanditTask((0.0, 1.0, 0.0))
    assert env.unwrapped.family.split_of(env.unwrapped.get_task()) == "train"


@pytest.mark.parametrize("device", DEVICES)
def test_rl2_batched_equals_wrapper_continuous(device):
    fam = envs.Navigation2DFamily(horizon=4)
    tasks = fam.sample_tasks(2, 0)
    benv = envs.RL2BatchedEnv(fam.make_batched(2, 1, device=device), episodes_per_trial=3)
    benv.set_tasks(tasks)
    wrappers = [envs.RL2Wrapper(fam.make_env(), 3) for _ in tasks]
    wobs = [w.reset(seed=0, options={"task": t})[0] for w, t in zip(wrappers, tasks, strict=True)]
    bobs = benv.reset()
    assert bobs.shape == (2, 1, 2 + 2 + 2) and benv.max_episode_steps == 12
    rng = np.random.default_rng(0)
    for t in range(12):
        np.testing.assert_allclose(bobs[:, 0].cpu().numpy(), np.stack(wobs), atol=1e-6)
        a = rng.uniform(-0.1, 0.1, size=(2, 1, 2)).astype(np.float32)
        bobs, br, bte, btr = benv.step(torch.as_tensor(a, device=device))
        steps = [w.step(a[k, 0]) for k, w in enumerate(wrappers)]
        wobs = [s[0] for s in steps]
        assert [bool(x) for x in btr[:, 0]] == [s[3] for s in steps] == [t == 11] * 2
        np.testing.assert_allclose(br[:, 0].cpu().numpy(), [s[1] for s in steps], atol=1e-6)
        if t in (3, 7):  # first observation of the next episode: position reset, done flag set
            assert torch.all(bobs[:, 0, :2] == 0) and torch.all(bobs[:, 0, -1] == 1)
    np.testing.assert_allclose(bobs[:, 0].cpu().numpy(), np.stack(wobs), atol=1e-6)


@pytest.mark.parametrize("make", [lambda: envs.Navigation2DEnv(horizon=5), envs.TabularMDPEnv,
                                  lambda: envs.BernoulliBanditEnv(episode_length=1)])
def test_rl2_wrapper_passes_check_env(make):
    import warnings

    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "wrapped env" and infinite-bound notices
        check_env(envs.RL2Wrapper(make(), episodes_per_trial=3), skip_render_check=True)
