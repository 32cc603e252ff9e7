"""What RL² needs at CPU scale: seeded one-factor-at-a-time studies of its recipe (chapter 4).

Each study is a setting (a bandit ``(n, k)`` or tabular MDPs with ``n`` episodes), a base recipe, and arms
that change one thing of it. Every (arm, seed) trains :class:`~meta_rl_lessons.rl2.ppo.RL2Trainer` for the
same number of environment steps and, every ``eval_every`` iterations, evaluates the current policy (one
trial per task, actions sampled as in training) on the study's fixed curve tasks (seed 555, never the
chapter's evaluation tasks). Rows are appended to ``OUT/STUDY/ARM-sSEED.csv`` as they come and a run is
marked finished by ``ARM-sSEED.json`` (its config, the machine, the commit, wall time): a killed study loses
at most the run in progress, and running the same command again skips what is finished.

Usage::

    python tools/rl2_study.py list
    python tools/rl2_study.py run bandit-n100k5 [--arms base hidden-256] [--seeds 0 1 2] [--jobs 2]
    python tools/rl2_study.py summary bandit-n100k5

The chapter reads the files with :func:`meta_rl_lessons.rl2.study.load_study`. One torch thread per run;
``--jobs 2`` runs two at once on a 2-core machine (do not time anything else meanwhile).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meta_rl_lessons.rl2.study import STUDIES, StudyError, load_study, study_config  # noqa: E402

DEFAULT_OUT = ROOT / "results" / "rl2-study"


def run_one(study: str, arm: str, seed: int, out: Path) -> str:
    """Train one (arm, seed) in this process; write its CSV as it goes and its JSON when finished."""
    import torch

    from meta_rl_lessons.rl2.ppo import RL2Trainer
    from meta_rl_lessons.rl2.study import curve_tasks
    from meta_rl_lessons.runs import provenance

    torch.set_num_threads(1)
    spec = STUDIES[study]
    cfg = study_config(study, arm, seed)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    d = out / study
    d.mkdir(parents=True, exist_ok=True)
    csv_path, done_path = d / f"{arm}-s{seed}.csv", d / f"{arm}-s{seed}.json"
    tasks = curve_tasks(study)
    trainer = RL2Trainer(cfg)
    start = time.time()
    cols = ["iteration", "env_steps", "train_time", "trial_return", "eval_return", "entropy", "approx_kl",
            "explained_variance"]
    final_eval = float("nan")
    with open(csv_path, "w") as f:
        f.write(",".join(cols) + "\n")
        for _ in range(cfg.total_iterations):
            row = trainer.iteration()
            i = trainer.iterations_done
            if i % spec.eval_every == 0 or i == cfg.total_iterations:
                final_eval = float(trainer.evaluate(tasks, seed=3).trial_returns().mean())
                row["eval_return"] = final_eval
            else:
                row["eval_return"] = float("nan")
            f.write(",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in cols)
                    + "\n")
            f.flush()
    trainer.close()
    meta = {"study": study, "arm": arm, "seed": seed,
            "config": json.loads(json.dumps(vars(cfg), default=str)), "final_eval": final_eval,
            "started": started, "wall_time": time.time() - start, "train_time": trainer.train_time,
            "provenance": {k: v for k, v in provenance().items() if k in
                           ("command_line", "git", "hostname", "cpu_model", "cpu_count", "python", "versions",
                            "start_time")}}
    done_path.write_text(json.dumps(meta, indent=1) + "\n")
    return f"{study}/{arm}-s{seed}: final eval {final_eval:.2f}, {meta['wall_time']:.0f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the studies and their arms")
    r = sub.add_parser("run", help="train every (arm, seed) not yet finished")
    r.add_argument("study")
    r.add_argument("--arms", nargs="+")
    r.add_argument("--seeds", nargs="+", type=int)
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--out", type=Path, default=DEFAULT_OUT)
    one = sub.add_parser("one", help=argparse.SUPPRESS)  # a worker: one (arm, seed) in its own process
    one.add_argument("study")
    one.add_argument("arm")
    one.add_argument("seed", type=int)
    one.add_argument("--out", type=Path, default=DEFAULT_OUT)
    s = sub.add_parser("summary", help="final evaluation per arm (mean over seeds)")
    s.add_argument("study")
    s.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "list":
            for name, spec in STUDIES.items():
                print(f"{name}: {spec.setting}, {spec.env_steps:,d} steps per run, seeds {list(spec.seeds)}")
                for arm, over in spec.arms.items():
                    print(f"  {arm:18s} {over}")
            return 0
        if a.cmd == "one":
            print(run_one(a.study, a.arm, a.seed, a.out), flush=True)
            return 0
        if a.cmd == "summary":
            st = load_study(a.study, a.out)
            for arm, s_ in st.summary().items():
                print(f"{arm:18s} {s_}")
            return 0
        spec = STUDIES.get(a.study)
        if spec is None:
            raise StudyError(f"unknown study {a.study!r}; allowed: {', '.join(STUDIES)}")
        arms = a.arms or list(spec.arms)
        bad = [x for x in arms if x not in spec.arms]
        if bad:
            raise StudyError(f"unknown arm(s) {bad} of {a.study}; allowed: {', '.join(spec.arms)}")
        jobs = [(arm, seed) for seed in (a.seeds or spec.seeds) for arm in arms
                if not (a.out / a.study / f"{arm}-s{seed}.json").exists()]
        print(f"{a.study}: {len(jobs)} run(s) to do, {a.jobs} at a time", flush=True)

        def launch(job: tuple[str, int]) -> str:
            arm, seed = job
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, __file__, "one", a.study, arm, str(seed), "--out", str(a.out)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            msg = p.stdout.strip() if p.returncode == 0 else f"{arm}-s{seed} FAILED:\n{p.stderr[-2000:]}"
            print(msg, flush=True)
            return msg

        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(launch, jobs))
        return 0
    except StudyError as e:
        print(f"rl2_study: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
