"""What the C library's allocator costs a MAML-TRPO step: the same work with glibc's default thresholds and
with ``meta_rl_lessons.memory.keep_freed_memory`` (freed blocks up to 32 MiB kept for reuse).

Each configuration runs in its own process (the setting is process-wide), one after the other, one thread:

1. an elementwise product of two of twenty [20, 2000, 64] float32 tensors (10 MB each: the size of 2D
   navigation's hidden activations), into a fresh tensor and into an existing one;
2. one meta-KL Hessian-vector product on 2D navigation (20 tasks x 20 episodes x 100 steps, 64x64 tanh),
   closed form and autograd (``fvp_method`` analytic and factorized).

    .venv/bin/python bench/alloc.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, statistics, sys, time
import torch
torch.set_num_threads(1)
from meta_rl_lessons.memory import keep_freed_memory
on = keep_freed_memory()
out = {"kept": on}
arrays = [torch.randn(20, 2000, 64) for _ in range(20)]
buf = torch.empty(20, 2000, 64)
def best(f, n=30):
    f(); times = []
    for i in range(n):
        t = time.perf_counter(); f(i); times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3
first = lambda i=0: arrays[i % 19] * arrays[i % 19 + 1]
out["fresh_ms"] = best(first)
out["existing_ms"] = best(lambda i=0: torch.mul(arrays[i % 19], arrays[i % 19 + 1], out=buf))
del arrays
sys.path.insert(0, "bench")
from maml import CONFIGS
from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig, adapt, meta_fvp_factorized
from meta_rl_lessons.maml.curvature import meta_fvp_analytic
tr = MAMLTRPO(MAMLTRPOConfig(**CONFIGS["nav"], seed=0))
s = tr.sample_meta_batch(tr.family.sample_tasks(20, tr.task_rng, split="train"))
pre, post = s["pre"][0], s["post"]
params = dict(tr.policy.named_parameters())
with torch.no_grad():
    old = {k: v.detach() for k, v in adapt(tr.policy, params, pre, 0.1, create_graph=False).items()}
    dist = tr.policy.per_task(post.obs, old)
v = torch.randn(sum(p.numel() for p in params.values()), generator=torch.Generator().manual_seed(0))
for name, make in (("analytic", lambda: meta_fvp_analytic(tr.policy, params, pre, post, 0.1, old)),
                   ("factorized", lambda: meta_fvp_factorized(tr.policy, params, pre, post, dist, 0.1,
                                                              fisher_point=old))):
    product = make()
    out[name + "_ms"] = best(lambda i=0: product(v), n=5)
print(json.dumps(out))
"""


def main() -> None:
    from meta_rl_lessons.runs import cpu_model

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average before {os.getloadavg()[0]:.2f}; "
          "one thread, one process at a time")
    rows = {}
    for label, env in (("glibc defaults", {"META_RL_MALLOC": "default"}), ("keep_freed_memory", {})):
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                             env={**os.environ, **env})
        rows[label] = json.loads(res.stdout.strip().splitlines()[-1])
        rows[label]["wall_s"] = time.perf_counter() - t
    print(f"{'allocator':18s} {'in effect':>9s} {'x*y fresh ms':>13s} {'x*y existing ms':>16s} "
          f"{'analytic product ms':>20s} {'factorized product ms':>22s}")
    for label, r in rows.items():
        print(f"{label:18s} {str(r['kept']):>9s} {r['fresh_ms']:13.2f} {r['existing_ms']:16.2f} "
              f"{r['analytic_ms']:20.1f} {r['factorized_ms']:22.1f}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
