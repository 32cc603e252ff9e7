"""Sampler speed, side by side with the physics limit measured in the same run.

Prints, in env-steps per second:

1. the MuJoCo physics limit: raw ``mujoco.mj_step`` on one ``MjData`` (C loop, no Python per step),
   divided by the frame skip, run in as many processes at once as the cores a sampler uses, their rates
   summed (measured, not one core's rate times the cores: two processes on two cores share caches and
   memory bandwidth, and reach less than twice one core's rate); the limit is measured before the other
   figures and again after each sampler run (their mean is used), and the load average is printed, because
   a shared machine makes every figure move; env-steps per CPU-second (all threads and worker processes
   counted), which load disturbs much less, are printed too;
2. gymnasium's own vector envs (``SyncVectorEnv`` and ``AsyncVectorEnv``) with a random policy;
3. this package's ``MetaBatchSampler`` with a 64x64 tanh ``GaussianMLPPolicy`` in the loop (one batched
   policy call per step), stepping in-process (1 or 2 threads) or in 2 worker processes (the plain loop,
   and pipelined: one half of the episodes stepping while the policy runs on the other, the default), as
   env-steps/s and as a fraction of the limit for the same number of cores;
4. the batched pure-torch bandit and 2D navigation envs;
5. the MuJoCo Warp backend (``physics="warp"``) with the same policy in the loop: on the CPU always (a few
   worlds: the CPU path is for tests, not speed), and on each CUDA device at 1,024, 4,096 and 16,384 worlds
   when there is one (the first call compiles Warp's kernels, cached in ``~/.cache/warp``; the CUDA graph
   is captured when the sampler is built, outside the timing).

Usage: ``python bench/sampler.py [--quick] [--warp-only]`` (``--quick`` shrinks every batch for a fast
check; ``--warp-only`` prints only the Warp rows, as ``bench/gpu_check.sh`` does on a lent GPU).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time

import gymnasium as gym
import mujoco
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

import meta_rl_lessons.envs as envs
from meta_rl_lessons.memory import keep_freed_memory
from meta_rl_lessons.rl.policies import GaussianMLPPolicy


def physics_rate(name: str, seconds: float = 1.5, clock=time.perf_counter) -> float:
    """Env-steps/s of raw ``mj_step`` on one core for family ``name`` (``clock=time.process_time``: per
    CPU-second, which a busy machine disturbs much less than wall time)."""
    env = envs.make_family(name).make_env()
    env.reset(seed=0)
    m, fs = env.model, env.frame_skip
    d = mujoco.MjData(m)
    rng = np.random.default_rng(0)
    steps, spent = 0, 0.0
    while spent < seconds:
        mujoco.mj_resetData(m, d)
        d.qpos[:] = env.init_qpos + rng.uniform(-0.1, 0.1, m.nq)
        d.ctrl[:] = rng.uniform(-1, 1, m.nu)
        t = clock()
        mujoco.mj_step(m, d, nstep=500)
        spent += clock() - t
        steps += 500
    return steps / spent / fs


def physics_limit(name: str, cores: int, seconds: float = 1.5) -> float:
    """Env-steps/s of raw ``mj_step`` in ``cores`` processes running at the same time, summed: the physics
    limit of a sampler that uses that many cores."""
    if cores <= 1:
        return physics_rate(name, seconds)
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        return float(sum(pool.starmap(physics_rate, [(name, seconds)] * cores)))


def gym_vector_rate(env_id: str, num_envs: int, mode: str, steps: int) -> float:
    vec = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode,
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    vec.reset(seed=0)
    vec.action_space.seed(0)
    actions = [vec.action_space.sample() for _ in range(16)]
    vec.step(actions[0])
    t = time.perf_counter()
    for i in range(steps):
        vec.step(actions[i % 16])
    rate = steps * num_envs / (time.perf_counter() - t)
    vec.close()
    return rate


def sampler_rate(name: str, num_tasks: int, num_episodes: int, horizon: int, workers: int, threads: int,
                 repeats: int = 2, pipelined: bool = True) -> tuple[float, float, float, float]:
    """``(env-steps/s, seconds per meta-batch, start-up seconds, env-steps per CPU-second)`` of
    ``MetaBatchSampler`` (best of ``repeats``); ``pipelined=False``: the plain loop even with workers."""
    fam = envs.make_family(name, horizon=horizon)
    start = time.perf_counter()
    sampler = envs.MetaBatchSampler(fam, num_tasks, num_episodes, seed=0, num_workers=workers,
                                    num_threads=threads)
    startup = time.perf_counter() - start
    sampler.env.pipelines = sampler.env.pipelines and pipelined
    obs_dim, act_dim = sampler.env.observation_shape[0], sampler.env.action_dim
    policy = GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes=(64, 64), activation="tanh")
    tasks = fam.sample_tasks(num_tasks, 0)
    sampler.sample(tasks, policy, max_steps=5)  # warm-up
    best, best_dt, best_cpu = 0.0, 0.0, 0.0
    for _ in range(repeats):
        t, c, w = time.perf_counter(), time.process_time(), sampler.env.worker_cpu_seconds()
        batch = sampler.sample(tasks, policy)
        dt = time.perf_counter() - t
        cpu = time.process_time() - c + sampler.env.worker_cpu_seconds() - w
        if batch.num_steps / dt > best:
            best, best_dt = batch.num_steps / dt, dt
        best_cpu = max(best_cpu, batch.num_steps / cpu)
    sampler.close()
    return best, best_dt, startup, best_cpu


def warp_rate(name: str, num_tasks: int, num_episodes: int, horizon: int, device: str,
              repeats: int = 2) -> tuple[float, float, float]:
    """``(env-steps/s, seconds per meta-batch, start-up seconds)`` of ``MetaBatchSampler`` on MuJoCo Warp
    with a 64x64 tanh policy on ``device`` (best of ``repeats``; CUDA synchronised around each timing)."""
    fam = envs.make_family(name, horizon=horizon, physics="warp")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    start = time.perf_counter()
    sampler = envs.MetaBatchSampler(fam, num_tasks, num_episodes, seed=0, device=device)
    startup = time.perf_counter() - start
    obs_dim, act_dim = sampler.env.observation_shape[0], sampler.env.action_dim
    policy = GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes=(64, 64), activation="tanh").to(device)
    tasks = fam.sample_tasks(num_tasks, 0)
    sampler.sample(tasks, policy, max_steps=3)  # warm-up (kernels loaded, allocator warm)
    best, best_dt = 0.0, 0.0
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        batch = sampler.sample(tasks, policy)
        sync()
        dt = time.perf_counter() - t
        if batch.num_steps / dt > best:
            best, best_dt = batch.num_steps / dt, dt
    sampler.close()
    return best, best_dt, startup


def warp_rows(quick: bool) -> None:
    """Print the MuJoCo Warp rows (CPU always; each CUDA device when present)."""
    if not envs.warp_available():
        from meta_rl_lessons.envs.warp_batched import WARP_MISSING

        print(f"\n== MuJoCo Warp: not installed here ({WARP_MISSING})")
        return
    import warp

    for device in envs.warp_devices():
        if device == "cpu":
            sizes = [(2, 4, 10 if quick else 20)]  # the CPU path is for tests: a few worlds
            where = f"CPU ({os.cpu_count()} cores)"
        else:
            sizes = [(n // 16, 16, 20 if quick else 200) for n in (1024, 4096, 16384)]
            where = f"{device}: {torch.cuda.get_device_name(device)}"
        print(f"\n== MuJoCo Warp {warp.__version__} on {where}, MetaBatchSampler + 64x64 MLP policy "
              "on the device")
        for name in ("HalfCheetahVel", "AntDir"):
            for K, E, H in sizes:
                rate, dt, startup = warp_rate(name, K, E, H, device, repeats=1 if quick else 2)
                print(f"{name:14s} {K * E:6,d} worlds ({K} tasks x {E} episodes x {H} steps): {rate:12,.0f} "
                      f"env-steps/s ({dt:.2f} s per meta-batch; start-up {startup:.1f} s)")


def torch_env_rate(family, num_tasks: int, num_envs: int, steps: int) -> float:
    env = family.make_batched(num_tasks, num_envs, seed=0)
    env.set_tasks(family.sample_tasks(num_tasks, 0))
    env.reset()
    if env.discrete:
        actions = torch.randint(0, env.num_actions, (num_tasks, num_envs))
    else:
        actions = torch.rand(num_tasks, num_envs, env.action_dim) * 0.2 - 0.1
    env.step(actions)
    t = time.perf_counter()
    for _ in range(steps):
        env.step(actions)
    return steps * num_tasks * num_envs / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, for a fast check")
    parser.add_argument("--warp-only", action="store_true", help="only the MuJoCo Warp rows")
    args = parser.parse_args()
    keep_freed_memory()  # as the command line does (meta_rl_lessons.memory)
    q = args.quick
    cores = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), mujoco {mujoco.__version__}, gymnasium {gym.__version__}")
    print("load average before: {:.2f} {:.2f} {:.2f} (figures are only comparable on an idle machine)".format(
        *os.getloadavg()))
    if args.warp_only:
        warp_rows(q)
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        return

    for name, (K, E, H) in [("HalfCheetahVel", (40, 20, 100)), ("AntDir", (20, 20, 100))]:
        if q:
            K, E, H = 4, 5, 50
        one_core = physics_rate(name)
        per_cpu = physics_rate(name, clock=time.process_time)
        two = min(2, cores)
        limits = {1: one_core, two: physics_limit(name, two)}
        print(f"\n== {name}  (meta-batch {K} tasks x {E} episodes x horizon {H})")
        print(f"physics limit, raw mj_step / frame skip: {one_core:10,.0f} env-steps/s on one core "
              f"({per_cpu:,.0f} per CPU-second)")
        if two > 1:
            print(f"physics limit, {two} raw processes at once: {limits[two]:10,.0f} env-steps/s "
                  f"= {limits[two] / (two * one_core):.0%} of {two} x one core")
        gid = envs.make_family(name).env_id
        n_sync = 8 if q else 40
        r = gym_vector_rate(gid, n_sync, "sync", 20 if q else 100)
        print(f"gymnasium SyncVectorEnv  ({n_sync:3d} envs, random actions): {r:10,.0f} env-steps/s "
              f"= {r / one_core:5.1%} of the 1-core limit")
        n_async = 2 if q else 8
        r = gym_vector_rate(gid, n_async, "async", 20 if q else 200)
        print(f"gymnasium AsyncVectorEnv ({n_async:3d} procs, random actions): {r:10,.0f} env-steps/s "
              f"= {r / limits[two]:5.1%} of the {two}-core limit")
        for label, workers, threads, used, pipe in [("in-process, 1 thread  ", 0, 1, 1, True),
                                                    (f"in-process, {two} threads ", 0, two, two, True),
                                                    (f"{two} workers, plain loop", two, 1, two, False),
                                                    (f"{two} workers, pipelined ", two, 1, two, True)]:
            rate, dt, startup, cpu_rate = sampler_rate(name, K, E, H, workers, threads, 1 if q else 2, pipe)
            # re-measured after the run (the machine may be shared): the mean of before and after
            limit = (limits[used] + physics_limit(name, used, 1.0)) / 2
            print(f"MetaBatchSampler + MLP policy, {label}: {rate:10,.0f} env-steps/s "
                  f"= {rate / limit:5.1%} of the {used}-core limit "
                  f"({dt:.2f} s per meta-batch; start-up {startup:.1f} s); "
                  f"{cpu_rate:,.0f} per CPU-second = {cpu_rate / per_cpu:.0%} of raw physics")

    print("\n== batched pure-torch envs (CPU)")
    K, E = (100, 100) if q else (1000, 1000)
    r = torch_env_rate(envs.BernoulliBanditFamily(), K, E, 20)
    print(f"BernoulliBandit  {K}x{E} copies: {r:14,.0f} env-steps/s")
    r = torch_env_rate(envs.TabularMDPFamily(), K, E, 20)
    print(f"TabularMDP       {K}x{E} copies: {r:14,.0f} env-steps/s")
    r = torch_env_rate(envs.Navigation2DFamily(), K, E, 20)
    print(f"Navigation2D     {K}x{E} copies: {r:14,.0f} env-steps/s")
    fam = envs.Navigation2DFamily()
    sampler = envs.MetaBatchSampler(fam, 20, 20, seed=0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(64, 64), activation="tanh")
    tasks = fam.sample_tasks(20, 0)
    sampler.sample(tasks, policy)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        batch = sampler.sample(tasks, policy)
        times.append(time.perf_counter() - t)
    print(f"Navigation2D MetaBatchSampler 20 tasks x 20 episodes x 100 steps + MLP policy: "
          f"{min(times) * 1e3:.1f} ms ({batch.num_steps / min(times):,.0f} env-steps/s)")
    warp_rows(q)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
