"""Learning tests: the algorithms must actually learn (seeded, a few seconds each on a 2-core CPU)."""

import numpy as np
import pytest
import torch

from meta_rl_lessons.rl.ppo import PPO, PPOConfig
from meta_rl_lessons.rl.reinforce import REINFORCE, REINFORCEConfig
from meta_rl_lessons.rl.trpo import TRPO, TRPOConfig

torch.set_num_threads(1)


@pytest.mark.slow
def test_ppo_solves_cartpole_within_50k_steps():
    # rl-baselines3-zoo's CartPole settings: 8 envs x 32 steps, 20 epochs, lr 1e-3, gamma .98, lambda .8
    config = PPOConfig(env_id="CartPole-v1", num_envs=8, num_steps=32, minibatch_size=256, update_epochs=20,
                       learning_rate=1e-3, gamma=0.98, gae_lambda=0.8, total_steps=50_000, seed=0,
                       device="cpu", progress=False)
    ppo = PPO(config)
    ppo.train()
    assert ppo.sampler.total_steps <= 50_000
    # evaluate the trained stochastic policy on 16 fresh episodes (not the training curve)
    returns = ppo.sampler.collect_episodes(16).episode_returns()
    assert returns.mean() >= 200, returns


@pytest.mark.slow
def test_trpo_improves_inverted_pendulum():
    config = TRPOConfig(env_id="InvertedPendulum-v5", max_episode_steps=100, num_envs=8,
                        episodes_per_iteration=16, iterations=15, baseline="linear", seed=0, device="cpu",
                        progress=False)
    trpo = TRPO(config)
    initial = trpo.sampler.collect_episodes(16).episode_returns().mean().item()
    log = trpo.train()
    final = trpo.sampler.collect_episodes(16).episode_returns().mean().item()
    assert (log.column("kl") <= config.max_kl * (1 + 1e-5)).all()
    assert final >= max(3 * initial, 40.0), (initial, final)


@pytest.mark.slow
def test_reinforce_with_baseline_improves_cartpole():
    config = REINFORCEConfig(env_id="CartPole-v1", num_envs=8, episodes_per_iteration=16, iterations=25,
                             baseline="linear", hidden_sizes=(32,), learning_rate=1e-2, seed=0, device="cpu",
                             progress=False)
    algo = REINFORCE(config)
    initial = algo.sampler.collect_episodes(16).episode_returns().mean().item()
    algo.train()
    final = algo.sampler.collect_episodes(16).episode_returns().mean().item()
    assert final >= 3 * initial, (initial, final)
    assert np.isfinite(algo.logger.column("loss")).all()
