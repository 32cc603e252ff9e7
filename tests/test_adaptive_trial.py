"""PPO trials: config mapping and errors, checkpoint-restore-continue = uninterrupted run, exploit copies."""

from __future__ import annotations

import pytest
import torch

from meta_rl_lessons.adaptive.trial import (
    PPOTrial,
    Segment,
    exploit_state,
    load_checkpoint,
    ppo_config_from,
    run_segment,
    save_checkpoint,
    trainable_path,
)
from meta_rl_lessons.serialization import to_safe

torch.set_num_threads(1)

# observation and reward normalisation on, so their statistics must travel with the checkpoint too
BASE = {"num_envs": 2, "num_steps": 64, "minibatch_size": 64, "update_epochs": 2,
        "normalize_observations": True, "normalize_rewards": True}
PARAMS = {"n_layers": 2, "width_0": 16, "width_1": 8, "learning_rate": 3e-3, "gamma": 0.98}


def _tensors(obj, prefix=""):
    """Flatten nested dicts/lists of a state into ``{path: tensor}`` (numbers become tensors)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}.{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}[{i}]"))
    elif isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, (int, float)):
        out[prefix] = torch.tensor(obj, dtype=torch.float64)
    return out


def _assert_bitwise_equal(a, b):
    ta, tb = _tensors(to_safe(a)), _tensors(to_safe(b))  # NumPy arrays as tensors
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k


def test_config_mapping_and_errors():
    cfg = ppo_config_from(PARAMS, BASE)
    assert cfg.hidden_sizes == (16, 8) and cfg.learning_rate == 3e-3 and cfg.num_envs == 2
    assert ppo_config_from({"n_layers": 3, "width": 32}).hidden_sizes == (32, 32, 32)
    with pytest.raises(ValueError, match=r"missing \['width_1'\]"):
        ppo_config_from({"n_layers": 2, "width_0": 16})
    with pytest.raises(ValueError, match=r"unknown PPO hyperparameter\(s\) \['lr'\]"):
        ppo_config_from({"lr": 1e-3})
    with pytest.raises(ValueError, match="'width_2' is set but n_layers=2"):
        ppo_config_from({**PARAMS, "width_2": 4})
    with pytest.raises(ValueError, match="PPOConfig.gamma must lie in"):
        ppo_config_from({"gamma": 1.5})


def test_checkpoint_restore_continue_equals_uninterrupted_run(tmp_path):
    # 320 steps = 2.5 rollouts: the checkpoint falls mid-episode and mid-way through the trial's life
    uninterrupted = PPOTrial(PARAMS, seed=3, base=BASE)
    uninterrupted.train(640)
    uninterrupted.train(640)

    first = PPOTrial(PARAMS, seed=3, base=BASE)
    first.train(640)
    save_checkpoint(first.state_dict(), tmp_path / "ck.pt")
    # some unrelated torch randomness in between must not matter (a trial owns its generator)
    torch.rand(1000)
    resumed = PPOTrial.restore(tmp_path / "ck.pt")
    resumed.train(640)

    assert resumed.curve == uninterrupted.curve
    assert resumed.steps_done == uninterrupted.steps_done == 1280
    _assert_bitwise_equal(resumed.state_dict(), uninterrupted.state_dict())
    # and a different seed gives a different run (the comparison can fail)
    other = PPOTrial(PARAMS, seed=4, base=BASE)
    other.train(1280)
    assert other.curve != uninterrupted.curve


def test_checkpoint_is_weights_only_loadable(tmp_path):
    t = PPOTrial(PARAMS, seed=0, base=BASE)
    t.train(128)
    path = save_checkpoint(t.state_dict(), tmp_path / "c.pt")
    state = torch.load(path, weights_only=True)  # raises on anything but tensors and plain values
    assert set(state) >= {"learner", "rng", "env", "progress", "params"}


def test_exploit_copies_weights_and_optimizer_state_bit_for_bit(tmp_path):
    donor = PPOTrial({**PARAMS, "learning_rate": 1e-2}, seed=1, base=BASE)
    member = PPOTrial(PARAMS, seed=2, base=BASE)
    donor.train(256)
    member.train(128)
    d, m = donor.state_dict(), member.state_dict()
    save_checkpoint(exploit_state(m, d), tmp_path / "x.pt")
    # what a worker does next: rebuild the member from the exploited checkpoint, with explored params
    clone = PPOTrial.restore(tmp_path / "x.pt")
    c = clone.state_dict()
    _assert_bitwise_equal(c["learner"], d["learner"])  # weights, Adam moments and steps, normalisers
    _assert_bitwise_equal(c["env"], m["env"])  # the member keeps its own environments ...
    _assert_bitwise_equal(c["rng"], m["rng"])  # ... and random generator
    assert c["progress"]["steps_done"] == 128 and c["params"] == donor.params
    # the explore step changes the hyperparameters of the copy, including the optimizer's step size
    result = run_segment(Segment("m", trainable_path(PPOTrial), {**donor.params, "learning_rate": 5e-3},
                                 seed=2, steps=128, settings={"base": BASE}, restore=str(tmp_path / "x.pt"),
                                 save=str(tmp_path / "y.pt")))
    after = load_checkpoint(tmp_path / "y.pt")
    assert result.params["learning_rate"] == 5e-3
    assert after["learner"]["optimizer"]["param_groups"][0]["lr"] == 5e-3
    assert result.steps_done == 256 and result.steps_run == 128


def test_architecture_cannot_change_in_a_running_trial():
    t = PPOTrial(PARAMS, seed=0, base=BASE)
    with pytest.raises(ValueError, match="cannot change 'hidden_sizes'"):
        t.set_hyperparameters({"width_0": 32})
    t.set_hyperparameters({"clip_coef": 0.1, "learning_rate": 1e-4})
    assert t.learner.config.clip_coef == 0.1 and t.learner.optimizer.param_groups[0]["lr"] == 1e-4
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        t.train(0)


def test_mujoco_checkpoint_continues_mid_episode(tmp_path):
    # HalfCheetah's 1000-step episodes are all cut by the checkpoint: qpos/qvel/time must travel with it
    base = {"env_id": "HalfCheetah-v5", "num_envs": 2, "num_steps": 64, "minibatch_size": 64,
            "update_epochs": 1, "normalize_observations": True}
    params = {"n_layers": 1, "width": 16}
    uninterrupted = PPOTrial(params, seed=1, base=base)
    uninterrupted.train(256)
    uninterrupted.train(256)
    first = PPOTrial(params, seed=1, base=base)
    first.train(256)
    save_checkpoint(first.state_dict(), tmp_path / "m.pt")
    resumed = PPOTrial.restore(tmp_path / "m.pt")
    resumed.train(256)
    _assert_bitwise_equal(resumed.state_dict()["learner"], uninterrupted.state_dict()["learner"])
    _assert_bitwise_equal(resumed.state_dict()["env"], uninterrupted.state_dict()["env"])
