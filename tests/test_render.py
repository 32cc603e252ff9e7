"""meta_rl_lessons.render: episodes rendered at the requested steps, actions from the right parameters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch

from meta_rl_lessons.render import frame_strip, info_title, policy_actor, render_episode
from meta_rl_lessons.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy


class CountingEnv(gym.Env):
    """1-D position; the frame encodes the step count, so a test can tell which step a frame came from."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, horizon: int = 10, terminate_at: float = np.inf) -> None:
        self.render_mode = "rgb_array"
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.horizon, self.terminate_at = horizon, terminate_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.t += 1
        self.x += float(action[0])
        return (np.array([self.x], np.float32), float(action[0]), self.x >= self.terminate_at,
                self.t >= self.horizon, {"x_position": self.x})

    def render(self):
        return np.full((2, 3, 3), self.t, dtype=np.uint8)


def test_frames_at_requested_steps_actions_clipped_and_info_logged():
    env = CountingEnv(horizon=10)
    ep = render_episode(env, lambda obs: np.array([5.0]), frame_steps=[0, 3, 10], info_keys=["x_position"],
                        max_steps=10)
    assert ep.frame_steps == [0, 3, 10]
    assert [int(f[0, 0, 0]) for f in ep.frames] == [0, 3, 10]  # the frame after each requested step
    np.testing.assert_allclose(ep.rewards, np.ones(10))  # 5.0 clipped to the action space's high = 1
    np.testing.assert_allclose(ep.info["x_position"], np.arange(1, 11))
    assert ep.total_reward == 10.0 and not ep.terminated
    title = info_title("x_position", "x", "m")
    assert [title(ep, c) for c in range(3)] == ["step 0", "step 3, x = 3.0 m", "step 10, x = 10.0 m"]


def test_episode_stops_at_termination_and_skips_later_frames():
    env = CountingEnv(horizon=10, terminate_at=4.0)
    ep = render_episode(env, lambda obs: np.array([1.0]), frame_steps=[2, 8], max_steps=10)
    assert ep.terminated and len(ep.rewards) == 4
    assert ep.frame_steps == [2]


@pytest.mark.parametrize("bad", [[], [3, 1], [-1, 2]])
def test_bad_frame_steps_are_rejected(bad):
    with pytest.raises(ValueError, match="frame_steps"):
        render_episode(CountingEnv(), lambda obs: np.zeros(1), frame_steps=bad)


def test_env_without_rgb_array_is_rejected():
    env = CountingEnv()
    env.render_mode = None
    with pytest.raises(ValueError, match="rgb_array"):
        render_episode(env, lambda obs: np.zeros(1), frame_steps=[1])


def test_policy_actor_uses_the_given_parameters():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(3, 2, (8,), "tanh", 0.0)
    obs = np.array([0.1, -0.2, 0.3], np.float32)
    own = policy_actor(policy)(obs)
    np.testing.assert_allclose(own, policy(torch.as_tensor(obs)[None]).mean[0].detach().numpy(), rtol=1e-6)
    shifted = {k: v.detach() + 1.0 for k, v in policy.named_parameters()}
    other = policy_actor(policy, shifted)(obs)
    np.testing.assert_allclose(other, policy(torch.as_tensor(obs)[None], shifted).mean[0].numpy(), rtol=1e-6)
    assert not np.allclose(own, other)
    # sampling: seeded, so repeatable, and not the mean
    a1 = policy_actor(policy, deterministic=False, seed=3)(obs)
    a2 = policy_actor(policy, deterministic=False, seed=3)(obs)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, own)


def test_policy_actor_categorical_takes_the_mode():
    policy = CategoricalMLPPolicy(2, 4, (8,), "tanh")
    obs = np.array([0.5, -1.0], np.float32)
    logits = policy(torch.as_tensor(obs)[None]).logits[0]
    assert int(policy_actor(policy)(obs)) == int(logits.argmax())


def test_frame_strip_lays_out_one_row_per_episode():
    import matplotlib

    matplotlib.use("Agg")
    env = CountingEnv()
    rows = {name: render_episode(env, lambda obs: np.zeros(1), frame_steps=[1, 2, 3]) for name in "ab"}
    fig = frame_strip(rows)
    assert len(fig.axes) == 6
    with pytest.raises(ValueError):
        frame_strip({})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="offscreen OSMesa is set up on Linux")
def test_real_mujoco_frames_change_as_the_cheetah_moves():
    # A fresh process: MUJOCO_GL must be chosen before mujoco is imported.
    code = textwrap.dedent("""
        from meta_rl_lessons.render import configure_offscreen, render_episode
        configure_offscreen()
        import gymnasium as gym, numpy as np
        import meta_rl_lessons.envs as envs
        env = gym.make("MetaRL/HalfCheetahDir-v0", render_mode="rgb_array", width=64, height=48)
        env.unwrapped.set_task(envs.DirectionTask(1))
        ep = render_episode(env, lambda obs: np.ones(6), frame_steps=[0, 20], info_keys=["x_position"])
        assert ep.frames[0].shape == (48, 64, 3), ep.frames[0].shape
        assert np.abs(ep.frames[0].astype(int) - ep.frames[1]).mean() > 1.0
        print("ok", len(ep.rewards))
    """)
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok 20")
