"""Trainers: one iteration on every device, checkpoints, logging, and clear errors for bad input."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import DEVICES

from meta_rl_lessons.rl.ppo import PPO, PPOConfig
from meta_rl_lessons.rl.reinforce import REINFORCE, REINFORCEConfig
from meta_rl_lessons.rl.trpo import TRPO, TRPOConfig
from meta_rl_lessons.rl.utils import CSVLogger, check_finite, check_positive, resolve_device

torch.set_num_threads(1)


def _tiny(kind, device, env_id="CartPole-v1", envs=None, **kw):
    base = dict(env_id=env_id, num_envs=2, hidden_sizes=(16,), device=device, progress=False, seed=0)
    common = {**base, **kw}
    if kind == "ppo":
        return PPO(PPOConfig(num_steps=32, minibatch_size=32, update_epochs=2, total_steps=128,
                             normalize_observations=True, normalize_rewards=True, **common), envs)
    if kind == "trpo":
        return TRPO(TRPOConfig(episodes_per_iteration=2, max_episode_steps=30, value_iters=2, iterations=1,
                               **common), envs)
    return REINFORCE(REINFORCEConfig(episodes_per_iteration=2, max_episode_steps=30, iterations=1,
                                     baseline="value", value_iters=2, **common), envs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["reinforce", "trpo", "ppo"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_one_iteration_on_each_device(kind, device, env_id):
    algo = _tiny(kind, device, env_id)
    before = [p.detach().clone() for p in algo.policy.parameters()]
    row = algo.iteration()
    assert all(p.device.type == device for p in algo.policy.parameters())
    after = [p.detach() for p in algo.policy.parameters()]
    changed = any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert changed or row.get("accepted") == 0.0
    assert row["env_steps"] > 0 and math.isfinite(row["update_time"])
    assert len(algo.logger.rows) == 1


def test_ppo_checkpoint_restores_observation_statistics(tmp_path):
    a = _tiny("ppo", "cpu")
    a.train()
    state = a.state_dict()
    torch.save(state, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"different PPOConfig \(seed: 0 in the state, 1 here\)"):
        _tiny("ppo", "cpu", seed=1).load_state_dict(state)
    b = _tiny("ppo", "cpu")
    b.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    np.testing.assert_array_equal(a.sampler.obs_normalizer.mean, b.sampler.obs_normalizer.mean)


def test_csv_logger_writes_header_and_rows(tmp_path):
    path = tmp_path / "sub" / "progress.csv"
    log = CSVLogger(path)
    log.log({"iteration": 1, "ret": torch.tensor(2.5)})
    log.log({"iteration": 2, "ret": 3.0})
    assert path.read_text().splitlines() == ["iteration,ret", "1.0,2.5", "2.0,3.0"]
    np.testing.assert_array_equal(log.column("ret"), [2.5, 3.0])
    with pytest.raises(KeyError, match="new metric"):
        log.log({"iteration": 3, "other": 1.0})


def test_ppo_csv_log_path(tmp_path):
    algo = _tiny("ppo", "cpu", log_path=str(tmp_path / "ppo.csv"))
    algo.train()
    lines = (tmp_path / "ppo.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,env_steps,episode_return")
    assert len(lines) == 1 + algo.total_iterations


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    "cls,field,value,match",
    [
        (PPOConfig, "learning_rate", 0.0, "learning_rate must be a finite number > 0"),
        (PPOConfig, "learning_rate", -1e-3, "learning_rate must be a finite number > 0"),
        (PPOConfig, "minibatch_size", 100, "must divide num_envs"),
        (PPOConfig, "gamma", 1.5, "gamma must lie in"),
        (PPOConfig, "num_envs", 0, "num_envs must be a positive integer"),
        (PPOConfig, "target_kl", -0.1, "target_kl must be a finite number > 0"),
        (TRPOConfig, "max_kl", 0.0, "max_kl must be a finite number > 0"),
        (TRPOConfig, "baseline", "critic", "baseline must be"),
        (TRPOConfig, "backtrack_ratio", 1.0, "backtrack_ratio must lie in"),
        (REINFORCEConfig, "learning_rate", float("nan"), "learning_rate must be a finite number > 0"),
        (REINFORCEConfig, "baseline", "mean", "baseline must be"),
    ],
)
def test_invalid_config_fields_are_named(cls, field, value, match):
    with pytest.raises(ValueError, match=match):
        cls(**{field: value})


@pytest.mark.parametrize("kind", ["reinforce", "trpo", "ppo"])
def test_nan_reward_gives_a_clear_loss_error(kind):
    def make():
        env = gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 30)
        return gym.wrappers.TransformReward(env, lambda r: float("nan"))

    envs = gym.vector.SyncVectorEnv([make, make], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    algo = _tiny(kind, "cpu", envs=envs, **({"normalize_advantages": False} if kind != "reinforce" else {}))
    with pytest.raises(FloatingPointError, match="loss is not finite"):
        algo.iteration()


def test_check_helpers():
    with pytest.raises(FloatingPointError, match="loss is not finite"):
        check_finite("loss", torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -1"):
        check_positive("lr", -1)


def test_ppo_kl_early_stop_and_clipped_value_loss():
    algo = _tiny("ppo", "cpu", target_kl=1e-6, clip_value_loss=True, learning_rate=1e-2)
    algo.config.update_epochs = 5
    row = algo.iteration()
    per_epoch = algo.config.num_envs * algo.config.num_steps // algo.config.minibatch_size
    assert row["stopped_early"] == 1.0
    assert 1 <= row["minibatch_steps"] < 5 * per_epoch
    free = _tiny("ppo", "cpu", clip_value_loss=True)
    free.config.update_epochs = 5
    assert free.iteration()["minibatch_steps"] == 5 * per_epoch


def test_trpo_subsampled_fisher_still_respects_the_kl_bound():
    algo = _tiny("trpo", "cpu", env_id="Pendulum-v1", fvp_subsample=0.5, max_kl=0.005)
    for _ in range(3):
        row = algo.iteration()
        assert row["kl"] <= 0.005 * (1 + 1e-6)


def test_check_positive_ints_names_class_and_field():
    from dataclasses import dataclass

    from meta_rl_lessons.rl.utils import check_positive_ints

    @dataclass
    class Demo:
        steps: int = 3
        trials: object = 2

    check_positive_ints(Demo(), "steps", "trials")
    for bad in (0, -1, 2.0, "2", None):
        with pytest.raises(ValueError, match=r"Demo\.trials must be a positive integer, got "):
            check_positive_ints(Demo(trials=bad), "steps", "trials")
