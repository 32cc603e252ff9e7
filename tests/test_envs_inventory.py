"""Inventory control family: gymnasium checker, batched == gymnasium, split, exact oracle against brute force,
the accounting identity, bad input, and the MAML / RL² samplers on it."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import DEVICES
from gymnasium.utils.env_checker import check_env

import meta_rl_lessons.envs as envs
from meta_rl_lessons.envs import InventoryFamily, InventoryTask


def test_registered_and_passes_check_env():
    env = gym.make("MetaRL/Inventory-v0")
    assert "Inventory" in envs.FAMILIES and "MetaRL/Inventory-v0" in envs.ENV_IDS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium suggests a [-1, 1] action box; ours is in tens of items
        check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1,) and obs[0] == 0.0  # every season starts with an empty shelf
    total = 0
    for _ in range(InventoryFamily().horizon):
        obs, r, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and not terminated
        total += 1
    assert truncated and total == 10
    assert env.unwrapped.family.split_of(env.unwrapped.get_task()) == "train"


class _ReplayDemand:
    """Stands in for the gymnasium env's ``np_random``: ``poisson`` returns given demands in turn."""

    def __init__(self, demands):
        self.demands = list(demands)

    def poisson(self, lam):
        return self.demands.pop(0)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_equals_gymnasium_step_by_step(device):
    fam = InventoryFamily(horizon=6, capacity=25.0)
    tasks = fam.sample_tasks(3, 0)
    K, E, T = 3, 2, 6
    benv = fam.make_batched(K, E, device=device, seed=0)
    benv.set_tasks(tasks)
    obs = benv.reset()
    assert obs.shape == (K, E, 1) and not obs.any()
    rng = np.random.default_rng(1)
    # negative orders (read as 0), ordinary ones, and orders past the capacity
    actions = rng.uniform(-0.5, 3.5, size=(T, K, E, 1)).astype(np.float32)
    gyms = [[fam.make_env(task=tasks[k]) for _ in range(E)] for k in range(K)]
    for row in gyms:
        for env in row:
            env.reset(seed=0)
    for t in range(T):
        o, r, te, tr = benv.step(torch.as_tensor(actions[t], device=device))
        assert o.shape == (K, E, 1) and r.shape == te.shape == tr.shape == (K, E)
        for k in range(K):
            for e in range(E):
                env = gyms[k][e]
                env.np_random = _ReplayDemand([benv.demand[k, e].item()])  # the same day's demand
                go, gr, gte, gtr, info = env.step(actions[t, k, e])
                np.testing.assert_allclose(o[k, e].cpu().numpy(), go, rtol=0, atol=1e-6)
                assert r[k, e].item() == pytest.approx(gr, abs=1e-6)
                assert bool(te[k, e]) == gte and bool(tr[k, e]) == gtr
                assert benv.sales[k, e].item() == pytest.approx(info["sales"], abs=1e-5)
                assert benv.order[k, e].item() == pytest.approx(info["order"], abs=1e-5)
                assert 0.0 <= info["stock"] <= 25.0
    assert bool(tr.all()) and not te.any()
    # orders past the shelf were cut at the capacity at least once (the test covers the clip)
    assert (actions * fam.scale > fam.capacity).any()


@pytest.mark.parametrize("device", DEVICES)
def test_batched_demand_is_poisson_with_the_task_mean(device):
    fam = InventoryFamily()
    tasks = [InventoryTask(2.5), InventoryTask(17.0)]
    benv = fam.make_batched(2, 20000, device=device, seed=3)
    benv.set_tasks(tasks)
    benv.reset()
    benv.step(torch.zeros(2, 20000, 1, device=device))
    d = benv.demand.cpu().double()
    for k, lam in enumerate((2.5, 17.0)):
        se = math.sqrt(lam / 20000)
        assert abs(d[k].mean().item() - lam) < 4 * se
        assert d[k].var().item() == pytest.approx(lam, rel=0.05)  # Poisson: variance = mean
        assert torch.equal(d[k], d[k].round())


def test_same_seed_same_tasks_and_disjoint_split():
    fam = InventoryFamily()
    same = fam.sample_tasks(8, np.random.default_rng(5), split="train")
    assert fam.sample_tasks(8, 5, split="train") == same
    assert fam.sample_tasks(8, 5) != fam.sample_tasks(8, 6)
    train = fam.sample_tasks(300, 0, split="train")
    test = fam.sample_tasks(300, 1, split="test")
    assert {fam.split_of(t) for t in train} == {"train"} and {fam.split_of(t) for t in test} == {"test"}
    lam_test = np.array([t.demand_mean for t in test])
    # test stores: demand means in [5.6, 7.4) and [14.6, 16.4) for the default range [2, 20]
    in_cells = ((lam_test >= 5.6) & (lam_test < 7.4)) | ((lam_test >= 14.6) & (lam_test < 16.4))
    assert in_cells.all() and lam_test.min() < 7.4 and lam_test.max() >= 14.6
    lam_train = np.array([t.demand_mean for t in train])
    assert not (((lam_train >= 5.6) & (lam_train < 7.4)) | ((lam_train >= 14.6) & (lam_train < 16.4))).any()
    frac = np.mean([fam.split_of(t) == "test" for t in fam.sample_tasks(2000, 2)])
    assert 0.16 < frac < 0.24


def _brute_force_daily_reward(fam: InventoryFamily, lam: float, levels: np.ndarray) -> np.ndarray:
    """E[r | y] by direct summation over demands, the pmf by the recursion p(d) = p(d-1) lam / d."""
    pmf = [math.exp(-lam)]
    while len(pmf) < 400:
        pmf.append(pmf[-1] * lam / len(pmf))
    pmf = np.array(pmf)
    d = np.arange(len(pmf), dtype=np.float64)
    y = levels[:, None]
    profit = (fam.margin * np.minimum(y, d) - fam.holding_cost * np.maximum(y - d, 0)
              - fam.lost_sale_penalty * np.maximum(d - y, 0))
    return (profit * pmf).sum(1) / fam.scale


@pytest.mark.parametrize("economics", [{}, {"holding_cost": 0.1, "lost_sale_penalty": 0.0},
                                       {"holding_cost": 2.0, "lost_sale_penalty": 1.0, "price": 5.0}])
def test_oracle_level_is_the_brute_force_argmax(economics):
    fam = InventoryFamily(**economics)
    levels = np.arange(0.0, fam.capacity + 1e-9, 0.25)  # non-integer levels too
    for lam in (2.0, 3.7, 9.1, 15.0, 20.0):
        task = InventoryTask(lam)
        exact = _brute_force_daily_reward(fam, lam, levels)
        np.testing.assert_allclose(fam.expected_daily_reward(levels, task), exact, rtol=0, atol=1e-12)
        best = levels[np.argmax(exact)]
        assert fam.oracle_level(task) == best
        assert fam.oracle_return(task) == pytest.approx(fam.horizon * exact.max(), abs=1e-10)
        # and it is the critical-fractile quantile, checked by its definition
        cdf = np.cumsum([math.exp(-lam) * lam**k / math.factorial(k) for k in range(80)])
        kappa = fam.critical_fractile
        assert cdf[int(best)] >= kappa and (best == 0 or cdf[int(best) - 1] < kappa)


def test_best_common_level_is_the_brute_force_argmax():
    fam = InventoryFamily()
    tasks = fam.sample_tasks(60, 0, split="train")
    levels = np.arange(0.0, fam.capacity + 1e-9, 0.25)
    mean = np.mean([_brute_force_daily_reward(fam, t.demand_mean, levels) for t in tasks], axis=0)
    level = fam.best_common_level(tasks)
    assert level == levels[np.argmax(mean)]
    # what a non-adaptive policy gives up: strictly less than the per-task oracle on average
    common = np.mean([fam.base_stock_return(level, t) for t in tasks])
    oracle = np.mean([fam.oracle_return(t) for t in tasks])
    assert common < oracle
    assert fam.best_common_level([InventoryTask(7.0)]) == fam.oracle_level(InventoryTask(7.0))


@pytest.mark.parametrize("device", DEVICES)
def test_base_stock_policy_in_the_batched_env_earns_the_exact_expectation(device):
    fam = InventoryFamily()
    tasks = [InventoryTask(4.0), InventoryTask(12.5)]
    n = 4000
    benv = fam.make_batched(2, n, device=device, seed=1)
    benv.set_tasks(tasks)
    levels = torch.tensor([[fam.oracle_level(tasks[0])], [fam.best_common_level(fam.sample_tasks(200, 0))]],
                          device=device)
    obs = benv.reset()
    ret = torch.zeros(2, n, device=device, dtype=torch.float64)
    for _ in range(fam.horizon):
        a = (levels - obs[..., 0] * fam.scale).clamp_min(0) / fam.scale  # order up to the level
        obs, r, _, tr = benv.step(a.unsqueeze(-1))
        ret += r.double()
    assert bool(tr.all())
    for k in range(2):
        want = fam.base_stock_return(float(levels[k, 0]), tasks[k])
        se = ret[k].std().item() / math.sqrt(n)
        assert abs(ret[k].mean().item() - want) < 4 * se


def test_cash_flow_identity():
    # Paying c on ordering, with the leftover stock bought back at cost at the end, gives the same return
    # as the env's reward that pays c on each sale (eq. cash-flow-identity).
    fam = InventoryFamily()
    env = fam.make_env(task=InventoryTask(8.0))
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    reward_sum, cash = 0.0, 0.0
    for _ in range(fam.horizon):
        _, r, _, _, info = env.step(rng.uniform(-0.3, 2.5, size=1).astype(np.float32))
        reward_sum += r
        cash += (fam.price * info["sales"] - fam.cost * info["order"] - fam.holding_cost * info["stock"]
                 - fam.lost_sale_penalty * info["lost_sales"])
    cash += fam.cost * info["stock"]  # salvage at cost
    assert reward_sum == pytest.approx(cash / fam.scale, abs=1e-4)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="demand_low < demand_high.*demand_low=5"):
        InventoryFamily(demand_low=5.0, demand_high=2.0)
    with pytest.raises(ValueError, match="cost < price.*cost=3"):
        InventoryFamily(cost=3.0, price=2.0)
    with pytest.raises(ValueError, match="holding_cost must be > 0, got 0"):
        InventoryFamily(holding_cost=0.0)
    with pytest.raises(ValueError, match="horizon must be a positive int.*0"):
        InventoryFamily(horizon=0)
    fam = InventoryFamily()
    with pytest.raises(ValueError, match=r"demand_mean=25.0 is outside the allowed range \[2.0, 20.0\]"):
        fam.validate(InventoryTask(25.0))
    with pytest.raises(TypeError, match="unknown task parameter.*'mean'.*allowed: \\['demand_mean'\\]"):
        fam.validate({"mean": 3.0})
    with pytest.raises(ValueError, match="stock levels must lie in \\[0, capacity=40.0\\].*max 41"):
        fam.expected_daily_reward(np.array([1.0, 41.0]), InventoryTask(3.0))
    with pytest.raises(ValueError, match="base-stock level must be a finite number >= 0, got -1"):
        fam.base_stock_return(-1.0, InventoryTask(3.0))
    with pytest.raises(ValueError, match="at least one task"):
        fam.best_common_level([])
    env = fam.make_env(task=InventoryTask(3.0))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one order quantity, got shape \\(2,\\)"):
        env.step(np.zeros(2, dtype=np.float32))
    benv = fam.make_batched(2, 3)
    with pytest.raises(RuntimeError, match="set_tasks"):
        benv.reset()
    benv.set_tasks([InventoryTask(3.0), InventoryTask(4.0)])
    benv.reset()
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 3, 1\), got \(2, 3\)"):
        benv.step(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="either family or its keyword arguments"):
        envs.InventoryEnv(family=fam, horizon=3)


@pytest.mark.parametrize("device", DEVICES)
def test_maml_and_rl2_train_on_the_family(device):
    from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig
    from meta_rl_lessons.rl2 import RL2Config, RL2Trainer

    maml = MAMLTRPO(MAMLTRPOConfig(family="Inventory", meta_batch_size=3, num_episodes=4, iterations=1,
                                   hidden_sizes=(8,), device=device, seed=0))
    row = maml.iteration()
    assert math.isfinite(row["return_pre"]) and math.isfinite(row["return_post"])
    test_tasks = maml.family.sample_tasks(2, 0, split="test")
    ev = maml.evaluate(test_tasks, step_sizes=(0.1,), num_episodes=3)
    assert ev.shape == (2, 2) and torch.isfinite(ev).all()

    rl2 = RL2Trainer(RL2Config(family="Inventory", family_kwargs={}, episodes_per_trial=2, num_trials=8,
                               total_iterations=1, hidden_size=8, num_minibatches=2, update_epochs=1,
                               device=device, seed=0))
    row = rl2.iteration()
    assert math.isfinite(row["trial_return"])
    trials = rl2.evaluate(test_tasks, seed=1)
    # one trial per task: two seasons of ten days, the second starting empty again
    assert trials.episode_returns().shape == (2, 2)
    assert trials.batch.rewards.shape[0] == 2 * InventoryFamily().horizon
