"""Duan et al.'s RL² tables from the command line: train, evaluate and export one run per row and seed.

Each row of :data:`meta_rl_lessons.rl2.study.TABLE_ROWS` is a ``meta-rl train rl2 --budget book`` command
(the family's recipe, ``FAMILY_RECIPES``, plus the row's ``--set``); this script runs, for every row and seed
not yet in ``results/``::

    meta-rl train rl2 ... --seed S --threads 1 --no-progress --out runs/NAME
    meta-rl eval runs/NAME --tasks 1000          # 1000 tasks of the whole distribution, seed 10000
    meta-rl export runs/NAME results/NAME

Usage: ``python tools/rl2_tables.py [--rows n100k5 mdp-n10] [--seeds 0 1] [--jobs 2] [--print]``
(``--print`` only prints the commands). One torch thread per run; two at a time on two cores.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meta_rl_lessons.rl2.study import EVAL_TASKS, TABLE_ROWS, table_command, table_result_name  # noqa: E402

META_RL = [sys.executable, "-m", "meta_rl_lessons.cli"]


def run_row(row: str, seed: int, force: bool) -> str:
    name = table_result_name(row, seed)
    run_dir = ROOT / "runs" / name
    steps = [
        table_command(row, seed, out=f"runs/{name}") + ["--force"],
        ["meta-rl", "eval", f"runs/{name}", "--tasks", str(EVAL_TASKS)],
        ["meta-rl", "export", f"runs/{name}", f"results/{name}"] + (["--force"] if force else []),
    ]
    for cmd in steps:
        p = subprocess.run(META_RL + cmd[1:], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            return f"{name}: FAILED ({shlex.join(cmd)}):\n{p.stderr[-2000:]}"
    return f"{name}: done ({run_dir})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="+", default=list(TABLE_ROWS), help=f"of {', '.join(TABLE_ROWS)}")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="replace results that exist")
    ap.add_argument("--print", action="store_true", help="print the train commands and stop")
    a = ap.parse_args(argv)
    bad = [r for r in a.rows if r not in TABLE_ROWS]
    if bad:
        print(f"rl2_tables: unknown row(s) {bad}; allowed: {', '.join(TABLE_ROWS)}", file=sys.stderr)
        return 2
    jobs = [(r, s) for r in a.rows for s in a.seeds
            if a.force or not (ROOT / "results" / table_result_name(r, s)).exists()]
    if a.print:
        for r, s in jobs:
            print(shlex.join(table_command(r, s, out=f"runs/{table_result_name(r, s)}")))
        return 0
    print(f"{len(jobs)} run(s), {a.jobs} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        for msg in pool.map(lambda job: run_row(*job, a.force), jobs):
            print(msg, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
