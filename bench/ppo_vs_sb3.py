"""PPO from meta_rl_lessons vs Stable-Baselines3's PPO: same hyper-parameters, budget, seeds and machine.

For every environment and seed, both implementations train in this one process, one after the other, with
the same number of environment steps and the same settings (networks 64x64 tanh with separate policy and
value networks, orthogonal initialisation, Adam eps 1e-5, linear learning-rate decay, advantage
normalisation per minibatch, gradient clipping, MSE value loss; observation and reward normalisation on
HalfCheetah). Torch uses one thread for both (small networks are fastest that way on a CPU).

Printed per environment: training throughput (environment steps per second of wall time, sampling and
updates included) and the final return (mean over 10 evaluation episodes with the deterministic policy, on
fixed evaluation seeds), for each implementation, and their ratio (ours / SB3), averaged over seeds. Both
implementations get an untimed warm-up run first, and the order alternates between seeds. On a shared
machine the wall-clock figures move with other load; the CPU-time figures (this process only) are steadier.

    .venv/bin/python bench/ppo_vs_sb3.py                     # defaults: a few minutes on 2 CPU cores
    .venv/bin/python bench/ppo_vs_sb3.py --steps 100000 --seeds 0 1 2 --envs CartPole-v1

Needs ``stable-baselines3`` (``pip install stable-baselines3``; the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from meta_rl_lessons.runs import cpu_model

# Hyper-parameters shared by both implementations, per environment (rl-baselines3-zoo's CartPole settings,
# with a constant clip range; CleanRL / SB3 MuJoCo defaults for HalfCheetah).
SETTINGS: dict[str, dict] = {
    "CartPole-v1": dict(num_envs=8, num_steps=32, minibatch_size=256, update_epochs=20, learning_rate=1e-3,
                        gamma=0.98, gae_lambda=0.8, clip_coef=0.2, entropy_coef=0.0, value_coef=0.5,
                        max_grad_norm=0.5, normalize=False, default_steps=50_000),
    "HalfCheetah-v5": dict(num_envs=1, num_steps=2048, minibatch_size=64, update_epochs=10,
                           learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_coef=0.2, entropy_coef=0.0,
                           value_coef=0.5, max_grad_norm=0.5, normalize=True, default_steps=40_960),
}
EVAL_EPISODES = 10


@dataclass
class Result:
    steps: int
    seconds: float
    """wall-clock seconds of training (construction, sampling, updates)"""
    cpu_seconds: float
    """CPU seconds of this process over the same span: less sensitive to other load on a shared machine"""
    final_return: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    @property
    def steps_per_cpu_second(self) -> float:
        return self.steps / self.cpu_seconds


def evaluate(env_id: str, act, episodes: int = EVAL_EPISODES) -> float:
    """Mean return of ``act(obs [1, obs_dim]) -> action [1, ...]`` over fixed-seed episodes."""
    env = gym.make(env_id)
    space = env.action_space
    total = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + ep)
        done, ret = False, 0.0
        while not done:
            action = act(obs[None])[0]
            if isinstance(space, gym.spaces.Box):
                action = np.clip(action, space.low, space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            ret += float(reward)
            done = terminated or truncated
        total.append(ret)
    env.close()
    return float(np.mean(total))


def run_ours(env_id: str, steps: int, seed: int) -> Result:
    from meta_rl_lessons.rl.ppo import PPO, PPOConfig

    s = SETTINGS[env_id]
    config = PPOConfig(
        env_id=env_id, num_envs=s["num_envs"], num_steps=s["num_steps"], total_steps=steps,
        learning_rate=s["learning_rate"], anneal_lr=True, gamma=s["gamma"], gae_lambda=s["gae_lambda"],
        update_epochs=s["update_epochs"], minibatch_size=s["minibatch_size"], clip_coef=s["clip_coef"],
        value_coef=s["value_coef"], entropy_coef=s["entropy_coef"], max_grad_norm=s["max_grad_norm"],
        normalize_observations=s["normalize"], normalize_rewards=s["normalize"], hidden_sizes=(64, 64),
        activation="tanh", seed=seed, device="cpu", progress=False,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    ppo = PPO(config)
    ppo.train()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    ppo.envs.close()
    final = evaluate(env_id, lambda o: ppo.act(o, deterministic=True))
    return Result(ppo.sampler.total_steps, seconds, cpu, final)


def run_sb3(env_id: str, steps: int, seed: int) -> Result:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    s = SETTINGS[env_id]
    t0, c0 = time.perf_counter(), time.process_time()
    venv = make_vec_env(env_id, n_envs=s["num_envs"], seed=seed)
    if s["normalize"]:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=s["gamma"])
    lr = s["learning_rate"]
    model = SB3PPO(
        "MlpPolicy", venv, learning_rate=lambda progress_remaining: progress_remaining * lr,
        n_steps=s["num_steps"], batch_size=s["minibatch_size"], n_epochs=s["update_epochs"], gamma=s["gamma"],
        gae_lambda=s["gae_lambda"], clip_range=s["clip_coef"], ent_coef=s["entropy_coef"],
        vf_coef=s["value_coef"], max_grad_norm=s["max_grad_norm"],
        policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh),
        seed=seed, device="cpu", verbose=0,
    )
    # SB3 rounds the budget up to whole rollouts; give it exactly the rollouts ours does
    rollout = s["num_envs"] * s["num_steps"]
    model.learn(total_timesteps=(steps // rollout) * rollout)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if s["normalize"]:
        venv.training = False

    def act(obs):
        o = venv.normalize_obs(obs) if s["normalize"] else obs
        return model.predict(o, deterministic=True)[0]

    final = evaluate(env_id, act)
    venv.close()
    return Result(int(model.num_timesteps), seconds, cpu, final)




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=None,
                        help="environment steps per run (default: 50000 CartPole, 40960 HalfCheetah)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    try:
        import stable_baselines3
    except ImportError:
        print("bench/ppo_vs_sb3.py needs Stable-Baselines3 as the reference: "
              ".venv/bin/pip install stable-baselines3   (or the package's `bench` extra)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    os.environ.setdefault("META_RL_PROGRESS", "0")
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__} "
          f"(1 thread); gymnasium {gym.__version__}; stable-baselines3 {stable_baselines3.__version__}")
    print(f"seeds: {args.seeds}; final return = mean of {EVAL_EPISODES} deterministic evaluation episodes\n")
    header = (f"{'environment':<16}{'seed':>5}{'steps':>8} | {'steps/s: ours':>14}{'SB3':>7}{'ratio':>7} | "
              f"{'steps/cpu-s: ours':>18}{'SB3':>7}{'ratio':>7} | {'return: ours':>13}{'SB3':>8}")
    for env_id in args.envs:
        steps = args.steps or SETTINGS[env_id]["default_steps"]
        # untimed warm-up of both (imports, first-call kernel set-up), so that neither pays it in a timed run
        warm = SETTINGS[env_id]["num_envs"] * SETTINGS[env_id]["num_steps"]
        run_ours(env_id, warm, 0)
        run_sb3(env_id, warm, 0)
        print(header)
        rows = []
        for i, seed in enumerate(args.seeds):
            if i % 2 == 0:  # alternate which runs first, so that slow drifts of the machine's load cancel
                ours, ref = run_ours(env_id, steps, seed), run_sb3(env_id, steps, seed)
            else:
                ref, ours = run_sb3(env_id, steps, seed), run_ours(env_id, steps, seed)
            rows.append((ours, ref))
            print(f"{env_id:<16}{seed:>5}{ours.steps:>8} | {ours.steps_per_second:>14.0f}"
                  f"{ref.steps_per_second:>7.0f}{ours.steps_per_second / ref.steps_per_second:>6.2f}x | "
                  f"{ours.steps_per_cpu_second:>18.0f}{ref.steps_per_cpu_second:>7.0f}"
                  f"{ours.steps_per_cpu_second / ref.steps_per_cpu_second:>6.2f}x | "
                  f"{ours.final_return:>13.1f}{ref.final_return:>8.1f}", flush=True)
        speed = np.mean([o.steps_per_second / r.steps_per_second for o, r in rows])
        cpu_speed = np.mean([o.steps_per_cpu_second / r.steps_per_cpu_second for o, r in rows])
        ours_ret = np.mean([o.final_return for o, _ in rows])
        ref_ret = np.mean([r.final_return for _, r in rows])
        ratio = f"{ours_ret / ref_ret:.2f}x" if ours_ret > 0 and ref_ret > 0 else "n/a (non-positive)"
        print(f"== {env_id}: speed ours/SB3 = {speed:.2f}x wall-clock, {cpu_speed:.2f}x CPU time (mean over "
              f"{len(rows)} seeds); final return ours {ours_ret:.1f} vs SB3 {ref_ret:.1f} (ratio {ratio}, "
              f"difference {ours_ret - ref_ret:+.1f})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
