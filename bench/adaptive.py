"""Throughput of a random search of PPO on CartPole with the serial, process-pool and Ray executors.

Prints, for each executor: wall time, trials per hour and total env-steps/s of the same random search (same
seeds, so the same work), with the serial executor as the reference measured in the same run, plus the
speed-up. The process pool and Ray are timed twice: *cold* (including starting the workers, what a single
search pays) and *warm* (a second search on the running workers, the steady state).

Usage: ``python bench/adaptive.py [--trials 8] [--steps 20480] [--workers N] [--quick] [--no-ray]``.
Quote the figures with the machine line it prints (CPU model, cores, load average: another process on the
machine takes cores from the executors).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import torch

from meta_rl_lessons.adaptive.cartpole import CARTPOLE_BASE, cartpole_space
from meta_rl_lessons.adaptive.executors import ProcessPoolExecutor, SerialExecutor
from meta_rl_lessons.adaptive.random_search import RandomSearchConfig, random_search
from meta_rl_lessons.adaptive.trial import PPOTrial
from meta_rl_lessons.runs import cpu_model


def timed_search(executor, trials: int, steps: int, seed: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = random_search(cartpole_space(), PPOTrial, RandomSearchConfig(trials, steps, seed),
                        settings={"base": CARTPOLE_BASE}, executor=executor)
    return time.perf_counter() - t0, res.total_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=8, help="trials per search")
    ap.add_argument("--steps", type=int, default=20_480, help="env steps per trial")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="process-pool / Ray workers")
    ap.add_argument("--quick", action="store_true", help="4 trials x 4096 steps, for a fast check")
    ap.add_argument("--no-ray", action="store_true", help="skip Ray even if it is installed")
    args = ap.parse_args()
    trials, steps = (4, 4096) if args.quick else (args.trials, args.steps)
    torch.set_num_threads(1)
    os.environ.setdefault("META_RL_PROGRESS", "0")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} (1/5/15 min) before the run; torch {torch.__version__}")
    print(f"search: random search of PPO on CartPole-v1, {trials} trials x {steps} env steps "
          f"({trials * steps} steps), 4 envs x 128 steps per rollout, 1 torch thread per trial\n")

    rows = []
    wall, total = timed_search(SerialExecutor(), trials, steps, seed=0)
    rows.append(("serial (reference)", wall, total))
    with ProcessPoolExecutor(workers=args.workers) as ex:
        wall, total = timed_search(ex, trials, steps, seed=0)
        rows.append((f"process pool x{args.workers} cold", wall, total))
        wall, total = timed_search(ex, trials, steps, seed=1)
        rows.append((f"process pool x{args.workers} warm", wall, total))
    if not args.no_ray and importlib.util.find_spec("ray") is not None:
        import ray

        from meta_rl_lessons.adaptive.executors import RayExecutor

        t0 = time.perf_counter()
        with RayExecutor(init_kwargs={"num_cpus": args.workers}) as ex:
            start = time.perf_counter() - t0
            wall, total = timed_search(ex, trials, steps, seed=0)
            rows.append((f"Ray x{args.workers} cold (+{start:.1f} s ray.init)", wall + start, total))
            wall, total = timed_search(ex, trials, steps, seed=1)
            rows.append((f"Ray x{args.workers} warm", wall, total))
        print(f"ray {ray.__version__}")
    else:
        print("ray: not installed (pip install '.[distributed]') or --no-ray: skipped")

    ref = rows[0][1] / rows[0][2]  # seconds per env step, serial
    print(f"\n{'executor':38s} {'wall s':>8s} {'trials/h':>9s} {'env-steps/s':>12s} {'speed-up':>9s}")
    for name, wall, total in rows:
        print(f"{name:38s} {wall:8.1f} {trials / wall * 3600:9.0f} {total / wall:12.0f} "
              f"{ref / (wall / total):8.2f}x")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"\nload average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
