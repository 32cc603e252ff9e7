"""The InvertedPendulum search space of chapter 4's MuJoCo comparison: it validates, samples configurations
PPO accepts, PBT's explore leaves the build-time dimensions alone, and a tiny trial on the task runs,
checkpoints mid-episode and continues exactly as the uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meta_rl_lessons.adaptive import INVERTED_PENDULUM_BASE, PPOTrial, inverted_pendulum_space
from meta_rl_lessons.adaptive.inverted_pendulum import HYPERPARAMETER_KEYS, architecture
from meta_rl_lessons.adaptive.trial import (
    MUTABLE_PPO_KEYS,
    Segment,
    load_checkpoint,
    ppo_config_from,
    run_segment,
    save_checkpoint,
    trainable_path,
)

pytest.importorskip("mujoco")
torch.set_num_threads(1)

# the chapter's PPO settings, shrunk to a test: 2 environments x 64 steps per rollout
BASE = {**INVERTED_PENDULUM_BASE, "num_envs": 2, "num_steps": 64, "minibatch_size": 64, "update_epochs": 1}
PARAMS = {"n_layers": 2, "width_0": 16, "width_1": 8, "activation": "tanh", "init_log_std": -0.5,
          "learning_rate": 3e-3, "gamma": 0.99, "gae_lambda": 0.95, "clip_coef": 0.2, "entropy_coef": 1e-4,
          "update_epochs": 2}


def test_space_samples_valid_ppo_configs():
    space = inverted_pendulum_space()
    assert INVERTED_PENDULUM_BASE["env_id"] == "InvertedPendulum-v5"
    rng = np.random.default_rng(0)
    depths = set()
    for _ in range(50):
        config = space.sample(rng)
        assert space.validate(config) == config
        cfg = ppo_config_from(config, INVERTED_PENDULUM_BASE)
        assert len(cfg.hidden_sizes) == config["n_layers"]
        assert cfg.init_log_std in (-1.0, -0.5, 0.0) and 1e-4 <= cfg.learning_rate <= 1e-2
        assert 1e-6 <= cfg.entropy_coef <= 1e-2
        depths.add(config["n_layers"])
    assert depths == {1, 2, 3}
    assert space.validate(PARAMS) == PARAMS
    assert architecture(PARAMS) == "2x[16, 8] tanh"
    with pytest.raises(ValueError, match=r"must be one of \[-1.0, -0.5, 0.0\]"):
        space.validate({**PARAMS, "init_log_std": 1.0})
    with pytest.raises(ValueError, match="inactive"):
        space.validate({**PARAMS, "width_2": 8})
    with pytest.raises(ValueError, match="max_layers must be 1, 2 or 3"):
        inverted_pendulum_space(4)
    assert [d.name for d in inverted_pendulum_space(1).dimensions][:2] == ["n_layers", "width_0"]


def test_explore_changes_only_hyperparameters_a_running_trial_may_change():
    space = inverted_pendulum_space()
    assert set(HYPERPARAMETER_KEYS) <= set(MUTABLE_PPO_KEYS) and set(HYPERPARAMETER_KEYS) <= set(space.names)
    assert "init_log_std" not in HYPERPARAMETER_KEYS  # fixed when the policy is built, like the architecture
    rng = np.random.default_rng(1)
    for _ in range(20):
        new = space.perturb(PARAMS, rng, keys=HYPERPARAMETER_KEYS, resample_probability=0.5)
        assert space.validate(new) == new
        assert {k: new[k] for k in new if k not in HYPERPARAMETER_KEYS} == {
            k: PARAMS[k] for k in PARAMS if k not in HYPERPARAMETER_KEYS}


def test_tiny_trial_runs_and_continues_from_a_checkpoint(tmp_path):
    # 256 steps per segment: the checkpoint falls in the middle of the running episodes
    uninterrupted = PPOTrial(PARAMS, seed=5, base=BASE)
    # a Gaussian policy, built with the searched initial noise
    assert torch.all(uninterrupted.learner.policy.net.log_std == -0.5)
    uninterrupted.train(256)
    uninterrupted.train(256)
    assert uninterrupted.steps_done == 512 and np.isfinite(uninterrupted.score())

    # the path every search takes: a segment that saves, then a segment that restores and continues
    first = run_segment(Segment("ip-0", trainable_path(PPOTrial), PARAMS, seed=5, steps=256,
                                settings={"base": BASE}, save=str(tmp_path / "a.pt")))
    torch.rand(100)  # unrelated randomness in between must not matter
    second = run_segment(Segment("ip-1", trainable_path(PPOTrial), PARAMS, seed=5, steps=256,
                                 settings={"base": BASE}, restore=first.checkpoint,
                                 save=str(tmp_path / "b.pt")))
    assert second.steps_done == 512 and second.steps_run == 256
    assert first.curve + second.curve == uninterrupted.curve
    assert second.score == uninterrupted.score()
    resumed = load_checkpoint(tmp_path / "b.pt")
    expected = uninterrupted.state_dict()
    for part in ("learner", "env"):
        save_checkpoint({part: expected[part]}, tmp_path / "e.pt")  # same tensor form as a checkpoint
        _assert_equal(resumed[part], load_checkpoint(tmp_path / "e.pt")[part], part)


def _assert_equal(a, b, path):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert a == b, path
