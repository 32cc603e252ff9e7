"""Where a MAML-TRPO meta-iteration spends its time: the exact meta-step taken apart (bench/README.md).

Times, per meta-iteration (mean over the timed iterations, after one warm-up), each part of
``MAMLTRPO.iteration`` with exact curvature, by calling the trainer's own pieces in the order it does:

* ``sample``: pre-update episodes, the inner step (graph kept), post-update episodes;
* ``meta-gradient``: the outer surrogate and its gradient through the inner step;
* ``curvature setup``: the graphs the Hessian-vector products reuse (inner step again, post-update KL);
* ``products``: the ``cg_iters`` meta-KL Hessian-vector products of conjugate gradient (the step's length
  takes its curvature from CG's residual, ``trpo.cg_solve``: no product of its own), with the seconds of one
  product;
* ``line search``: every step tried (each re-adapts on the pre-update batch and evaluates the post-update
  surrogate and KL), with the number tried.

With ``--floor`` it also takes one closed-form product (``fvp_method="analytic"``) apart: every batched
matrix product it calls is recorded (shapes and FLOPs, counted from the calls, not by hand), then the same
matrix products are replayed alone and timed, on fresh tensors for every call (operands from main memory)
and on one pair of tensors per shape (operands in cache): the product's arithmetic at the better of the
two rates, a floor for the product that no rearrangement of the elementwise work can go below. With
``--chunks N ...`` it times one product at each number of tasks per chunk
(``meta_fvp_analytic(tasks_per_chunk=N)``, 0: the whole meta-batch at once), checking that the result does
not change.

Nothing here is a reference value: every figure is measured by this run.

    .venv/bin/python bench/maml_profile.py --task nav --iterations 3
    .venv/bin/python bench/maml_profile.py --task cheetah --fvp direct
    .venv/bin/python bench/maml_profile.py --task cheetah --threads 2 --iterations 1 --floor --chunks 0 8 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import torch
from torch.overrides import TorchFunctionMode

from meta_rl_lessons.maml.curvature import meta_fvp_analytic
from meta_rl_lessons.maml.rl import FVP_METHODS, MAMLTRPO, MAMLTRPOConfig
from meta_rl_lessons.rl.trpo import apply_step, line_search
from meta_rl_lessons.runs import cpu_model

try:  # run as a script (bench/ on sys.path) or as a module
    from maml import CONFIGS
except ImportError:  # pragma: no cover
    from bench.maml import CONFIGS


def profile_iteration(trainer: MAMLTRPO) -> dict[str, float]:
    """One meta-iteration of ``trainer`` (parameters updated as ``iteration`` would), timed by part."""
    c = trainer.config
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    tasks = trainer.family.sample_tasks(c.meta_batch_size, trainer.task_rng, split="train")
    sample = trainer.sample_meta_batch(tasks)
    t["sample"] = time.perf_counter() - t0

    # trust_region_step, with a timer around each part (same calls, same order)
    products: list[float] = []
    original = trainer.__class__.meta_gradient

    def timed_meta_gradient(self, s, retain_graph=False):
        t1 = time.perf_counter()
        out = original(self, s, retain_graph)
        t["meta-gradient"] = time.perf_counter() - t1
        t["_setup_start"] = time.perf_counter()
        return out

    import meta_rl_lessons.maml.rl as rl_module

    trpo_step = rl_module.trust_region_step

    def timed_trust_region_step(fvp, g, max_kl, cg_iters, what):
        t["curvature setup"] = time.perf_counter() - t.pop("_setup_start")

        def timed_fvp(v):
            t2 = time.perf_counter()
            out = fvp(v)
            if out.is_cuda:  # kernels run asynchronously: wait for them, or the time lands elsewhere
                torch.cuda.synchronize(out.device)
            products.append(time.perf_counter() - t2)
            return out

        return trpo_step(timed_fvp, g, max_kl, cg_iters, what)

    trainer.meta_gradient = timed_meta_gradient.__get__(trainer)
    rl_module.trust_region_step = timed_trust_region_step
    try:
        full_step, evaluate, loss = trainer.trust_region_step(sample)
    finally:
        rl_module.trust_region_step = trpo_step
        del trainer.meta_gradient
    t["products"] = sum(products)
    t["products_n"] = len(products)
    t["one product"] = statistics.median(products)

    tried = []

    def timed_evaluate(step):
        t3 = time.perf_counter()
        out = evaluate(step)
        tried.append(time.perf_counter() - t3)
        return out

    result = line_search(timed_evaluate, full_step, loss, c.max_kl, None, 0.0, c.backtrack_ratio,
                         c.max_backtracks)
    if result.accepted:
        apply_step(list(trainer.policy.parameters()), result.step)
    trainer.iterations_done += 1
    t["line search"] = sum(tried)
    t["line search_n"] = len(tried)
    t["total"] = time.perf_counter() - t0
    return t


class _RecordMatmuls(TorchFunctionMode):
    """Records the operand shapes of every ``bmm``/``baddbmm`` called inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("bmm", "baddbmm", "baddbmm_"):
            a, b = (args[0], args[1]) if name == "bmm" else (args[1], args[2])
            self.shapes.append((tuple(a.shape), tuple(b.shape)))
        return func(*args, **(kwargs or {}))


def _product_setup(trainer: MAMLTRPO):
    """A meta-batch sampled by ``trainer`` and what a closed-form product needs (not timed)."""
    c = trainer.config
    tasks = trainer.family.sample_tasks(c.meta_batch_size, trainer.task_rng, split="train")
    sample = trainer.sample_meta_batch(tasks)
    mg = trainer.meta_gradient(sample)
    params = dict(trainer.policy.named_parameters())
    v = torch.randn(mg["g"].shape, generator=torch.Generator().manual_seed(0)).to(mg["g"].device)
    return params, sample["pre"][0], sample["post"], mg["old"], v


def _median_time(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def product_floor(trainer: MAMLTRPO, setup) -> None:
    """Print one closed-form product's matrix products (count, GFLOP) and their time alone vs the product
    (``setup``: :func:`_product_setup`)."""
    params, pre, post, old, v = setup
    c = trainer.config
    fvp = meta_fvp_analytic(trainer.policy, params, pre, post, c.inner_lr, old, False, c.cg_damping)
    recorder = _RecordMatmuls()
    with recorder:
        fvp(v)
    flops = sum(2 * a[0] * a[1] * a[2] * b[2] for a, b in recorder.shapes)
    product_s = _median_time(lambda: fvp(v))
    device = v.device

    def replay(operands) -> float:
        def matmuls_alone():
            for a, b in operands:
                torch.matmul(a, b)  # bmm for the recorded batched shapes
            if v.is_cuda:
                torch.cuda.synchronize(v.device)

        return _median_time(matmuls_alone)

    # Fresh operands for every call come from main memory; in the product each operand was just written, so
    # it is (partly) in cache. One pair per distinct shape, reused by every call of that shape, keeps them in
    # cache: the faster of the two is the floor (the arithmetic at the best rate this machine gives it).
    cold_s = replay([(torch.randn(a, device=device), torch.randn(b, device=device))
                     for a, b in recorder.shapes])
    pairs = {shape: (torch.randn(shape[0], device=device), torch.randn(shape[1], device=device))
             for shape in dict.fromkeys(recorder.shapes)}
    warm_s = replay([pairs[shape] for shape in recorder.shapes])
    alone_s = min(cold_s, warm_s)
    n = c.cg_iters  # the step's length needs no product of its own (trpo.cg_solve)
    print(f"one closed-form product: {len(recorder.shapes)} batched matrix products ({len(pairs)} shapes), "
          f"{flops / 1e9:.2f} GFLOP; the product {product_s * 1e3:.0f} ms; its matrix products alone "
          f"{warm_s * 1e3:.0f} ms with operands in cache ({flops / warm_s / 1e9:.0f} GFLOP/s), "
          f"{cold_s * 1e3:.0f} ms on fresh operands ({flops / cold_s / 1e9:.0f} GFLOP/s)")
    print(f"  floor of the {n} products of a meta-iteration at the faster rate: {n * alone_s:.2f} s "
          f"(they take {n * product_s:.2f} s)")
    square = torch.randn(4096, 4096, device=device)
    best = 2 * 4096**3 / replay([(square, square)])
    print(f"  this machine's best matrix-product rate (one 4096 x 4096 product): {best / 1e9:.0f} GFLOP/s; "
          f"the {n} products' arithmetic at that rate: {n * flops / best:.2f} s")


def chunk_times(trainer: MAMLTRPO, setup, chunks: list[int]) -> None:
    """Print one closed-form product's time at each number of tasks per chunk (0: all tasks at once)."""
    params, pre, post, old, v = setup
    c = trainer.config
    reference = None
    for n in chunks:
        fvp = meta_fvp_analytic(trainer.policy, params, pre, post, c.inner_lr, old, False, c.cg_damping,
                                tasks_per_chunk=n or pre.num_tasks)
        seconds = _median_time(lambda f=fvp: f(v))
        out = fvp(v)
        reference = out if reference is None else reference
        diff = float((out - reference).abs().max() / reference.abs().max())
        print(f"  tasks per chunk {n or pre.num_tasks:3d}: {seconds * 1e3:6.1f} ms per product "
              f"(max relative difference to the first: {diff:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(CONFIGS), default="nav")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations (after one warm-up)")
    parser.add_argument("--fvp", choices=FVP_METHODS, default="analytic")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor", action="store_true",
                        help="also time a closed-form product's matrix products alone (its floor)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[],
                        help="also time a closed-form product at these tasks per chunk (0: all at once)")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    bad = [n for n in args.chunks if n < 0]
    if bad:
        parser.error(f"--chunks takes tasks per chunk >= 0 (0: all tasks at once), got {bad[0]}")
    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
          f"{args.threads}, device {args.device}; load average before {os.getloadavg()[0]:.2f}")
    cfg = MAMLTRPOConfig(**CONFIGS[args.task], fvp_method=args.fvp, device=args.device,
                         iterations=args.iterations + 1, seed=0)
    trainer = MAMLTRPO(cfg)
    profile_iteration(trainer)  # warm-up
    rows = defaultdict(list)
    for _ in range(args.iterations):
        for k, v in profile_iteration(trainer).items():
            rows[k].append(v)
    med = {k: statistics.fmean(v) for k, v in rows.items()}  # means, so that the parts add up
    total = med["total"]
    print(f"{args.task}, fvp {args.fvp}, exact curvature: mean of {args.iterations} iterations")
    for part in ("sample", "meta-gradient", "curvature setup", "products", "line search"):
        extra = ""
        if part == "products":
            extra = f"  ({med['products_n']:.0f} products, {med['one product'] * 1e3:.0f} ms each)"
        if part == "line search":
            extra = f"  ({med['line search_n']:.0f} steps tried)"
        print(f"  {part:16s} {med[part]:7.3f} s  {100 * med[part] / total:5.1f}%{extra}")
    other = total - sum(med[p] for p in ("sample", "meta-gradient", "curvature setup", "products",
                                         "line search"))
    print(f"  {'other':16s} {other:7.3f} s  {100 * other / total:5.1f}%")
    print(f"  {'total':16s} {total:7.3f} s; load average after {os.getloadavg()[0]:.2f}")
    if args.floor or args.chunks:
        setup = _product_setup(trainer)  # one meta-batch for both
        if args.floor:
            product_floor(trainer, setup)
        if args.chunks:
            chunk_times(trainer, setup, args.chunks)
    trainer.close()


if __name__ == "__main__":
    main()
