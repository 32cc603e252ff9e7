"""The pipelined MuJoCo sampling loop (one half of the episodes stepping in the workers while the policy runs
on the other half) against the plain loop: the same episodes bit for bit, with early terminations, odd
batch sizes and per-task parameters; the refusals of the group-step API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import meta_rl_lessons.envs as envs
from meta_rl_lessons.envs import sampler as sampler_module
from meta_rl_lessons.envs.sampler import MetaBatchSampler
from meta_rl_lessons.rl.policies import GaussianMLPPolicy

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated", "mask",
          "log_probs")


def _both_ways(family, num_tasks, num_episodes, noise, seed=0):
    """Sample the same seeded batch pipelined and plain; returns both batches and the group steps begun."""
    tasks = family.sample_tasks(num_tasks, seed)
    with MetaBatchSampler(family, num_tasks, num_episodes, seed=seed, num_workers=2) as sampler:
        env = sampler.env
        torch.manual_seed(seed)
        policy = GaussianMLPPolicy(env.observation_shape[0], env.action_dim, hidden_sizes=(32, 32))
        params = {n: p.detach() + noise * torch.randn(num_tasks, *p.shape)
                  for n, p in policy.named_parameters()}
        begun = []
        step_begin = env.step_begin
        env.step_begin = lambda slot, *a: (begun.append(slot), step_begin(slot, *a))[1]
        batches = {}
        for pipelined in (True, False):
            env.pipelines = pipelined
            env.seed(seed + 1)
            torch.manual_seed(seed + 2)
            batches[pipelined] = sampler.sample(tasks, policy, params)
            batches[pipelined, "next draw"] = torch.randn(4)  # the same random numbers consumed
    return batches, begun


def _assert_same(batches):
    a, b = batches[True], batches[False]
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and torch.equal(x, y), name
    assert torch.equal(batches[True, "next draw"], batches[False, "next draw"])


def test_pipelined_half_cheetah_equals_the_plain_loop():
    """Twenty episodes per task, as MAML's benchmarks (with fewer rows the policy's halves need not agree
    with the whole bit for bit, and the loop falls back: the next tests)."""
    batches, begun = _both_ways(envs.HalfCheetahVelFamily(horizon=30), 4, 20, noise=0.3)
    _assert_same(batches)
    assert begun[:4] == [0, 1, 0, 1] and len(begun) == 2 * 30  # it did pipeline, every step


def test_pipelined_ant_with_early_terminations_equals_the_plain_loop():
    """Perturbed policies make some Ants fall (unhealthy: the episode ends early), at different steps in the
    two halves, so a half can run on while the other has ended (and an odd number of episodes splits
    unevenly)."""
    batches, begun = _both_ways(envs.AntVelFamily(horizon=120), 2, 15, noise=1.0, seed=3)
    _assert_same(batches)
    lengths = batches[True].mask.sum(0)
    assert begun, "the row check fell back to the plain loop: this test would not test the pipeline"
    assert int(lengths.min()) < 120 and int(lengths.max()) == 120  # some fell, some ran to the horizon
    assert int(lengths.max()) == batches[True].mask.shape[0]


def test_pipelined_ant_whose_second_half_ends_last_before_the_horizon():
    """Every episode falls before the horizon and the last one to end is in the second half: the first half
    then sits out its (empty) steps while the second half runs on, and the loop must stop with it."""
    batches, begun = _both_ways(envs.AntVelFamily(horizon=300), 2, 20, noise=3.0, seed=2)
    _assert_same(batches)
    lengths = batches[True].mask.sum(0)
    assert begun and int(lengths.max()) < 300
    assert int(lengths[:, 10:].max()) > int(lengths[:, :10].max())


def test_rows_agree_needs_a_gaussian_with_equal_rows():
    from torch.distributions import Categorical, Independent, Normal

    halves = (slice(0, 2), slice(2, 5))
    loc, scale = torch.randn(3, 5, 2), torch.rand(3, 5, 2) + 0.1
    whole = Independent(Normal(loc, scale), 1)
    rows = [Independent(Normal(loc[:, h], scale[:, h]), 1) for h in halves]
    assert sampler_module._rows_agree(whole, rows, halves)
    nudged = [rows[0], Independent(Normal(loc[:, 2:] + 1e-7, scale[:, 2:]), 1)]  # one rounding apart
    assert not sampler_module._rows_agree(whole, nudged, halves)
    assert not sampler_module._rows_agree(Normal(loc, scale), rows, halves)  # another log-density
    logits = torch.randn(3, 5, 4)
    categorical = Categorical(logits=logits)
    assert not sampler_module._rows_agree(categorical, [Categorical(logits=logits[:, h]) for h in halves],
                                          halves)


def test_small_batches_give_the_plain_loop_s_episodes_whichever_path_the_row_check_picks():
    """Three episodes per task: on this project's CPU the policy's matrix products on 1 and 2 rows round
    differently from those on 3, and the loop falls back; on another machine they may agree, and it
    pipelines. Either way the episodes must be the plain loop's."""
    batches, _ = _both_ways(envs.HalfCheetahVelFamily(horizon=10), 2, 3, noise=0.3)
    _assert_same(batches)


def test_group_steps_refuse_misuse():
    family = envs.HalfCheetahDirFamily(horizon=5)
    env = family.make_batched(1, 4, num_workers=2, seed=0, timeout=60)
    env.set_tasks(family.sample_tasks(1, 0))
    env.reset()
    rows, actions, active = np.arange(2), np.zeros((2, 6)), np.ones(2, dtype=bool)
    with pytest.raises(RuntimeError, match=r"the groups in flight are, oldest first, slots \[\]"):
        env.step_end(0)
    env.step_begin(0, rows, actions, active)
    with pytest.raises(ValueError, match="slot must be 0 or 1 and not already in flight, got 0"):
        env.step_begin(0, rows, actions, active)
    with pytest.raises(ValueError, match="got 2"):
        env.step_begin(2, rows + 2, actions, active)
    env.step_begin(1, rows + 2, actions, active)
    with pytest.raises(RuntimeError, match=r"'step' while group steps are in flight \(slots \[0, 1\]\)"):
        env.step(torch.zeros(1, 4, 6))
    with pytest.raises(RuntimeError, match=r"step_end\(1\): the groups in flight are, oldest"):
        env.step_end(1)
    obs0, reward0, _, _ = env.step_end(0)
    obs1, _, _, _ = env.step_end(1)
    assert obs0.shape == obs1.shape == (2, 17) and reward0.shape == (2,)
    env.step(torch.zeros(1, 4, 6))  # usable again
    env.close()
    in_process = family.make_batched(1, 4, num_workers=0, seed=0)
    in_process.set_tasks(family.sample_tasks(1, 0))
    with pytest.raises(RuntimeError, match="step_begin needs worker processes"):
        in_process.step_begin(0, rows, actions, active)
