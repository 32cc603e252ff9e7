"""Bad inputs to the public API of rl/ and the adaptive trials fail early, with a message a user can act on.

One table: each row calls the API with one wrong thing (a flag tensor of integers other than 0/1, a value
tensor of the wrong shape, a config field out of range, a state dict from another trainer, ...) and names the
exception and the message expected (``pytest.raises(..., match=...)``). Below it, the inputs that are *not*
errors any more: integer and float 0/1 flags give exactly the advantages of bool flags, and a sampler state
without its environments resumes with a warning.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from meta_rl_lessons.adaptive.trial import PPOTrial
from meta_rl_lessons.rl.advantages import (
    discounted_returns,
    episode_time_steps,
    gae,
    linear_baseline_features,
    normalize_advantages,
)
from meta_rl_lessons.rl.ppo import PPO, PPOConfig
from meta_rl_lessons.rl.reinforce import REINFORCE, REINFORCEConfig, reinforce_loss
from meta_rl_lessons.rl.trpo import TRPO, TRPOConfig

torch.set_num_threads(1)

T, B = 3, 4
R = torch.ones(T, B)
V = torch.zeros(T, B)
NO = torch.zeros(T, B, dtype=torch.bool)
TINY = dict(num_envs=2, hidden_sizes=(8,), device="cpu", progress=False)
TRIAL_BASE = {"num_envs": 2, "num_steps": 16, "minibatch_size": 16, "update_epochs": 1}


@functools.cache
def _ppo(**kw: Any) -> PPO:
    return PPO(PPOConfig(num_steps=16, minibatch_size=16, total_steps=64, **TINY, **kw))


@functools.cache
def _trpo() -> TRPO:
    return TRPO(TRPOConfig(env_id="CartPole-v1", episodes_per_iteration=2, iterations=2, **TINY))


@functools.cache
def _reinforce() -> REINFORCE:
    return REINFORCE(REINFORCEConfig(episodes_per_iteration=2, iterations=2, **TINY))


def _flags(*values: float, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    out = torch.zeros(T, B, dtype=dtype)
    out.view(-1)[:len(values)] = torch.tensor(values, dtype=dtype)
    return out


def _sampler_state(**change: Any) -> dict[str, Any]:
    return {**_ppo().sampler.state_dict(), **change}


def _ppo_state(**change: Any) -> dict[str, Any]:
    return {**_ppo().state_dict(), **change}


def _trial_train(steps: Any) -> None:
    PPOTrial({"n_layers": 1, "width": 8}, seed=0, base=TRIAL_BASE).train(steps)


def _trial_set(params: dict[str, Any]) -> None:
    PPOTrial({"n_layers": 1, "width": 8}, seed=0, base=TRIAL_BASE).set_hyperparameters(params)


CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # ---------------------------------------------------------------- tensors: flags, shapes
    ("gae-int-flags-not-0-1", lambda: gae(R, V, V, _flags(2, 1, -1), NO, 0.99, 0.95), ValueError,
     r"gae: terminated must be bool or 0/1 \(integer or float\), got values \[-1, 2\] \(dtype torch.int64\)"),
    ("gae-float-flags-not-0-1", lambda: gae(R, V, V, NO, _flags(0.5, dtype=torch.float32), 0.99, 0.95),
     ValueError, r"gae: truncated must be bool or 0/1 .*got values \[0.5\]"),
    ("gae-values-of-shape-B", lambda: gae(R, torch.zeros(B), V, NO, NO, 0.99, 0.95), ValueError,
     r"gae: values has shape \(4,\), expected \(3, 4\) \(the shape of rewards, \[T, \*B\]\); nothing is "
     r"broadcast"),
    ("gae-next-values-transposed", lambda: gae(R, V, torch.zeros(B, T), NO, NO, 0.99, 0.95), ValueError,
     r"gae: next_values has shape \(4, 3\), expected \(3, 4\)"),
    ("gae-flags-of-shape-B", lambda: gae(R, V, V, torch.zeros(B, dtype=torch.bool), NO, 0.99, 0.95),
     ValueError, r"gae: terminated has shape \(4,\), expected \(3, 4\)"),
    ("gae-mask-shape", lambda: gae(R, V, V, NO, NO, 0.99, 0.95, torch.ones(T, 1)), ValueError,
     r"gae: mask has shape \(3, 1\), expected \(3, 4\)"),
    ("gae-lambda-out-of-range", lambda: gae(R, V, V, NO, NO, 0.99, 1.5), ValueError,
     r"GAE lambda must lie in \[0, 1\], got 1.5"),
    ("gae-values-not-a-tensor", lambda: gae(R, 0.0, V, NO, NO, 0.99, 0.95), ValueError,
     r"gae: values must be a torch.Tensor, got float"),
    ("returns-int-rewards", lambda: discounted_returns(torch.ones(T, B, dtype=torch.long), 0.99), ValueError,
     r"discounted_returns: rewards must be a floating-point tensor \[T, \*B\].*dtype torch.int64"),
    ("returns-flags-not-0-1", lambda: discounted_returns(R, 0.99, _flags(3)), ValueError,
     r"discounted_returns: terminated must be bool or 0/1.*values \[3\]"),
    ("returns-next-values-shape", lambda: discounted_returns(R, 0.99, NO, NO, None, torch.zeros(T)),
     ValueError, r"discounted_returns: next_values has shape \(3,\), expected \(3, 4\)"),
    ("returns-gamma-nan", lambda: discounted_returns(R, math.nan), ValueError,
     r"discount gamma must lie in \[0, 1\], got nan"),
    ("normalize-mask-shape", lambda: normalize_advantages(V, torch.ones(T)), ValueError,
     r"normalize_advantages: mask has shape \(3,\), expected \(3, 4\) \(the shape of advantages"),
    ("time-steps-flags-not-0-1", lambda: episode_time_steps(_flags(0, 5), NO), ValueError,
     r"episode_time_steps: terminated must be bool or 0/1.*values \[5\]"),
    ("baseline-features-time-shape", lambda: linear_baseline_features(torch.zeros(T, B, 2), torch.zeros(T)),
     ValueError, r"linear_baseline_features: time_steps has shape \(3,\), expected \(3, 4\)"),
    ("reinforce-loss-shapes", lambda: reinforce_loss(V, torch.zeros(T), V), ValueError,
     r"reinforce_loss needs equal shapes \[T, \*B\]; got log_probs \(3, 4\), weights \(3,\)"),
    # ---------------------------------------------------------------- configs
    ("ppo-gamma-zero", lambda: PPOConfig(gamma=0.0), ValueError,
     r"PPOConfig.gamma must lie in \(0, 1\], got 0.0"),
    ("ppo-gamma-nan", lambda: PPOConfig(gamma=math.nan), ValueError,
     r"PPOConfig.gamma must lie in \(0, 1\], got nan"),
    ("ppo-minibatch-larger-than-rollout", lambda: PPOConfig(num_envs=2, num_steps=8, minibatch_size=32),
     ValueError, r"PPOConfig.minibatch_size=32 exceeds the rollout: num_envs \* num_steps = 16"),
    ("ppo-minibatch-not-dividing", lambda: PPOConfig(num_envs=2, num_steps=8, minibatch_size=5), ValueError,
     r"PPOConfig.minibatch_size=5 must divide num_envs \* num_steps = 16"),
    ("ppo-zero-envs", lambda: PPOConfig(num_envs=0), ValueError,
     r"PPOConfig.num_envs must be a positive integer, got 0"),
    ("ppo-bool-steps", lambda: PPOConfig(num_steps=True), ValueError,
     r"PPOConfig.num_steps must be a positive integer, got True"),
    ("ppo-unknown-activation", lambda: PPOConfig(activation="gelu"), ValueError,
     r"PPOConfig.activation must be one of 'relu', 'tanh', got 'gelu'"),
    ("ppo-zero-width", lambda: PPOConfig(hidden_sizes=(64, 0)), ValueError,
     r"PPOConfig.hidden_sizes must be a sequence of positive integers \(layer widths\), got \(64, 0\)"),
    ("ppo-negative-entropy", lambda: PPOConfig(entropy_coef=-0.1), ValueError,
     r"PPOConfig.entropy_coef must be a finite number >= 0, got -0.1"),
    ("ppo-nan-learning-rate", lambda: PPOConfig(learning_rate=math.nan), ValueError,
     r"PPOConfig.learning_rate must be a finite number > 0, got nan"),
    ("ppo-string-flag", lambda: PPOConfig(anneal_lr="no"), ValueError,
     r"PPOConfig.anneal_lr must be True or False, got 'no'"),
    ("ppo-negative-seed", lambda: PPOConfig(seed=-1), ValueError,
     r"PPOConfig.seed must be a non-negative integer, got -1"),
    ("ppo-unknown-device", lambda: PPOConfig(device="tpu"), ValueError,
     r"PPOConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    ("ppo-empty-env-id", lambda: PPOConfig(env_id=""), ValueError,
     r"PPOConfig.env_id must be a gymnasium id"),
    ("ppo-warp-on-cartpole", lambda: PPOConfig(physics="warp"), ValueError,
     r"physics='warp' needs a MetaRL locomotion env id, got 'CartPole-v1'"),
    ("trpo-zero-subsample", lambda: TRPOConfig(fvp_subsample=0.0), ValueError,
     r"TRPOConfig.fvp_subsample must lie in \(0, 1\], got 0.0"),
    ("trpo-accept-ratio-one", lambda: TRPOConfig(accept_ratio=1.0), ValueError,
     r"TRPOConfig.accept_ratio must lie in \[0, 1\), got 1.0"),
    ("trpo-unknown-baseline", lambda: TRPOConfig(baseline="critic"), ValueError,
     r"TRPOConfig.baseline must be one of 'value', 'linear', 'none', got 'critic'"),
    ("trpo-zero-episode-limit", lambda: TRPOConfig(max_episode_steps=0), ValueError,
     r"TRPOConfig.max_episode_steps must be a positive integer, got 0"),
    ("reinforce-zero-grad-norm", lambda: REINFORCEConfig(max_grad_norm=0.0), ValueError,
     r"REINFORCEConfig.max_grad_norm must be a number > 0 \(inf: none\), got 0.0"),
    ("reinforce-lambda-above-one", lambda: REINFORCEConfig(gae_lambda=1.5), ValueError,
     r"REINFORCEConfig.gae_lambda must lie in \[0, 1\], got 1.5"),
    # ---------------------------------------------------------------- adaptive trials
    ("trial-unknown-hyperparameter", lambda: PPOTrial({"lr": 1e-3}), ValueError,
     r"unknown PPO hyperparameter\(s\) \['lr'\]"),
    ("trial-params-not-a-mapping", lambda: PPOTrial([("gamma", 0.9)]), ValueError,
     r"PPOTrial params must be a mapping of hyperparameters, got list"),
    ("trial-zero-score-window", lambda: PPOTrial({}, score_episodes=0), ValueError,
     r"PPOTrial score_episodes must be a positive integer, got 0"),
    ("trial-negative-seed", lambda: PPOTrial({}, seed=-3), ValueError,
     r"PPOTrial seed must be a non-negative integer, got -3"),
    ("trial-bad-gamma", lambda: PPOTrial({"gamma": 1.2}), ValueError,
     r"PPOConfig.gamma must lie in \(0, 1\]"),
    ("trial-zero-steps", lambda: _trial_train(0), ValueError,
     r"steps must be a positive integer \(environment steps\), got 0"),
    ("trial-architecture-change", lambda: _trial_set({"width": 16}), ValueError,
     r"cannot change 'hidden_sizes' of a running PPO trial \(\(8,\) -> \(16,\)\)"),
    # ---------------------------------------------------------------- states
    ("sampler-state-missing-entries", lambda: _ppo().sampler.load_state_dict({"obs": None}), ValueError,
     r"VectorSampler.load_state_dict needs the entries \['num_envs', 'obs', .*got \['obs'\]"),
    ("sampler-state-other-num-envs", lambda: _ppo().sampler.load_state_dict(_sampler_state(num_envs=3)),
     ValueError, r"VectorSampler state is for 3 sub-environments, this sampler has 2"),
    ("sampler-state-obs-shape", lambda: _ppo().sampler.load_state_dict(_sampler_state(obs=torch.zeros(2, 3))),
     ValueError, r"VectorSampler state: obs has shape \(2, 3\), expected \(2, 4\) \(\[num_envs, obs_dim\]\)"),
    ("sampler-state-ep-return-shape",
     lambda: _ppo().sampler.load_state_dict(_sampler_state(ep_return=torch.zeros(3, dtype=torch.float64))),
     ValueError, r"VectorSampler state: ep_return has shape \(3,\), expected \(2,\) \(\[num_envs\]\)"),
    ("sampler-state-normaliser-mismatch",
     lambda: _ppo().sampler.load_state_dict(_sampler_state(obs_normalizer_training=True)), ValueError,
     r"VectorSampler state: it has an observation normaliser, this sampler has none"),
    ("ppo-state-from-another-config", lambda: _ppo(gamma=0.9).load_state_dict(_ppo().state_dict()),
     ValueError,
     r"PPO.load_state_dict: the state was saved with a different PPOConfig \(gamma: 0.99 in the state, 0.9 "
     r"here\); build the PPO from the state's config"),
    ("ppo-state-not-a-dict", lambda: _ppo().load_state_dict([1, 2]), ValueError,
     r"PPO.load_state_dict needs the dict PPO.state_dict\(\) returned, got a list"),
    ("ppo-state-missing-sampler", lambda: _ppo().load_state_dict({k: v for k, v in _ppo_state().items()
                                                                  if k != "sampler"}), ValueError,
     r"PPO.load_state_dict: the state has no \['sampler'\]"),
    ("ppo-state-discounted-shape",
     lambda: _ppo().load_state_dict(_ppo_state(discounted=torch.zeros(5, dtype=torch.float64))), ValueError,
     r"PPO.load_state_dict: discounted has shape \(5,\), expected \(2,\) \(\[num_envs\]\)"),
    ("trpo-state-from-ppo", lambda: _trpo().load_state_dict(_ppo().state_dict()), ValueError,
     r"TRPO.load_state_dict: the state has no \['baseline'\]"),
    ("reinforce-state-from-trpo",
     lambda: _reinforce().load_state_dict({**_trpo().state_dict(), "optimizer": {}}), ValueError,
     r"REINFORCE.load_state_dict: the state was saved with a different REINFORCEConfig "
     r"\(.*baseline: 'value' in the state, 'none' here"),
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_message_naming_it(call: Callable[[], Any], error: type[Exception],
                                                       match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_the_table_is_large_enough_and_its_names_unique() -> None:
    names = [c[0] for c in CASES]
    assert len(names) >= 20 and len(set(names)) == len(names)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.float32])
def test_gae_and_returns_accept_0_1_flags_of_any_dtype(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    rewards, values, next_values = (torch.randn(6, 3, generator=gen) for _ in range(3))
    term = torch.rand(6, 3, generator=gen) < 0.3
    trunc = (torch.rand(6, 3, generator=gen) < 0.2) & ~term
    want = gae(rewards, values, next_values, term, trunc, 0.9, 0.8)
    got = gae(rewards, values, next_values, term.to(dtype), trunc.to(dtype), 0.9, 0.8)
    assert all(torch.equal(w, g) for w, g in zip(want, got, strict=True))
    assert torch.equal(discounted_returns(rewards, 0.9, term, trunc, None, next_values),
                       discounted_returns(rewards, 0.9, term.to(dtype), trunc.to(dtype), None, next_values))


def test_sampler_state_without_environments_warns_and_restarts_the_episodes() -> None:
    a, b = _ppo(seed=11), _ppo(seed=12)
    a.sampler.collect_steps(5)
    state = {**a.sampler.state_dict(), "envs": None, "inexact": "cannot checkpoint the state of MyEnv"}
    with pytest.warns(RuntimeWarning, match=r"resuming the sampler is not exact: cannot checkpoint the state "
                                            r"of MyEnv; the episodes that were running start again"):
        b.sampler.load_state_dict(state)
    assert b.sampler.total_steps == a.sampler.total_steps == 10
    batch = b.sampler.collect_steps(2)  # restarts from a reset
    assert batch.observations.shape == (2, 2, 4)
