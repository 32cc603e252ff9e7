"""RL² on Bernoulli bandits: wall-clock time to reach 95% of the Gittins baseline, and training env-steps/s.

For each setting (n pulls, k arms) the script

1. draws a fixed set of evaluation tasks and computes the Gittins-index baseline on them (the index computed
   by ``rl2.baselines``, discount chosen from a small grid on separate tasks), in the same run;
2. trains RL² (``rl2.ppo.RL2Trainer``) and, every ``--eval-every`` iterations, evaluates the current policy
   (sampling actions, as in training) on the evaluation tasks;
3. reports, at the first evaluation whose mean total reward reached ``0.95 x Gittins``, the training time
   (sampling + updates), the wall time including the evaluations (what a user waits), and the environment
   steps; and the training throughput in env-steps/s.

The peer figure printed at the end is *recorded*, not measured by this run (``RECORDED_REFERENCE``: a
public PyTorch RL² implementation that steps one trial at a time, as recorded in issue #18). Duan et al.
(2016) Table 1: Gittins 6.6 (n=10, k=5), 78.3 (n=100, k=5).

Usage: ``python bench/rl2.py [--settings 10,5 100,5] [--time-limit 600] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from meta_rl_lessons.envs import BernoulliBanditFamily
from meta_rl_lessons.memory import keep_freed_memory
from meta_rl_lessons.rl2 import baselines as bl
from meta_rl_lessons.rl2.ppo import RL2Trainer, bandit_config
from meta_rl_lessons.runs import cpu_model

PAPER_GITTINS = {(10, 5): 6.6, (10, 10): 6.6, (100, 5): 78.3, (100, 10): 82.8}

#: A public PyTorch RL² implementation (one trial at a time) on this project's 2-core machine type, as
#: recorded in issue #18 (filed 2026-12): about 900 env-steps/s, 6.3 on (n=10, k=5) after 256 s.
RECORDED_REFERENCE = "about 900 env-steps/s; 6.3 on (n=10, k=5) after 256 s"

#: Per-setting overrides of the recipe (``rl2.ppo.BANDIT_DEFAULTS``, from the RL² chapter's study): a
#: 10-pull trial is ten times shorter, so n = 10 runs 1024 trials per iteration; the learning rate decays
#: linearly to 0 over ``total_iterations`` (as many as the chapter's table runs use).
SETTINGS = {10: {"num_trials": 1024, "total_iterations": 100}, 100: {"total_iterations": 120}}


def tuned_gittins(n: int, k: int, tune_tasks: int = 4000) -> float:
    """The Gittins discount with the best mean total on separate tuning tasks."""
    means = np.random.default_rng(1000 + n).uniform(size=(tune_tasks, k))
    grid = (0.5, 0.7, 0.9, 0.95, 0.98, 0.99)
    scores = [bl.bandit_gittins(means, n, gamma=g, rng=1).mean() for g in grid]
    return grid[int(np.argmax(scores))]


def run(n: int, k: int, time_limit: float, eval_every: int, eval_tasks: int, seed: int) -> dict:
    tasks = BernoulliBanditFamily(k, 1).sample_tasks(eval_tasks, 777)
    means = np.array([t.means for t in tasks])
    gamma_g = tuned_gittins(n, k)
    gittins = float(bl.bandit_gittins(means, n, gamma=gamma_g, rng=3).mean())
    target = 0.95 * gittins
    cfg = bandit_config(n, k, seed=seed, **SETTINGS[n])
    trainer = RL2Trainer(cfg)
    print(f"\n(n={n}, k={k}): Gittins (gamma={gamma_g}) on {eval_tasks} eval tasks = {gittins:.2f} "
          f"(paper {PAPER_GITTINS.get((n, k), float('nan'))}); target 95% = {target:.2f}", flush=True)
    hit = None
    start = time.perf_counter()
    best = -np.inf
    while trainer.train_time < time_limit and trainer.iterations_done < cfg.total_iterations:
        row = trainer.iteration()
        if trainer.iterations_done % eval_every == 0:
            score = float(trainer.evaluate(tasks, seed=11).trial_returns().mean())
            best = max(best, score)
            print(f"  iter {trainer.iterations_done:4d}  train {trainer.train_time:6.1f} s  "
                  f"{row['env_steps']:>10,d} steps  eval {score:6.2f}", flush=True)
            if score >= target:
                hit = (trainer.train_time, row["env_steps"], score, time.perf_counter() - start)
                break
    wall = time.perf_counter() - start
    steps = trainer.sampler.total_steps
    rate = steps / trainer.train_time
    return {"n": n, "k": k, "gittins": gittins, "target": target, "hit": hit, "best": best,
            "steps": steps, "train_time": trainer.train_time, "wall": wall, "rate": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", nargs="+", default=["10,5", "100,5"], help="n,k pairs")
    ap.add_argument("--time-limit", type=float, default=600.0, help="training seconds per setting")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--eval-tasks", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest for these small GRUs when the 2 cores are shared)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    keep_freed_memory()  # as the command line does (meta_rl_lessons.memory)
    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
          f"{args.threads} torch threads; load average {os.getloadavg()[0]:.2f} at start")
    results = [run(*map(int, s.split(",")), args.time_limit, args.eval_every, args.eval_tasks, args.seed)
               for s in args.settings]
    print("\n| n, k | Gittins (ours) | 95% target | RL² reached | train time to target | wall time to target "
          "(with evaluations) | env steps | env-steps/s (training) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["hit"] is None:
            reached = f"not in {r['train_time']:.0f} s (best {r['best']:.2f})"
            when, wall, steps = "-", "-", f"{r['steps']:,d}"
        else:
            reached, when, steps = f"{r['hit'][2]:.2f}", f"{r['hit'][0]:.0f} s", f"{r['hit'][1]:,d}"
            wall = f"{r['hit'][3]:.0f} s"
        print(f"| {r['n']},{r['k']} | {r['gittins']:.2f} | {r['target']:.2f} | {reached} | {when} | {wall} "
              f"| {steps} | {r['rate']:,.0f} |")
    print(f"recorded reference (not this run): {RECORDED_REFERENCE}")
    print(f"load average at end: {os.getloadavg()[0]:.2f} (the CPU may be shared with other processes)")


if __name__ == "__main__":
    main()
