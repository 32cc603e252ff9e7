"""Task families: registration, gymnasium's checker, task sampling and splits, validation errors, seeding."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import meta_rl_lessons.envs as envs
from meta_rl_lessons.envs.base import split_of_coordinates

CONTINUOUS_SPLIT = ["BernoulliBandit", "TabularMDP", "Navigation2D", "HalfCheetahVel", "AntVel", "AntGoal"]
DIRECTION = ["HalfCheetahDir", "AntDir"]


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_make_and_check_env(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds are intended (positions, velocities)
        check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)
    assert env.unwrapped.get_task() is not None
    assert env.unwrapped.family.split_of(env.unwrapped.get_task()) in ("train", None)
    env.close()


def test_all_families_registered():
    assert set(envs.FAMILIES) == {i.split("/")[1][:-3] for i in envs.ENV_IDS}
    for name in envs.FAMILIES:
        assert envs.make_family(name).env_id == f"MetaRL/{name}-v0"
    with pytest.raises(ValueError, match="unknown task family 'Nope'.*HalfCheetahVel"):
        envs.make_family("Nope")


@pytest.mark.parametrize("name", list(envs.FAMILIES))
def test_same_seed_same_tasks(name):
    fam = envs.make_family(name)
    a = fam.sample_tasks(6, 123, split="train")
    b = fam.sample_tasks(6, np.random.default_rng(123), split="train")
    assert a == b
    assert fam.sample_tasks(6, 124) != fam.sample_tasks(6, 123) or name in DIRECTION
    assert all(type(t) is fam.task_type for t in a)


def test_split_rule_one_cell_in_five():
    u = (np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2) + 0.5) / 10
    assert split_of_coordinates(u).mean() == pytest.approx(0.2)
    assert split_of_coordinates(((np.arange(10) + 0.5) / 10)[:, None]).sum() == 2


@pytest.mark.parametrize("name", CONTINUOUS_SPLIT)
def test_train_test_split_is_disjoint_and_deterministic(name):
    fam = envs.make_family(name)
    assert fam.has_disjoint_split
    train = fam.sample_tasks(150, 0, split="train")
    test = fam.sample_tasks(150, 1, split="test")
    assert {fam.split_of(t) for t in train} == {"train"}
    assert {fam.split_of(t) for t in test} == {"test"}
    # Disjoint regions: the split cells of train and test tasks never overlap.
    cells = lambda ts: {tuple(c) for c in np.floor(fam.split_coordinates(ts) * 10).astype(int)}  # noqa: E731
    assert not cells(train) & cells(test)
    # Interleaved: test tasks cover the whole range of the first coordinate, not one end of it.
    u = fam.split_coordinates(test)[:, 0]
    assert u.min() < 0.3 and u.max() > 0.7
    # Unconditioned sampling puts about one task in five in the test region.
    frac = np.mean([fam.split_of(t) == "test" for t in fam.sample_tasks(2000, 2)])
    assert 0.16 < frac < 0.24


@pytest.mark.parametrize("name", DIRECTION)
def test_direction_families_have_no_split(name):
    fam = envs.make_family(name)
    assert not fam.has_disjoint_split
    for split in ("train", "test", None):
        dirs = {t.direction for t in fam.sample_tasks(50, 0, split=split)}
        assert dirs == {-1, 1}
    assert fam.split_of(envs.DirectionTask(1)) is None


def test_task_ranges():
    v = [t.velocity for t in envs.HalfCheetahVelFamily().sample_tasks(2000, 0)]
    assert 0 <= min(v) < 0.05 and 1.95 < max(v) <= 2
    v = [t.velocity for t in envs.AntVelFamily().sample_tasks(2000, 0)]
    assert 0 <= min(v) < 0.05 and 2.95 < max(v) <= 3
    g = np.array([t.goal for t in envs.Navigation2DFamily().sample_tasks(2000, 0)])
    assert g.min() >= -0.5 and g.max() <= 0.5 and g.min() < -0.48 and g.max() > 0.48
    g = np.array([t.goal for t in envs.AntGoalFamily().sample_tasks(4000, 0)])
    r = np.linalg.norm(g, axis=1)
    assert r.max() <= 3.0 and r.max() > 2.95
    assert np.mean(r < 1.5) == pytest.approx(0.25, abs=0.03)  # uniform in area, not in radius
    m = np.array([t.means for t in envs.BernoulliBanditFamily(num_arms=5).sample_tasks(2000, 0)])
    assert m.shape == (2000, 5) and 0 <= m.min() and m.max() <= 1 and m.mean() == pytest.approx(0.5, abs=0.02)
    tasks = envs.TabularMDPFamily().sample_tasks(500, 0)
    P = np.stack([t.transitions for t in tasks])
    mu = np.stack([t.reward_means for t in tasks])
    assert P.shape == (500, 10, 5, 10) and np.allclose(P.sum(-1), 1)
    assert P.mean() == pytest.approx(0.1, abs=1e-3)
    assert P.var() == pytest.approx(9 / (100 * 11), rel=0.05)  # Dirichlet(1,...,1) in 10 dims: var 9/1100
    assert mu.mean() == pytest.approx(1.0, abs=0.02) and mu.std() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(
    "name, task, error, pattern",
    [
        ("HalfCheetahVel", {"velocity": 5.0}, ValueError, r"velocity=5\.0.*\[0\.0, 2\.0\]"),
        ("AntVel", {"velocity": -0.1}, ValueError, r"velocity=-0\.1.*\[0\.0, 3\.0\]"),
        ("HalfCheetahVel", {"speed": 1.0}, TypeError, r"unknown task parameter.*'speed'.*velocity"),
        ("AntDir", {"direction": 0}, ValueError, r"direction=0.*\+1 or -1"),
        ("AntGoal", {"goal": (3.0, 3.0)}, ValueError, r"goal=\(3\.0, 3\.0\).*disk of radius 3"),
        ("Navigation2D", {"goal": (0.7, 0.0)}, ValueError, r"goal\[0\]=0\.7.*\[-0\.5, 0\.5\]"),
        ("BernoulliBandit", {"means": (0.5, 1.5, 0.1, 0.1, 0.1)}, ValueError, r"\[1\.5\].*\[0, 1\]"),
        ("BernoulliBandit", {"means": (0.5, 0.5)}, ValueError, r"2 arm means.*num_arms=5"),
        ("HalfCheetahVel", envs.DirectionTask(1), TypeError, r"expects a VelocityTask"),
    ],
)
def test_bad_tasks_raise_clear_errors(name, task, error, pattern):
    fam = envs.make_family(name)
    with pytest.raises(error, match=pattern):
        fam.validate(task)


def test_bad_mdp_task_and_env_set_task():
    fam = envs.TabularMDPFamily()
    P = np.full((10, 5, 10), 0.2)
    with pytest.raises(ValueError, match="probability vector"):
        fam.validate(envs.MDPTask(P, np.zeros((10, 5))))
    with pytest.raises(ValueError, match=r"\[S, A, S\]"):
        fam.validate(envs.MDPTask(np.full((3, 5, 3), 1 / 3), np.zeros((3, 5))))
    env = gym.make("MetaRL/HalfCheetahVel-v0").unwrapped
    with pytest.raises(ValueError, match="velocity=2.5"):
        env.set_task({"velocity": 2.5})
    env.set_task({"velocity": 1.5})
    assert env.get_task() == envs.VelocityTask(1.5)
    with pytest.raises(ValueError, match="split"):
        fam.sample_tasks(2, 0, split="validation")


def test_reset_options_task_and_wider_family_range():
    env = gym.make("MetaRL/HalfCheetahVel-v0", family=envs.HalfCheetahVelFamily(velocity_range=(0, 3)))
    env.reset(seed=0, options={"task": {"velocity": 2.5}})
    assert env.unwrapped.get_task().velocity == 2.5


@pytest.mark.parametrize("env_id", ["MetaRL/Navigation2D-v0", "MetaRL/TabularMDP-v0", "MetaRL/AntDir-v0"])
def test_same_seed_same_trajectory(env_id):
    def rollout(seed):
        env = gym.make(env_id)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(15):
            obs, r, *_ = env.step(env.action_space.sample())
            out += [obs, np.array([r])]
        return np.concatenate([np.ravel(x) for x in out])

    assert np.array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_tabular_mdp_value_iteration():
    # A 2-state chain where action 1 moves to the rewarding state 1 and stays there.
    P = np.zeros((2, 2, 2))
    P[:, 0, 0] = 1.0
    P[:, 1, 1] = 1.0
    mu = np.array([[0.0, 0.0], [0.0, 1.0]])
    task = envs.MDPTask(P, mu)
    # Optimal: move to state 1 (reward 0), then collect 1 per step for the remaining H - 1 steps.
    assert envs.optimal_value(task, horizon=5) == pytest.approx(4.0)
    # Random policy from state 0, H = 2: E[r0] = 0; then in state 1 w.p. 1/2, paying 1/2 on average.
    assert envs.random_policy_value(task, horizon=2) == pytest.approx(0.25)
    t = envs.TabularMDPFamily().sample_tasks(20, 0)
    assert all(envs.optimal_value(x) >= envs.random_policy_value(x) for x in t)


def test_navigation_reward_and_termination():
    env = gym.make("MetaRL/Navigation2D-v0").unwrapped
    env.reset(seed=0, options={"task": {"goal": (0.3, -0.2)}})
    obs, r, term, trunc, _ = env.step(np.array([0.5, -0.05]))  # clipped to (0.1, -0.05)
    assert np.allclose(obs, [0.1, -0.05])
    assert r == pytest.approx(-math.hypot(0.1 - 0.3, -0.05 + 0.2), abs=1e-6) and not term
    env.step(np.array([0.1, -0.1]))
    obs, r, term, _, _ = env.step(np.array([0.1, -0.05]))
    assert np.allclose(obs, [0.3, -0.2], atol=1e-6) and term and r == pytest.approx(0.0, abs=1e-6)


def test_bandit_rewards_follow_arm_means():
    env = gym.make("MetaRL/BernoulliBandit-v0", episode_length=1000).unwrapped
    env.reset(seed=0, options={"task": {"means": (0.1, 0.9, 0.5, 0.5, 0.5)}})
    r = [env.step(1)[1] for _ in range(1000)]
    assert set(r) <= {0.0, 1.0} and np.mean(r) == pytest.approx(0.9, abs=0.04)
    assert env.step(0)[4]["expected_reward"] == 0.1


def test_tabular_mdp_bernoulli_rewards_follow_their_means():
    """reward_noise='bernoulli' (the enumerable MDP of maml.exact): rewards in {0, 1} with mean mu(s, a), in
    the gymnasium env and the batched env; means outside [0, 1] and unknown noise names are refused."""
    import torch

    fam = envs.TabularMDPFamily(num_states=2, num_actions=2, episode_length=1000, reward_noise="bernoulli")
    task = envs.MDPTask(np.full((2, 2, 2), 0.5), np.array([[0.2, 0.7], [0.9, 0.4]]))
    env = fam.make_env(task=task)
    env.reset(seed=0)
    r = [env.step(1)[1] for _ in range(2000)]  # states 0 and 1 half the time each: mean (0.7 + 0.4) / 2
    assert set(r) <= {0.0, 1.0} and np.mean(r) == pytest.approx(0.55, abs=0.03)
    batched = fam.make_batched(1, 4000, seed=0)
    batched.set_tasks([task])
    batched.reset()
    _, reward, _, _ = batched.step(torch.zeros(1, 4000, dtype=torch.long))  # from state 0, action 0
    assert set(reward.unique().tolist()) <= {0.0, 1.0}
    assert float(reward.mean()) == pytest.approx(0.2, abs=0.02)
    assert all(0 <= t.reward_means.min() and t.reward_means.max() <= 1 for t in fam.sample_tasks(50, 0))
    with pytest.raises(ValueError, match="reward_noise='bernoulli' every reward mean is a probability"):
        fam.validate(envs.MDPTask(np.full((2, 2, 2), 0.5), np.array([[1.5, 0.0], [0.0, 0.0]])))
    with pytest.raises(ValueError, match="unknown reward_noise 'poisson'; allowed: gaussian, bernoulli"):
        envs.TabularMDPFamily(reward_noise="poisson")
