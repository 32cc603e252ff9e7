"""MAML-TRPO speed: seconds per meta-iteration, env-steps/s and peak memory (DESIGN.md section 7).

Configurations (pytorch-maml-rl's, 64x64 tanh Gaussian policy, one inner step, 10 CG iterations):

* 2D navigation: meta-batch 20, 20 episodes per task, horizon 100 (80k env steps per iteration, pre + post);
* HalfCheetahVel: meta-batch 40, 20 episodes, horizon 100 (160k env steps per iteration).

Each is run with the exact meta-KL products (``curvature_subsample=1``) and with the Hessian-vector products
estimated on 10% of the episodes. The reference on the same kind of machine (pytorch-maml-rl, measured for
DESIGN.md, not in this run): 4.6 s/iteration (2D navigation), 16 s (HalfCheetahVel); goals 0.46 s and 5.3 s.

    .venv/bin/python bench/maml.py                 # both tasks, 3 timed iterations each after 1 warm-up
    .venv/bin/python bench/maml.py --task nav --iterations 5 --device cuda
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig
from meta_rl_lessons.runs import cpu_model

CONFIGS = {
    "nav": dict(family="Navigation2D", family_kwargs=dict(horizon=100), meta_batch_size=20, num_episodes=20),
    "cheetah": dict(family="HalfCheetahVel", family_kwargs=dict(horizon=100), meta_batch_size=40,
                    num_episodes=20),
}
GOALS = {"nav": 0.46, "cheetah": 5.3}
REFERENCE = {"nav": 4.6, "cheetah": 16.0}




def run(task: str, subsample: float, iterations: int, device: str, fvp: str) -> dict[str, float]:
    cfg = MAMLTRPOConfig(**CONFIGS[task], curvature_subsample=subsample, fvp_method=fvp, device=device,
                         iterations=iterations + 1, seed=0)
    trainer = MAMLTRPO(cfg)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer.iteration()  # warm-up (allocations, MuJoCo data)
    rows = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        row = trainer.iteration()
        row["wall"] = time.perf_counter() - t0
        rows.append(row)
    walls = [r["wall"] for r in rows]
    out = {
        "s_per_iter": statistics.median(walls),
        "sample_s": statistics.median(r["sample_time"] for r in rows),
        "update_s": statistics.median(r["update_time"] for r in rows),
        "env_steps_per_s": sum(r["env_steps"] for r in rows) / sum(walls),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=["nav", "cheetah", "both"], default="both")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these nets)")
    parser.add_argument("--subsample", type=float, nargs="+", default=[1.0, 0.1],
                        help="curvature_subsample values to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {args.threads}, device {args.device}; load average before the run {load[0]:.2f} "
          "(other processes share the CPU when it exceeds the cores this run uses)")
    tasks = ["nav", "cheetah"] if args.task == "both" else [args.task]
    print(f"{'task':8s} {'fvp':10s} {'subsample':>9s} {'s/iter':>8s} {'sample s':>9s} {'update s':>9s} "
          f"{'steps/s':>9s} {'peak RSS MB':>12s}   goal / reference s/iter")
    for task in tasks:
        for sub in args.subsample:
            r = run(task, sub, args.iterations, args.device, "factorized")
            extra = f" peak CUDA {r['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in r else ""
            print(f"{task:8s} {'factorized':10s} {sub:9.2f} {r['s_per_iter']:8.2f} {r['sample_s']:9.2f} "
                  f"{r['update_s']:9.2f} {r['env_steps_per_s']:9.0f} {r['peak_rss_mb']:12.0f}   "
                  f"{GOALS[task]} / {REFERENCE[task]}{extra}", flush=True)
    print(f"load average after the run {os.getloadavg()[0]:.2f}; peak RSS is the process's (cumulative)")


if __name__ == "__main__":
    main()
