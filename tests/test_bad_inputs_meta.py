"""Bad inputs to the meta-RL APIs fail at once, with a message that names the field, the value and what is
allowed: MAMLTRPOConfig, RL2Config, SinusoidConfig, and the task families (``make_family`` and a config's
``family`` / ``family_kwargs``, checked when the config is made, not when the trainer starts)."""

from __future__ import annotations

from typing import Any

import pytest

from meta_rl_lessons.envs import make_family
from meta_rl_lessons.maml.rl import MAMLTRPOConfig
from meta_rl_lessons.maml.supervised import SinusoidConfig
from meta_rl_lessons.rl2.ppo import RL2Config

KNOWN = r"known families: \['AntDir', 'AntGoal'.*'TabularMDP'\]"

# (config class, keyword arguments, exception, message pattern)
CONFIG_CASES: list[tuple[type, dict[str, Any], type[Exception], str]] = [
    # MAMLTRPOConfig
    (MAMLTRPOConfig, dict(meta_batch_size=0), ValueError,
     r"MAMLTRPOConfig\.meta_batch_size must be a positive integer, got 0"),
    (MAMLTRPOConfig, dict(num_episodes=-3), ValueError,
     r"MAMLTRPOConfig\.num_episodes must be a positive integer, got -3"),
    (MAMLTRPOConfig, dict(iterations=True), ValueError,
     r"MAMLTRPOConfig\.iterations must be a positive integer, got True"),
    (MAMLTRPOConfig, dict(estimator="promp"), ValueError,
     r"MAMLTRPOConfig\.estimator must be one of 'maml', 'dice', 'lvc', got 'promp'"),
    (MAMLTRPOConfig, dict(fvp_method="naive"), ValueError,
     r"MAMLTRPOConfig\.fvp_method must be one of 'analytic', 'factorized', 'direct', got 'naive'"),
    (MAMLTRPOConfig, dict(inner_lr=-0.1), ValueError,
     r"MAMLTRPOConfig\.inner_lr must be a finite number > 0, got -0\.1"),
    (MAMLTRPOConfig, dict(curvature_subsample=0.0), ValueError,
     r"MAMLTRPOConfig\.curvature_subsample must lie in \(0, 1\], got 0\.0"),
    (MAMLTRPOConfig, dict(gamma=1.5), ValueError, r"MAMLTRPOConfig\.gamma must lie in \[0, 1\], got 1\.5"),
    (MAMLTRPOConfig, dict(inner_steps=2), ValueError,
     r"fvp_method='analytic' supports inner_steps=1, got inner_steps=2; use fvp_method='direct'"),
    (MAMLTRPOConfig, dict(inner_steps=2, fvp_method="factorized"), ValueError,
     r"fvp_method='factorized' supports inner_steps=1, got inner_steps=2; use fvp_method='direct'"),
    (MAMLTRPOConfig, dict(curvature_subsample=0.5, fvp_method="direct"), ValueError,
     r"curvature_subsample=0\.5 < 1 needs fvp_method='analytic' or 'factorized', got 'direct'"),
    (MAMLTRPOConfig, dict(estimator="dice", meta_batch_size=1), ValueError,
     r"estimator 'dice' needs meta_batch_size >= 2 .*got 1"),
    (MAMLTRPOConfig, dict(num_workers=-1), ValueError,
     r"MAMLTRPOConfig\.num_workers must be None .* or an integer >= 0 .*got -1"),
    (MAMLTRPOConfig, dict(hidden_sizes=(64, 0)), ValueError,
     r"MAMLTRPOConfig\.hidden_sizes must be a sequence of positive integers .*got \(64, 0\)"),
    (MAMLTRPOConfig, dict(activation="gelu"), ValueError,
     r"MAMLTRPOConfig\.activation must be one of 'relu', 'tanh', got 'gelu'"),
    (MAMLTRPOConfig, dict(family="Nav2D"), ValueError,
     rf"MAMLTRPOConfig\.family: unknown task family 'Nav2D'; {KNOWN}"),
    (MAMLTRPOConfig, dict(family="Navigation2d"), ValueError,
     r"unknown task family 'Navigation2d' \(did you mean 'Navigation2D'\?\)"),
    (MAMLTRPOConfig, dict(family_kwargs={"horizn": 10}), ValueError,
     r"MAMLTRPOConfig\.family_kwargs=\{'horizn': 10\}: Navigation2D: unknown keyword argument\(s\) "
     r"\['horizn'\] \(did you mean 'horizn' -> 'horizon'\?\); allowed: goal_low, goal_high, horizon"),
    (MAMLTRPOConfig, dict(family_kwargs={"horizon": 0}), ValueError,
     r"MAMLTRPOConfig\.family_kwargs=\{'horizon': 0\}: Navigation2D: horizon must be an integer >= 1, got 0"),
    (MAMLTRPOConfig, dict(family="HalfCheetahVel", family_kwargs={"physics": "bullet"}), ValueError,
     r"HalfCheetahVel: physics='bullet' is not allowed; use one of \('mujoco', 'warp'\)"),
    (MAMLTRPOConfig, dict(family="HalfCheetahVel", family_kwargs={"velocity_range": (2.0, 1.0)}),
     ValueError,
     r"HalfCheetahVel: velocity_range must be \(low, high\) with finite low < high, got \(2\.0, 1\.0\)"),
    # RL2Config
    (RL2Config, dict(num_trials=0), ValueError, r"RL2Config\.num_trials must be a positive integer, got 0"),
    (RL2Config, dict(num_trials=16, num_minibatches=32), ValueError,
     r"RL2Config\.num_minibatches=32 exceeds num_trials=16: a minibatch holds whole trials"),
    (RL2Config, dict(learning_rate=0.0), ValueError,
     r"RL2Config\.learning_rate must be a finite number > 0, got 0\.0"),
    (RL2Config, dict(bptt=0), ValueError, r"RL2Config\.bptt must be None or a positive integer, got 0"),
    (RL2Config, dict(split="validation"), ValueError,
     r"RL2Config\.split must be one of None, 'train', 'test', got 'validation'"),
    (RL2Config, dict(device="gpu"), ValueError,
     r"RL2Config\.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    (RL2Config, dict(family="Bandit"), ValueError,
     rf"RL2Config\.family: unknown task family 'Bandit'; {KNOWN}"),
    (RL2Config, dict(family_kwargs={"arms": 5}), ValueError,
     r"RL2Config\.family_kwargs=\{'arms': 5\}: BernoulliBandit: unknown keyword argument\(s\) \['arms'\] "
     r"\(did you mean 'arms' -> 'num_arms'\?\); allowed: num_arms, episode_length"),
    (RL2Config, dict(family_kwargs={"num_arms": 1, "episode_length": 1}), ValueError,
     r"BernoulliBandit: num_arms must be an integer >= 2, got 1"),
    (RL2Config, dict(family_kwargs=[("num_arms", 5)]), ValueError,
     r"RL2Config\.family_kwargs must be a dict of BernoulliBandit's keyword arguments \(num_arms, "
     r"episode_length\), got \[\('num_arms', 5\)\]"),
    (RL2Config, dict(family="TabularMDP", family_kwargs={"num_states": 1}), ValueError,
     r"TabularMDP: num_states must be an integer >= 2, got 1"),
    # SinusoidConfig
    (SinusoidConfig, dict(method="mmal"), ValueError,
     r"SinusoidConfig\.method must be one of 'maml', 'fomaml', 'reptile', 'pretrain', got 'mmal'"),
    (SinusoidConfig, dict(k_shot=0), ValueError, r"SinusoidConfig\.k_shot must be a positive integer, got 0"),
    (SinusoidConfig, dict(meta_batch_size=2.5), ValueError,
     r"SinusoidConfig\.meta_batch_size must be a positive integer, got 2\.5"),
    (SinusoidConfig, dict(inner_steps=-1), ValueError,
     r"SinusoidConfig\.inner_steps must be a non-negative int, got -1"),
    (SinusoidConfig, dict(method="reptile", inner_steps=0), ValueError,
     r"Reptile needs inner_steps >= 1, got 0"),
    (SinusoidConfig, dict(meta_lr=float("nan")), ValueError,
     r"SinusoidConfig\.meta_lr must be a finite number > 0, got nan"),
    (SinusoidConfig, dict(hidden_sizes=(40, -1)), ValueError,
     r"SinusoidConfig\.hidden_sizes must be a sequence of positive integers .*got \(40, -1\)"),
    (SinusoidConfig, dict(device="gpu"), ValueError,
     r"SinusoidConfig\.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
]


@pytest.mark.parametrize(("cls", "kwargs", "error", "match"), CONFIG_CASES,
                         ids=[f"{c.__name__}-{'-'.join(map(str, kw))}-{i}"
                              for i, (c, kw, _, _) in enumerate(CONFIG_CASES)])
def test_config_refuses_bad_values(cls: type, kwargs: dict[str, Any], error: type[Exception],
                                   match: str) -> None:
    with pytest.raises(error, match=match):
        cls(**kwargs)


FAMILY_CASES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("Nope", {}, ValueError, rf"unknown task family 'Nope'; {KNOWN}"),
    ("BernoulliBandit", {"num_arm": 3}, TypeError,
     r"BernoulliBandit: unknown keyword argument\(s\) \['num_arm'\] \(did you mean 'num_arm' -> "
     r"'num_arms'\?\); allowed: num_arms, episode_length"),
    ("BernoulliBandit", {"episode_length": 0}, ValueError,
     r"BernoulliBandit: episode_length must be an integer >= 1, got 0"),
    ("TabularMDP", {"num_actions": 1}, ValueError, r"TabularMDP: num_actions must be an integer >= 2, got 1"),
    ("TabularMDP", {"reward_noise": "poisson"}, ValueError,
     r"TabularMDP: unknown reward_noise 'poisson'; allowed: gaussian, bernoulli"),
    ("Navigation2D", {"goal_low": 1.0, "goal_high": 0.0}, ValueError,
     r"Navigation2D: need finite goal_low < goal_high, got goal_low=1\.0, goal_high=0\.0"),
    ("Navigation2D", {"horizon": 2.5}, ValueError,
     r"Navigation2D: horizon must be an integer >= 1, got 2\.5"),
    ("AntGoal", {"radius": 0}, ValueError, r"AntGoal: radius must be a finite number > 0, got 0"),
    ("AntVel", {"horizon": 0}, ValueError, r"AntVel: horizon must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "match"), FAMILY_CASES,
                         ids=[f"{n}-{'-'.join(kw) or 'name'}" for n, kw, _, _ in FAMILY_CASES])
def test_make_family_refuses_bad_values(name: str, kwargs: dict[str, Any], error: type[Exception],
                                        match: str) -> None:
    with pytest.raises(error, match=match):
        make_family(name, **kwargs)


def test_good_values_still_pass() -> None:
    """The checks refuse only bad values: the defaults and the book's settings are accepted."""
    MAMLTRPOConfig()
    MAMLTRPOConfig(family="HalfCheetahDir", family_kwargs={"horizon": 100, "physics": "warp"}, num_workers=0)
    RL2Config()
    RL2Config(family="TabularMDP", family_kwargs={"num_states": 10, "num_actions": 5, "episode_length": 10},
              split="train", bptt=None, max_grad_norm=float("inf"))
    SinusoidConfig(method="reptile", inner_steps=5, hidden_sizes=[40, 40])
    assert make_family("HalfCheetahVel", velocity_range=(0.0, 3.0)).velocity_range == (0.0, 3.0)
