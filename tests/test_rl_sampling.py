"""The vector sampler: SAME_STEP autoreset, true final observations, padding, seeding."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from meta_rl_lessons.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from meta_rl_lessons.rl.sampling import VectorSampler, make_vector_env
from meta_rl_lessons.rl.utils import RunningMeanStd, set_seed

torch.set_num_threads(1)


class CounterEnv(gym.Env):
    """obs = [time in episode, episode index, env id]; terminates at t == 3 when action 1 was taken at t=0,
    otherwise runs until a TimeLimit truncates it. Reward = 1 per step."""

    def __init__(self, env_id: int = 0):
        self.observation_space = gym.spaces.Box(-1e6, 1e6, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.env_id, self.episode = env_id, -1

    def _obs(self):
        return np.array([self.t, self.episode, self.env_id], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode, self.first_action = 0, self.episode + 1, None
        return self._obs(), {}

    def step(self, action):
        if self.t == 0:
            self.first_action = int(action)
        self.t += 1
        return self._obs(), 1.0, bool(self.first_action == 1 and self.t == 3), False, {}


def _counter_envs(n=3, limit=5):
    return SyncVectorEnv([lambda i=i: gym.wrappers.TimeLimit(CounterEnv(i), limit) for i in range(n)],
                         autoreset_mode=AutoresetMode.SAME_STEP)


def test_collect_steps_stores_true_final_observation_and_reset_observation():
    set_seed(0)
    sampler = VectorSampler(_counter_envs(), CategoricalMLPPolicy(3, 2, (8,)), seed=0)
    b = sampler.collect_steps(23)
    obs, nxt = b.observations.numpy(), b.next_observations.numpy()
    assert b.mask.eq(1).all() and b.log_probs.shape == (23, 3)
    for t in range(23):
        for e in range(3):
            assert obs[t, e, 2] == e
            # next observation is the state after the step: time + 1 within the same episode
            assert nxt[t, e, 0] == obs[t, e, 0] + 1 and nxt[t, e, 1] == obs[t, e, 1]
            if b.truncated[t, e]:
                assert nxt[t, e, 0] == 5 and not b.terminated[t, e]  # final obs of a truncated episode
            if b.terminated[t, e]:
                assert nxt[t, e, 0] == 3
            if t + 1 < 23:
                if b.dones[t, e]:  # the row after an end is the reset observation of the next episode
                    assert obs[t + 1, e, 0] == 0 and obs[t + 1, e, 1] == obs[t, e, 1] + 1
                else:
                    np.testing.assert_array_equal(obs[t + 1, e], nxt[t, e])
    assert b.truncated.any() and b.terminated.any()
    stats = sampler.pop_episode_stats()
    assert len(stats["returns"]) == int(b.dones.sum()) and set(stats["lengths"]) <= {3, 5}
    np.testing.assert_array_equal(stats["returns"], stats["lengths"])


def test_collect_episodes_one_episode_per_column_from_reset():
    set_seed(1)
    sampler = VectorSampler(_counter_envs(n=2), CategoricalMLPPolicy(3, 2, (8,)), seed=0)
    b = sampler.collect_episodes(5)
    assert b.batch_shape == (5,)
    lengths = b.mask.sum(0).long()
    for i in range(5):
        L = int(lengths[i])
        assert b.mask[:L, i].eq(1).all() and b.mask[L:, i].eq(0).all()
        assert b.observations[:L, i, 0].tolist() == list(range(L))  # starts at t = 0, contiguous
        assert bool(b.dones[L - 1, i]) and not b.dones[: L - 1, i].any() and not b.dones[L:, i].any()
        assert (b.observations[L:, i] == 0).all() and (b.rewards[L:, i] == 0).all()
    # columns e, e + 2, e + 4 come from sub-environment e
    assert b.observations[0, :, 2].tolist() == [0, 1, 0, 1, 0]
    stats = sampler.pop_episode_stats()
    assert sorted(stats["lengths"].tolist()) == sorted(lengths.tolist())


def test_same_seed_same_numbers_different_seed_different_numbers():
    def run(seed):
        set_seed(seed)
        envs = make_vector_env("Pendulum-v1", 2)
        b = VectorSampler(envs, GaussianMLPPolicy(3, 1, (8,)), seed=seed).collect_steps(30)
        envs.close()
        return b

    a, b, c = run(3), run(3), run(4)
    torch.testing.assert_close(a.observations, b.observations)
    torch.testing.assert_close(a.actions, b.actions)
    torch.testing.assert_close(a.rewards, b.rewards)
    assert not torch.allclose(a.observations, c.observations)


def test_continuous_actions_stored_unclipped_but_clipped_for_the_env():
    set_seed(0)
    envs = make_vector_env("Pendulum-v1", 2)  # action bound 2
    policy = GaussianMLPPolicy(3, 1, (8,), init_log_std=2.0)  # std ~ 7: most samples out of bounds
    b = VectorSampler(envs, policy, seed=0).collect_steps(20)
    assert b.actions.abs().max() > 2.0
    torch.testing.assert_close(b.log_probs, policy(b.observations).log_prob(b.actions))


def test_observation_normalizer_is_used_and_updated():
    set_seed(0)
    rms = RunningMeanStd((4,))
    envs = make_vector_env("CartPole-v1", 2)
    b = VectorSampler(envs, CategoricalMLPPolicy(4, 2, (8,)), seed=0, obs_normalizer=rms).collect_steps(50)
    assert rms.count > 100
    assert b.observations.abs().max() <= rms.clip


def test_next_step_autoreset_is_refused_with_instructions():
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(ValueError, match="SAME_STEP"):
        VectorSampler(envs, CategoricalMLPPolicy(4, 2))
    with pytest.raises(ValueError, match="num_steps must be a positive"):
        VectorSampler(make_vector_env("CartPole-v1", 1), CategoricalMLPPolicy(4, 2)).collect_steps(0)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 2))
    rms = RunningMeanStd((2,))
    for chunk in np.split(data, 10):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)
    state = rms.state_dict()
    other = RunningMeanStd((2,))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.normalize(data[:5]), rms.normalize(data[:5]))


def test_running_mean_std_update_sequence_equals_step_by_step_updates():
    rng = np.random.default_rng(1)
    xs = rng.normal(2.0, 3.0, size=(50, 4))
    a, b = RunningMeanStd(()), RunningMeanStd(())
    expected = []
    for t in range(50):
        a.update(xs[t])
        expected.append(a.var)
    np.testing.assert_allclose(b.update_sequence(xs), expected, rtol=1e-9)
    np.testing.assert_allclose([b.mean, b.var, b.count], [a.mean, a.var, a.count], rtol=1e-9)


def test_mujoco_notices_do_not_reach_stderr_or_a_log_file(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    envs = make_vector_env("HalfCheetah-v5", 1)
    envs.close()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert "settotalmass" not in capfd.readouterr().err
