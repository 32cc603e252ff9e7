"""The ``meta-rl`` command line: a parser over :mod:`meta_rl_lessons.experiments` and :func:`runs.run`.

::

    meta-rl train {ppo,trpo,maml,rl2,adaptive} --env ID --budget {smoke,book,full} --seed N \\
            --device {cpu,cuda,cuda:N,auto} --out runs/NAME [--set key=value ...] [--force]
    meta-rl resume RUN_DIR [--set key=value ...]  # continue a stopped run (to the uninterrupted numbers)
    meta-rl eval RUN_DIR             # returns of the trained agent (MAML: after 0..3 adaptation steps)
    meta-rl plot RUN_DIR... [--out fig.png]
    meta-rl export RUN_DIR results/NAME  # copy a finished run's logs (no checkpoint) + policy.json
    meta-rl config ALGORITHM [--budget B] [--env E]  # the --set fields: type, default, preset, meaning
    meta-rl list                     # algorithms, budgets and registered MetaRL environments
    meta-rl doctor [--json]          # what this machine has (torch, CUDA, MuJoCo, GL backend, Chromium...)

Every value is checked before anything is written (a bad ``--set`` creates no run directory). A user error
(a bad value or file, a full disk, a missing GPU) prints one line ``meta-rl: error: ...`` and exits with
status 2; a traceback means a bug. SIGINT and SIGTERM finish the iteration, save a checkpoint and exit with
130 / 143 (:mod:`meta_rl_lessons.runs`); ``resume`` then continues exactly.

This module imports only the standard library at import time (``meta-rl --help`` is fast); torch, gymnasium
and the algorithms are imported inside the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import shutil
import sys
import tempfile
import textwrap
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from meta_rl_lessons import experiments as ex
from meta_rl_lessons import runs
from meta_rl_lessons.budget import NAMES as BUDGETS
from meta_rl_lessons.memory import keep_freed_memory
from meta_rl_lessons.serialization import CheckpointError

__all__ = ["CLIError", "EXIT_INTERRUPTED", "TIMING_COLUMNS", "build_parser", "main"]

#: Progress columns measured in wall-clock time (they differ between runs; everything else is reproducible).
TIMING_COLUMNS: tuple[str, ...] = ("sample_time", "update_time", "train_time", "wall_time")
#: Exit status after Ctrl-C (128 + SIGINT); 143 after SIGTERM (:data:`runs.EXIT_CODES`).
EXIT_INTERRUPTED = 130
#: Files ``export`` copies verbatim (``eval.json`` only if present); the checkpoint is never copied.
EXPORT_FILES: tuple[str, ...] = ("config.json", "provenance.json", "progress.csv", "eval.json")
#: Errors that are the user's to fix (a message, exit status 2), not bugs (a traceback).
USER_ERRORS = (ex.ExperimentError, runs.RunError, CheckpointError)


class CLIError(ex.ExperimentError):
    """A usage error: printed as ``meta-rl: error: <message>`` with exit status 2, without a traceback."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meta-rl-lessons")
    except PackageNotFoundError:  # a checkout used without installing it
        return "unknown (not installed)"


# ============================================================================ shared checks
def _open_run(path: str) -> tuple[runs.RunDir, dict[str, Any]]:
    """The run directory and its ``config.json``, checked to hold what ``meta-rl train`` writes."""
    try:
        rd = runs.RunDir.open(path)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    meta = rd.read_config()
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "algorithm" not in meta:
        raise CLIError(f"{str(rd.config_path)!r} has no 'algorithm' and 'config' entries: it was edited or "
                       "not "
                       "written by `meta-rl train`; restore it or start the run again")
    ex.spec(meta["algorithm"])
    return rd, meta


def _checkpoint(rd: runs.RunDir, what: str) -> dict[str, Any]:
    if not rd.checkpoint_path.is_file():
        raise CLIError(f"run {str(rd.path)!r} has no checkpoint.pt {what}: it was stopped before its first "
                       "checkpoint; start it again with `meta-rl train ... --force`")
    ckpt = runs.load_checkpoint(rd.checkpoint_path)
    if ckpt.get("format") != runs.FORMAT:
        raise CLIError(f"checkpoint {str(rd.checkpoint_path)!r} has format {ckpt.get('format', 1)!r}, from "
                       "before "
                       f"the trainer protocol (format {runs.FORMAT}); start the run again (meta-rl train ... "
                       "--force), or use the commit that wrote it (provenance.json)")
    return ckpt


def _setup_torch(threads: int | None) -> int:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _check_run_flags(args: argparse.Namespace) -> None:
    if args.checkpoint_every < 0:
        raise CLIError(f"--checkpoint-every must be >= 0 seconds, got {args.checkpoint_every}")
    if args.log_every <= 0:
        raise CLIError(f"--log-every must be > 0 seconds, got {args.log_every}")
    if args.stop_after_iterations is not None and args.stop_after_iterations < 1:
        raise CLIError(f"--stop-after-iterations must be >= 1, got {args.stop_after_iterations}")
    if args.tensorboard:
        runs.TensorBoard.check()


def _check_out(out: Path, force: bool) -> None:
    """That ``meta-rl train --out OUT`` can create its run directory, before anything is written."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} exists and is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise CLIError(f"run directory {str(out)!r} already exists and is not empty; choose another "
                           "--out, "
                           f"continue it with `meta-rl resume {out}`, or pass --force to delete it and "
                           "start again")
        if not (out / runs.CONFIG).is_file():
            raise CLIError(f"--force deletes run directories only, and {str(out)!r} has no config.json: it "
                           "does "
                           "not look like one; remove it yourself or choose another --out")
        if (out / ".lock").exists():
            try:
                with runs.RunDir(out).lock():  # refuse to delete a run another process is training
                    pass
            except BlockingIOError as err:
                raise CLIError(str(err)) from None
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot create run directory {str(out)!r}: {str(parent)!r} is not a writable "
                       "directory; "
                       "choose another --out")


def _banner(rd: runs.RunDir, meta: Mapping[str, Any], threads: int, start: int, total: int | None,
            fields: Mapping[str, Any]) -> None:
    where = f"resuming at iteration {start}" if start else "starting at iteration 0"
    shown = ", ".join(f"{k}={v}" for k, v in fields.items())
    print(f"meta-rl: {meta['algorithm']} on {meta['env']} (budget {meta['budget']}, seed {meta['seed']}), "
          "run "
          f"directory {rd.path}\nmeta-rl: device {meta['device']}, {threads} torch thread(s); {where} of "
          f"{total if total is not None else '?'} iterations; preset and --set: {shown or 'none'}",
          file=sys.stderr, flush=True)


# ============================================================================ train / resume
def cmd_train(args: argparse.Namespace) -> int:
    if args.budget is None:
        from meta_rl_lessons import budget

        try:
            args.budget = budget.current().name
        except ValueError as err:
            raise CLIError(str(err)) from None
    _check_run_flags(args)
    spec, config, meta = ex.build_config(args.algorithm, env=args.env, budget=args.budget, seed=args.seed,
                                         device=args.device, overrides=args.set or [], threads=args.threads)
    out = Path(args.out or os.path.join(
        "runs", f"{spec.name}-{meta['env'].replace('/', '-')}-{args.budget}-s{args.seed}"))
    _check_out(out, args.force)
    meta["threads"] = threads = _setup_torch(args.threads)
    fields = {**ex.preset(spec.name, args.budget, getattr(config, "family", None)),
              **ex.parse_overrides(spec.config_class,
                                   [s for s in args.set or [] if not s.startswith("physics=")])}
    with runs.StopSignals() as stop:
        trainer = None
        if spec.trainer_factory is not None:
            with stop.deferred():  # worker processes started now inherit the blocked stop signals
                trainer = spec.build(config)
        try:
            if args.force and out.is_dir():
                shutil.rmtree(out)
            rd = runs.RunDir.create(out)
            rd.write_config(meta)
            rd.write_json(runs.PROVENANCE, runs.provenance(args.argv))
            total = trainer.total_iterations if trainer is not None else None
            _banner(rd, meta, threads, 0, total, fields)
            return _run(rd, spec, trainer or config, args, stop)
        finally:
            if trainer is not None:
                trainer.close()


def cmd_resume(args: argparse.Namespace) -> int:
    rd, meta = _open_run(args.run_dir)
    _check_run_flags(args)
    prov = rd.read_json(runs.PROVENANCE) if rd.provenance_path.is_file() else {}
    spec = ex.spec(meta["algorithm"])
    overrides = list(args.set or [])
    changed = set(ex.parse_overrides(spec.config_class, overrides))
    ckpt = _checkpoint(rd, "to resume from") if spec.trainer_factory is not None or \
        rd.checkpoint_path.is_file() else {"config": meta["config"], "rows": []}
    if prov.get("status") == "finished" and not changed:
        raise CLIError(f"run {str(rd.path)!r} already finished ({prov.get('end_time')}); nothing to resume. "
                       f"Evaluate it with `meta-rl eval {rd.path}` or start a new run")
    edited = {k: v for k, v in runs.config_diff(ckpt["config"], meta["config"]).items() if k not in changed}
    if edited:
        raise CLIError(f"{str(rd.config_path)!r} differs from the checkpoint's config in "
                       f"{runs.describe_diff(edited, 'checkpoint', 'config.json')}; restore config.json, or "
                       "change a field on purpose with `meta-rl resume RUN --set key=value`")
    config = ex.config_from_dict(spec.name, ckpt["config"], overrides)
    if meta.get("device") not in (None, "cpu", "auto"):
        ex.check_device(meta["device"])
    threads = _setup_torch(meta.get("threads"))
    with runs.StopSignals() as stop:
        trainer = None
        if spec.trainer_factory is not None:
            with stop.deferred():
                trainer = spec.build(config)
        try:
            if changed:  # record the change where the next reader looks: config.json and the session
                meta = {**meta, "config": dataclasses.asdict(config),
                        "resume_overrides": [*meta.get("resume_overrides", []), *overrides]}
                rd.write_config(meta)
            total = trainer.total_iterations if trainer is not None else None
            shown = ex.parse_overrides(spec.config_class, overrides)
            _banner(rd, meta, threads, len(ckpt["rows"]), total, shown)
            return _run(rd, spec, trainer or config, args, stop, allow_changes=changed)
        finally:
            if trainer is not None:
                trainer.close()


def _run(rd: runs.RunDir, spec: ex.Spec, trainer: Any, args: argparse.Namespace, stop: runs.StopSignals,
         allow_changes: set[str] | frozenset[str] = frozenset()) -> int:
    if spec.trainer_factory is None:  # the adaptive search: trainer is its config
        result = ex.run_search(trainer, rd, stop_after=args.stop_after_iterations, command=args.argv,
                               stop=stop)
    else:
        result = runs.run(trainer, rd, checkpoint_every=args.checkpoint_every,
                          progress=False if args.no_progress else None, log_every=args.log_every,
                          tensorboard=args.tensorboard, stop_after=args.stop_after_iterations,
                          command=args.argv, allow_changes=allow_changes, stop=stop)
    return result.exit_code


# ============================================================================ eval
def cmd_eval(args: argparse.Namespace) -> int:
    rd, meta = _open_run(args.run_dir)
    spec = ex.spec(meta["algorithm"])
    for name in ("episodes", "tasks"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be an integer >= 1, got {getattr(args, name)}")
    if args.steps < 0:
        raise CLIError(f"--steps must be >= 0, got {args.steps}")
    if args.seed < 0:
        raise CLIError(f"--seed must be a non-negative integer, got {args.seed}")
    if spec.trainer_factory is None:
        if not (rd.path / "search" / "search.json").is_file():
            raise CLIError(f"the search in {str(rd.path)!r} has not finished; resume it first")
        search = rd.read_json("search/search.json")
        report = {"best_score": search["best_score"], "best_params": search["best_params"],
                  "total_steps": search["total_steps"]}
        print(json.dumps(report, indent=2))
        rd.write_json("eval.json", report)
        return 0
    ckpt = _checkpoint(rd, "to evaluate")
    if meta.get("device") not in (None, "cpu", "auto"):
        ex.check_device(meta["device"])
    _setup_torch(meta.get("threads"))
    # the checkpoint's config is the truth (config.json may have been edited since)
    trainer = spec.build(ex.config_from_dict(spec.name, ckpt["config"]))
    try:
        # Only the trained policy (PPO: and its observation statistics), not the training state: the numbers
        # depend on nothing else, so policy.json (Result.trainer()) reproduces them.
        ex.load_policy_parameters(trainer, ex.policy_parameters(spec.name, ckpt["trainer"]))
        done = int(ckpt["trainer"].get("iterations_done", len(ckpt["rows"])))
        report = {"algorithm": spec.name, "env": meta.get("env"), "iterations_done": done,
                  **spec.evaluate(trainer, episodes=args.episodes, tasks=args.tasks, steps=args.steps,
                                  seed=args.seed)}
    finally:
        trainer.close()
    rd.write_json("eval.json", report)
    _print_eval(report)
    return 0


def _print_eval(report: Mapping[str, Any]) -> None:
    print(f"{report['algorithm']} on {report['env']} after {report['iterations_done']} iterations")
    print(f"protocol: {report['protocol']}")
    if "return_after_steps" in report:
        print("adaptation steps   mean return   std over tasks")
        for k, s in report["return_after_steps"].items():
            print(f"{k:>16}   {s['mean']:11.3f}   {s['std']:14.3f}")
    for key in ("episode_return", "trial_return"):
        if key in report:
            s = report[key]
            print(f"{key}: {s['mean']:.3f} +- {s['std']:.3f} (n = {s['n']})")
    if "return_per_episode" in report:  # RL²: how the return changes along the trial
        print("episode of the trial   mean return   std over tasks")
        for k, s in report["return_per_episode"].items():
            print(f"{k:>20}   {s['mean']:11.3f}   {s['std']:14.3f}")


# ============================================================================ plot
def cmd_plot(args: argparse.Namespace) -> int:
    from meta_rl_lessons import plotting

    if args.dpi < 1:
        raise CLIError(f"--dpi must be a positive integer, got {args.dpi}")
    loaded = []
    for path in args.run_dirs:
        rd, meta = _open_run(path)
        rows = rd.read_progress()
        if not rows:
            raise CLIError(f"run {str(rd.path)!r} has no progress rows yet")
        loaded.append((rd.path, meta, rows))
    y = args.y or ex.spec(loaded[0][1]["algorithm"]).return_key
    for path, _, rows in loaded:
        for key in (args.x, y):
            if key not in rows[0]:
                raise CLIError(f"run {str(path)!r} has no column {key!r}; columns: {', '.join(rows[0])}")
    out = Path(args.out or (Path(loaded[0][0]) / "learning_curve.png"))
    if not out.suffix:
        out = out.with_name(out.name + ".png")  # what matplotlib writes for a name without a suffix
    import matplotlib.pyplot as plt

    formats = plt.gcf().canvas.get_supported_filetypes()
    plt.close("all")
    if out.suffix.lstrip(".").lower() not in formats:
        raise CLIError(f"--out {str(out)!r}: unknown image format {out.suffix!r}; allowed: "
                       f"{', '.join(formats)}")
    fig = plotting.plot_runs(loaded, x=args.x, y=y)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    plt.close(fig)
    print(f"meta-rl: wrote {out}")
    return 0


# ============================================================================ export
def cmd_export(args: argparse.Namespace) -> int:
    """Copy a finished run's logs to ``DEST`` (a results/ directory) and write ``policy.json``."""
    from meta_rl_lessons.results import POLICY, params_to_json

    rd, meta = _open_run(args.run_dir)
    for name in ("provenance.json", "progress.csv"):
        if not (rd.path / name).is_file():
            raise CLIError(f"run {str(rd.path)!r} has no {name}; it was not written by `meta-rl train`")
    status = rd.read_json(runs.PROVENANCE).get("status")
    if status != "finished" and not args.allow_unfinished:
        raise CLIError(f"run {str(rd.path)!r} has status {status!r}, not 'finished'; finish it with "
                       f"`meta-rl resume {rd.path}` or pass --allow-unfinished to export it as it is")
    dest = Path(args.dest)
    if dest.exists() and not dest.is_dir():
        raise CLIError(f"{str(dest)!r} exists and is a file, not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not args.force:
            raise CLIError(f"{str(dest)!r} already exists and is not empty; pass --force to replace it")
        if not (dest / "config.json").is_file():
            raise CLIError(f"--force replaces result directories only, and {str(dest)!r} has no config.json; "
                           "remove it yourself or choose another DEST")
    if dest.resolve() == rd.path.resolve():
        raise CLIError("DEST is the run directory itself; choose a directory under results/")
    params = None
    if ex.spec(meta["algorithm"]).trainer_factory is not None:
        state = _checkpoint(rd, "to read the policy from")["trainer"]
        params = ex.policy_parameters(meta["algorithm"], state)
    # Build the result next to DEST and move it into place, so a failure leaves no half-written result.
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a result is an ordinary directory
    try:
        copied = []
        for name in EXPORT_FILES:
            if (rd.path / name).is_file():
                shutil.copyfile(rd.path / name, tmp / name)  # bytes only: verbatim
                copied.append(name)
        if params is not None:
            payload = {"format": 1, "algorithm": meta["algorithm"], "env": meta.get("env"),
                       "source": f"{runs.CHECKPOINT} of the run (read with weights_only=True)",
                       "parameters": params_to_json(params)}
            (tmp / POLICY).write_text(json.dumps(payload) + "\n")
            copied.append(POLICY)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    note = "" if params is not None else " (no policy.json: the adaptive search keeps no trained network)"
    print(f"meta-rl: exported {', '.join(copied)} to {dest}{note}; update the index with "
          "`python -m meta_rl_lessons.results --write-readme`")
    return 0


# ============================================================================ config, list, doctor
def cmd_config(args: argparse.Namespace) -> int:
    """The algorithm's config fields: type, default, value at ``--budget`` on ``--env``, docstring."""
    spec = ex.spec(args.algorithm)
    if args.budget is not None and args.budget not in BUDGETS:
        raise CLIError(f"unknown budget {args.budget!r}; allowed: {', '.join(BUDGETS)}")
    fields = ex.field_info(spec.name, args.budget, args.env)
    at = f" at budget {args.budget}" if args.budget else ""
    print(f"{spec.config_class.__name__} ({spec.name}): change a field with --set KEY=VALUE; "
          f"'preset' is the value{at or ' of the preset'} on {args.env or spec.default_env}")
    for f in fields:
        value = f" (preset: {f.value!r})" if args.budget and f.value != f.default else ""
        settable = "" if f.settable else f"  [set by {ex.RESERVED[f.name]}]"
        print(f"  {f.name}: {f.type} = {f.default!r}{value}{settable}")
        if f.doc:
            print(textwrap.fill(f.doc, width=106, initial_indent="      ", subsequent_indent="      "))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("algorithms: " + ", ".join(ex.ALGORITHMS))
    print("budgets:    " + ", ".join(BUDGETS))
    print("MetaRL environments (maml, rl2):")
    for env in ex._metarl_ids():
        print(f"  {env}")
    print("ppo, trpo and adaptive train on any registered gymnasium id, e.g. CartPole-v1")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print :mod:`meta_rl_lessons.doctor`'s report; 0 when every required piece is present, else 1."""
    from meta_rl_lessons import doctor

    rows = doctor.checks()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        print(doctor.format_text(rows))
    return 0 if doctor.all_required_ok(rows) else 1


# ============================================================================ argument parsing
class _Parser(argparse.ArgumentParser):
    """argparse with the command line's one-line errors (``meta-rl: error: ...``, status 2)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"meta-rl: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="meta-rl", description="Train, resume, evaluate and plot meta-RL runs.")
    p.add_argument("--version", action="version", version=f"meta-rl {_version()}")
    sub = p.add_subparsers(dest="command", metavar="{train,resume,eval,plot,export,config,list,doctor}",
                           parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="start a run in a new run directory")
    t.add_argument("algorithm", metavar="ALGORITHM", help=f"one of {', '.join(ex.ALGORITHMS)}")
    t.add_argument("--env", default=None,
                   help="environment id (default: CartPole-v1 for ppo/trpo/adaptive, MetaRL/Navigation2D-v0 "
                        "for maml, MetaRL/BernoulliBandit-v0 for rl2)")
    t.add_argument("--budget", default=None,
                   help=f"experiment size: {', '.join(BUDGETS)} (default: $META_RL_BUDGET, else book)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    t.add_argument("--out", default=None, help="run directory (default "
                                               "runs/<algorithm>-<env>-<budget>-s<seed>)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field of the algorithm's config (repeatable; `meta-rl config ALGORITHM`)")
    t.add_argument("--force", action="store_true", help="delete an existing run directory first")
    t.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (recorded; resume uses the same number)")
    _run_flags(t)

    r = sub.add_parser("resume", help="continue a stopped run")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a config field on purpose (recorded in config.json and provenance.json)")
    _run_flags(r)

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--episodes", type=int, default=10, help="ppo/trpo: evaluation episodes (default 10)")
    e.add_argument("--tasks", type=int, default=20, help="maml/rl2: held-out tasks (default 20)")
    e.add_argument("--steps", type=int, default=3, help="maml: adaptation steps (default 3)")
    e.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation tasks/episodes")

    pl = sub.add_parser("plot", help="learning curves of one or more runs (mean and spread over runs)")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, help="image file (default RUN_DIR/learning_curve.png)")
    pl.add_argument("--x", default="env_steps_total", help="x column (default env_steps_total)")
    pl.add_argument("--y", default=None, help="y column (default: the algorithm's return column)")
    pl.add_argument("--dpi", type=int, default=120)

    x = sub.add_parser("export", help="copy a finished run's logs (and policy.json) to a results/ directory")
    x.add_argument("run_dir", metavar="RUN_DIR")
    x.add_argument("dest", metavar="DEST", help="result directory, e.g. results/maml-Navigation2D-book-s0")
    x.add_argument("--force", action="store_true", help="replace an existing result directory")
    x.add_argument("--allow-unfinished", action="store_true",
                   help="export a run whose status is not 'finished' (interrupted, running, failed)")

    c = sub.add_parser("config", help="the config fields of an algorithm (--set KEY=VALUE), with their "
                                      "types, defaults, preset values and meaning")
    c.add_argument("algorithm", metavar="ALGORITHM", help=f"one of {', '.join(ex.ALGORITHMS)}")
    c.add_argument("--budget", default=None, help="show the preset's values at this budget")
    c.add_argument("--env", default=None, help="environment (presets and environment fields depend on it)")

    sub.add_parser("list", help="algorithms, budgets and environments")
    d = sub.add_parser("doctor", help="check this machine: Python, torch, CUDA, gymnasium, MuJoCo and its GL "
                                      "backend, Chromium, threads, budget (exit 1 if something required "
                                      "is missing)")
    d.add_argument("--json", action="store_true", help="the report as JSON rows (name, status, value, fix)")
    return p


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="save a checkpoint at the first iteration boundary after this many seconds "
                        "(default 60; one is always saved at the end and on SIGINT/SIGTERM)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a plain log line every --log-every seconds (as when stderr is no "
                        "TTY)")
    p.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS",
                   help="seconds between plain log lines without a progress bar (default 30)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to RUN_DIR/tensorboard (needs `pip install -e .[tensorboard]`)")
    p.add_argument("--stop-after-iterations", type=int, default=None, metavar="N",
                   help="(testing) checkpoint and stop after N iterations of this session, as SIGINT does")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train, "resume": cmd_resume, "eval": cmd_eval, "plot": cmd_plot, "export": cmd_export,
    "config": cmd_config, "list": cmd_list, "doctor": cmd_doctor}

#: errno values that are the environment's fault, with what the user can do about them.
_OS_ERRORS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device; free some space (then `meta-rl resume RUN` continues a run)",
    errno.EDQUOT: "disk quota exceeded; free some space (then `meta-rl resume RUN` continues a run)",
    errno.EACCES: "permission denied; choose a directory you can write to",
    errno.EPERM: "operation not permitted; choose a directory you can write to",
    errno.EROFS: "read-only file system; choose a writable directory",
}


def _os_error_message(err: OSError) -> str | None:
    hint = _OS_ERRORS.get(err.errno or -1)
    if hint is None:
        return None
    where = f" {str(err.filename)!r}" if err.filename else ""
    return f"cannot write{where}: {hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``meta-rl``; the exit status: 0 ok, 2 user error, 130/143 stopped by a signal."""
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    args.argv = ["meta-rl", *raw]
    keep_freed_memory()  # reuse freed tensor memory (meta_rl_lessons.memory): numbers are unchanged
    format_warning = warnings.formatwarning
    # a warning is a sentence for the user (an inexact resume, say), not a source location
    warnings.formatwarning = lambda message, *_, **__: f"meta-rl: warning: {message}\n"
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as err:
        print(f"meta-rl: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`meta-rl list | head`): stop quietly, as Unix tools do. Point stdout at
        # devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        message = _os_error_message(err)
        if message is None:
            raise  # anything else is a bug: keep the traceback
        print(f"meta-rl: error: {message}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = format_warning


if __name__ == "__main__":
    sys.exit(main())
