"""The meta-batch sampler: shapes, masks, one policy call per step, per-task parameters, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

import meta_rl_lessons.envs as envs

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


class TinyGaussian(nn.Module):
    """A policy with the package's calling convention: ``policy(obs, params=None)`` and ``per_task``."""

    def __init__(self, obs_dim: int, act_dim: int, mean_shift: float = 0.0, std: float = 0.05) -> None:
        super().__init__()
        self.linear = nn.Linear(obs_dim, act_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, mean_shift)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(torch.tensor(std).log())))
        self.calls = {"forward": 0, "per_task": 0}

    def _dist(self, obs, w, b, log_std):
        mean = obs @ w.transpose(-1, -2) + b.unsqueeze(-2) if b.dim() > 1 else obs @ w.T + b
        return Independent(Normal(mean, log_std.exp().unsqueeze(-2) if log_std.dim() > 1
                                  else log_std.exp().expand_as(mean)), 1)

    def forward(self, obs, params=None):
        self.calls["forward"] += 1
        p = params or dict(self.named_parameters())
        return self._dist(obs, p["linear.weight"], p["linear.bias"], p["log_std"])

    def per_task(self, obs, stacked):
        self.calls["per_task"] += 1
        mean = torch.einsum("kno,kao->kna", obs, stacked["linear.weight"]) + stacked["linear.bias"][:, None]
        std = stacked["log_std"].exp()[:, None].expand_as(mean)
        return Independent(Normal(mean, std), 1)


class TinyCategorical(nn.Module):
    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_actions))

    def forward(self, obs, params=None):
        return Categorical(logits=self.logits.expand(*obs.shape[:-1], -1))


@pytest.mark.parametrize("device", DEVICES)
def test_navigation_meta_batch_shapes_and_one_call_per_step(device):
    fam = envs.Navigation2DFamily()
    sampler = envs.MetaBatchSampler(fam, num_tasks=5, num_episodes=4, device=device, seed=0)
    torch.manual_seed(0)
    policy = TinyGaussian(2, 2, std=1e-3).to(device)  # stays near the origin: no episode reaches its goal
    tasks = [envs.NavigationTask((0.4 * (-1) ** k, 0.1 * k - 0.2)) for k in range(5)]
    batch = sampler.sample(tasks, policy)
    assert batch.batch_shape == (5, 4) and batch.horizon == 100
    assert batch.observations.shape == (100, 5, 4, 2) and batch.actions.shape == (100, 5, 4, 2)
    assert policy.calls == {"forward": 100, "per_task": 0}  # ONE batched call per step
    assert batch.mask.all() and batch.truncated[-1].all() and not batch.truncated[:-1].any()
    assert batch.num_steps == 5 * 4 * 100 and batch.device.type == torch.device(device).type
    # log-probabilities are those of the sampled actions under the sampling policy
    lp = policy(batch.observations).log_prob(batch.actions)
    torch.testing.assert_close(batch.log_probs, lp)
    # rewards are the negative distances to each row's goal
    goals = torch.tensor([t.goal for t in tasks], device=device)[None, :, None]
    pos = batch.next_observations
    torch.testing.assert_close(batch.rewards, -(pos - goals).norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_per_task_params_and_early_termination_padding():
    fam = envs.Navigation2DFamily()
    tasks = [envs.NavigationTask((0.25, 0.0)), envs.NavigationTask((0.0, -0.4))]
    sampler = envs.MetaBatchSampler(fam, num_tasks=2, num_episodes=3, seed=0)
    policy = TinyGaussian(2, 2, std=1e-4)
    params = policy.expand_params(2) if hasattr(policy, "expand_params") else {
        k: v.detach().unsqueeze(0).repeat(2, *[1] * v.dim()) for k, v in policy.named_parameters()}
    params["linear.bias"] = torch.tensor([[0.05, 0.0], [0.0, -0.1]])  # task 0 needs 5 steps, task 1 needs 4
    batch = sampler.sample(tasks, policy, params=params)
    assert policy.calls == {"forward": 0, "per_task": 5}
    assert batch.horizon == 5  # sampling stops once every episode has ended
    assert batch.mask[:, 0].sum(0).tolist() == [5, 5, 5] and batch.mask[:, 1].sum(0).tolist() == [4, 4, 4]
    assert batch.terminated[4, 0].all() and batch.terminated[3, 1].all() and not batch.truncated.any()
    # padding holds zeros
    pad = batch.mask == 0
    assert (batch.rewards[pad] == 0).all() and (batch.observations[pad] == 0).all()
    assert (batch.log_probs[pad] == 0).all()


def test_max_steps_marks_truncation_and_discrete_policy():
    fam = envs.TabularMDPFamily()
    sampler = envs.MetaBatchSampler(fam, num_tasks=3, num_episodes=2, seed=0)
    batch = sampler.sample(fam.sample_tasks(3, 0), TinyCategorical(5), max_steps=4)
    assert batch.horizon == 4 and batch.actions.shape == (4, 3, 2) and batch.actions.dtype == torch.long
    assert batch.truncated[-1].all() and batch.observations.shape == (4, 3, 2, 10)
    torch.testing.assert_close(batch.log_probs, torch.full((4, 3, 2), -torch.log(torch.tensor(5.0))))


def test_same_seed_same_batch():
    fam = envs.BernoulliBanditFamily()

    def run():
        torch.manual_seed(0)
        sampler = envs.MetaBatchSampler(fam, num_tasks=4, num_episodes=3, seed=7)
        return sampler.sample(fam.sample_tasks(4, 1), TinyCategorical(5))

    a, b = run(), run()
    assert torch.equal(a.actions, b.actions) and torch.equal(a.rewards, b.rewards)


def test_bad_policy_batch_shape_is_reported():
    class Flat(nn.Module):
        def forward(self, obs, params=None):
            return Normal(torch.zeros(*obs.shape[:-1], 2), 1.0)  # log_prob keeps the action dimension

    fam = envs.Navigation2DFamily()
    sampler = envs.MetaBatchSampler(fam, num_tasks=2, num_episodes=2)
    with pytest.raises(ValueError, match="batch shape"):
        sampler.sample(fam.sample_tasks(2, 0), Flat())


def test_mujoco_meta_batch_with_package_policy():
    policies = pytest.importorskip("meta_rl_lessons.rl.policies")
    fam = envs.HalfCheetahVelFamily(horizon=20)
    sampler = envs.MetaBatchSampler(fam, num_tasks=3, num_episodes=2, seed=0)
    policy = policies.GaussianMLPPolicy(17, 6)
    tasks = fam.sample_tasks(3, 0)
    batch = sampler.sample(tasks, policy)
    assert batch.batch_shape == (3, 2) and batch.horizon == 20 and batch.mask.all()
    stacked = policy.expand_params(3)
    batch2 = sampler.sample(tasks, policy, params=stacked)
    assert batch2.observations.shape == (20, 3, 2, 17)
    torch.testing.assert_close(batch2.log_probs, policy(batch2.observations).log_prob(batch2.actions))


def test_rl2_trials_through_the_sampler():
    fam = envs.BernoulliBanditFamily(num_arms=5, episode_length=1)
    env = envs.RL2BatchedEnv(fam.make_batched(2, 3, seed=0), episodes_per_trial=4)
    env.set_tasks(fam.sample_tasks(2, 0))
    batch = envs.sample_episodes(env, TinyCategorical(5))
    assert batch.horizon == 4 and batch.observations.shape == (4, 2, 3, 1 + 5 + 2) and batch.mask.all()
    obs = batch.observations
    assert (obs[0] == 0).all()  # trial start: no previous action, reward or done
    prev = torch.nn.functional.one_hot(batch.actions[:-1], 5).float()
    assert torch.equal(obs[1:, ..., 1:6], prev) and torch.equal(obs[1:, ..., 6], batch.rewards[:-1])
    assert (obs[1:, ..., 7] == 1).all()  # every pull is a one-step episode
    assert batch.truncated[-1].all() and not batch.dones[:-1].any()


def test_torch_threads_restored_after_sampling():
    fam = envs.Navigation2DFamily(horizon=3)
    sampler = envs.MetaBatchSampler(fam, num_tasks=2, num_episodes=2)
    seen = []

    class Spy(TinyGaussian):
        def forward(self, obs, params=None):
            seen.append(torch.get_num_threads())
            return super().forward(obs, params)

    before = torch.get_num_threads()
    sampler.sample(fam.sample_tasks(2, 0), Spy(2, 2))
    assert seen == [1, 1, 1] and torch.get_num_threads() == before
    seen.clear()
    sampler.sample(fam.sample_tasks(2, 0), Spy(2, 2), torch_threads=None)
    assert seen == [before] * 3
