"""Run directories and the one run loop: configuration, provenance, progress log, resumable checkpoints.

:func:`run` drives any :class:`~meta_rl_lessons.trainer.Trainer` in a run directory, from the ``meta-rl``
command line (:mod:`meta_rl_lessons.cli`) or from a notebook::

    from meta_rl_lessons import runs
    result = runs.run(PPO(PPOConfig(env_id="CartPole-v1")), "runs/ppo-cartpole")
    result.rows[-1]["episode_return"]       # run it again: it continues from the checkpoint (or is done)

One directory per run::

    runs/maml-nav/
      config.json       what was run: algorithm, environment, budget, seed, device, threads and the full
                        config dataclass of the algorithm as a dict
      provenance.json   where and how: the exact command line, git commit (and whether the checkout had
                        uncommitted changes), hostname, CPU model and cores, GPU, library versions,
                        start/end times, one entry per session, and a status: "running", "interrupted",
                        "finished" or "failed"
      progress.csv      one row of metrics per iteration
      checkpoint.pt     {"format": 2, "algorithm", "trainer": state_dict(), "rows", "wall_time", "config"}
      eval.json         written by ``meta-rl eval``

**Signals.** SIGINT (Ctrl-C) and SIGTERM (what Slurm, ``timeout`` and Kubernetes send) are handled alike:
the running iteration finishes, a checkpoint is saved, the status becomes "interrupted" and the exit code is
130 (SIGINT) or 143 (SIGTERM), 128 + the signal's number as shells report it. A second signal stops at once,
keeping the previous checkpoint. ``kill -9`` during a save can leave a ``.checkpoint.pt.tmp<pid>`` file; the
next start removes it (while holding the run's lock).

**Exact resumption.** The checkpoint holds the trainer's complete ``state_dict`` (networks, optimisers,
samplers, every random generator) and the progress rows already logged. On resume ``progress.csv`` is
rewritten from those rows, so rows logged after the last checkpoint (a crash between checkpoints) are dropped
and recomputed: the resumed run ends with the rows an uninterrupted run writes (on the same machine, with the
same thread count). A checkpoint whose config differs from the trainer's is refused, naming the fields.

Checkpoints contain only tensors and plain Python values and are read with
``torch.load(..., weights_only=True)`` (:mod:`meta_rl_lessons.serialization`).

This module imports torch and NumPy lazily, so the command line's ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_rl_lessons.serialization import (  # noqa: F401 - re-exported: runs' public names
    CheckpointError,
    config_diff,
    from_safe,
    generator_state,
    global_rng_state,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_generator_state,
    set_global_rng_state,
    to_safe,
)

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "CSVRows",
    "Callback",
    "CheckpointError",
    "Interrupted",
    "LogLines",
    "ProgressBar",
    "RunError",
    "RunResult",
    "RunSession",
    "StopSignals",
    "TensorBoard",
    "PROGRESS",
    "PROVENANCE",
    "RunDir",
    "from_safe",
    "generator_state",
    "git_info",
    "global_rng_state",
    "load_checkpoint",
    "machine_info",
    "provenance",
    "read_progress",
    "run",
    "save_checkpoint",
    "set_generator_state",
    "set_global_rng_state",
    "to_safe",
    "utc_now",
]

CONFIG = "config.json"
PROVENANCE = "provenance.json"
PROGRESS = "progress.csv"
CHECKPOINT = "checkpoint.pt"


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ============================================================================ provenance
def git_info(cwd: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty", "root"}`` of the git checkout holding ``cwd`` (default: this package), or
    ``None`` outside a checkout or without ``git``. ``dirty``: uncommitted changes to tracked files."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        root = git("rev-parse", "--show-toplevel")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty, "root": root}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), for provenance and benchmark headers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Hostname, OS, Python, CPU model and core counts, GPU names, and library versions."""
    import torch

    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda},
    }
    for name in ("numpy", "gymnasium", "mujoco", "meta_rl_lessons"):
        try:
            module = __import__(name)
            info["versions"][name] = getattr(module, "__version__", "unknown")
        except ImportError:
            info["versions"][name] = None
    return info


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """What :file:`provenance.json` holds at the start of a run (``end_time`` and ``status`` are updated
    as the run goes): the exact command line, working directory, git state, machine and versions."""
    argv = list(sys.argv if argv is None else argv)
    return {
        "command": argv,
        "command_line": " ".join(_shell_quote(a) for a in argv),
        "cwd": os.getcwd(),
        "git": git_info(),
        **machine_info(),
        "start_time": utc_now(),
        "end_time": None,
        "status": "running",
        "sessions": [],
    }


def _shell_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


# ============================================================================ progress.csv
def read_progress(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``progress.csv`` with numbers parsed (``"nan"`` -> NaN); strings stay strings."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: _parse(v) for k, v in row.items()})
    return rows


def _parse(value: str) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _clean(value: Any) -> Any:
    """A CSV cell: numbers as Python floats/ints (tensors and NumPy scalars converted), others as they are."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return float("nan")
    return value


# ============================================================================ the run directory
class RunDir:
    """One run's directory (see the module docstring for its files).

    Args:
        path: the directory.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fields: list[str] | None = None

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def provenance_path(self) -> Path:
        return self.path / PROVENANCE

    @property
    def progress_path(self) -> Path:
        return self.path / PROGRESS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    # -- creation ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, force: bool = False) -> RunDir:
        """A new, empty run directory.

        Raises:
            FileExistsError: ``path`` exists and is not empty, and ``force`` is false (``force`` deletes it).
        """
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise FileExistsError(f"run directory {str(p)!r} exists and is a file, not a directory")
        if p.is_dir() and any(p.iterdir()):
            if not force:
                raise FileExistsError(
                    f"run directory {str(p)!r} already exists and is not empty; choose another --out, "
                    f"continue it with `meta-rl resume {p}`, or pass --force to delete it and start again")
            shutil.rmtree(p)
        p.mkdir(parents=True, exist_ok=True)
        return cls(p)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run directory.

        Raises:
            FileNotFoundError: ``path`` is not a directory or has no ``config.json``.
        """
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"run directory {str(p)!r} does not exist")
        if not (p / CONFIG).is_file():
            raise FileNotFoundError(f"{str(p)!r} is not a run directory: it has no {CONFIG} "
                                    "(runs are created by `meta-rl train`)")
        return cls(p)

    # -- exclusive use -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run (``<dir>/.lock``, ``flock``) while training it, so a second
        ``train --force`` or ``resume`` of the same directory cannot interleave with a running one. The
        operating system releases the lock when the process ends, however it ends. (No-op without ``fcntl``.)

        Raises:
            BlockingIOError: another process holds the lock (the message names its pid).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        path = self.path / ".lock"
        fh = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                owner = fh.read().strip() or "unknown"
                message = (f"run directory {str(self.path)!r} is in use by another meta-rl process (pid "
                           f"{owner}); wait for it to finish or stop it first")
                raise BlockingIOError(message) from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fh.close()

    # -- JSON files ------------------------------------------------------------------------------------
    def write_json(self, name: str, payload: Any) -> Path:
        """Write ``payload`` as ``<dir>/<name>`` (atomically, pretty-printed, sorted keys kept as given)."""
        path = self.path / name
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # after an error (a full disk): no stray temporary file
        return path

    def read_json(self, name: str) -> Any:
        """``<dir>/<name>`` parsed.

        Raises:
            FileNotFoundError: naming the missing file.
            RunError: the file is not valid JSON (naming it, the line, and what to do).
        """
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunError(f"{str(path)!r} is not valid JSON ({err}); restore it (the checkpoint holds the "
                           "run's config) or start the run again") from None

    def write_config(self, config: Mapping[str, Any]) -> None:
        self.write_json(CONFIG, dict(config))

    def read_config(self) -> dict[str, Any]:
        return self.read_json(CONFIG)

    def update_provenance(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``provenance.json`` and rewrite it; returns the new content."""
        prov = self.read_json(PROVENANCE) if self.provenance_path.is_file() else {}
        prov.update(fields)
        self.write_json(PROVENANCE, prov)
        return prov

    # -- progress.csv ----------------------------------------------------------------------------------
    def write_progress(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace ``progress.csv`` with ``rows`` (the header from the first row's keys)."""
        rows = list(rows)
        self._fields = None
        tmp = self.progress_path.with_name(f".{PROGRESS}.tmp{os.getpid()}")
        try:
            with tmp.open("w", newline="") as fh:
                if rows:
                    self._fields = list(rows[0])
                    writer = csv.DictWriter(fh, fieldnames=self._fields, restval="nan")
                    writer.writeheader()
                    for row in rows:
                        writer.writerow(self._row(row))
            os.replace(tmp, self.progress_path)
        finally:
            tmp.unlink(missing_ok=True)

    def append_progress(self, row: Mapping[str, Any]) -> None:
        """Append one row to ``progress.csv`` (written and flushed at once, so a crash loses at most it).

        Raises:
            KeyError: the row has a metric that is not in the file's header.
        """
        if self._fields is None and self.progress_path.is_file() and self.progress_path.stat().st_size:
            with self.progress_path.open(newline="") as fh:
                self._fields = next(csv.reader(fh))
        new = self._fields is None
        if new:
            self._fields = list(row)
        extra = set(row) - set(self._fields)
        if extra:
            raise KeyError(f"progress row has metric(s) {sorted(extra)} not in the header {self._fields}")
        with self.progress_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields, restval="nan")
            if new:
                writer.writeheader()
            writer.writerow(self._row(row))

    @staticmethod
    def _row(row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _clean(v) for k, v in row.items()}

    def read_progress(self) -> list[dict[str, Any]]:
        """The rows of ``progress.csv`` (empty if there is none yet)."""
        if not self.progress_path.is_file() or not self.progress_path.stat().st_size:
            return []
        return read_progress(self.progress_path)


def _json_default(obj: Any) -> Any:
    """JSON for tuples of paths, NumPy scalars/arrays and tensors (``config.json``, ``eval.json``)."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__qualname__} is not JSON serialisable")


# ============================================================================ configs as JSON
def normalised(config: Any) -> dict[str, Any]:
    """A config dataclass (or dict) as ``config.json`` and checkpoints hold it: JSON values (tuples become
    lists), so a config read back compares equal to the one written."""
    import dataclasses

    d = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(d, default=_json_default))


def describe_diff(diff: Mapping[str, tuple[Any, Any]], first: str, second: str) -> str:
    """``"iterations (checkpoint 6, config.json 20), lr (...)"`` for a :func:`config_diff`."""
    return ", ".join(f"{k} ({first} {a!r}, {second} {b!r})" for k, (a, b) in diff.items())


# ============================================================================ signals
#: Checkpoint format written by :func:`run` (format 1, before the trainer protocol, did not resume exactly).
FORMAT = 2
#: Exit status after a signal stopped a run: 128 + the signal number, the shells' convention.
EXIT_CODES: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143}
#: The signals that stop a run at the next iteration boundary.
STOP_SIGNALS: tuple[int, ...] = (int(signal.SIGINT), int(signal.SIGTERM))


class RunError(ValueError):
    """A run directory that cannot be used as asked; the message names the file and what to do."""


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """A second stop signal: the run stops at once, keeping the previous checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """While active, the first SIGINT or SIGTERM sets :attr:`requested` (the run loop checkpoints at the
    next iteration boundary); a second one raises :class:`Interrupted` at once. Outside the main thread
    (where Python cannot install handlers) it does nothing."""

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.signum: int | None = None
        self.announce = announce
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise Interrupted(signum)
        self.requested, self.signum = True, signum
        if self.announce:
            print(f"\nmeta-rl: {signal.Signals(signum).name} received; finishing this iteration and saving a "
                  "checkpoint (send it again to stop at once and keep the previous checkpoint)",
                  file=sys.stderr, flush=True)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Block the stop signals while a trainer is built. Worker processes it starts (the MuJoCo samplers
        spawn physics workers) inherit the blocked mask, so a Ctrl-C in the terminal, which reaches the whole
        process group, stops only this process at an iteration boundary instead of killing the workers
        mid-step; a signal that arrives meanwhile is delivered (to :meth:`_handler`) afterwards."""
        if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
            yield
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


# ============================================================================ one session of a run
@dataclass
class RunResult:
    """What :func:`run` returns."""

    status: str
    """``"finished"``, ``"interrupted"`` (a signal, or ``stop_after``) or ``"failed"``."""
    rows: list[dict[str, Any]]
    """Every progress row of the run so far (``progress.csv``)."""
    run_dir: Path
    iterations_done: int = 0
    signum: int | None = None
    """The signal that stopped the run, if one did."""

    @property
    def exit_code(self) -> int:
        """0 finished (or stopped by ``stop_after``), 130 after SIGINT, 143 after SIGTERM, 1 failed."""
        if self.signum is not None:
            return EXIT_CODES.get(self.signum, 128 + self.signum)
        return 1 if self.status == "failed" else 0


class RunSession:
    """One session of a run in ``rd``: holds its lock, removes stale temporaries, reads and checks the
    checkpoint, records the session in ``provenance.json``, catches the stop signals.

    Args:
        rd: the run directory (created if absent).
        algorithm: the trainer's ``name``; a checkpoint of another algorithm is refused.
        config: the normalised config (:func:`normalised`); a checkpoint of a different one is refused.
        command: the session's command line (default ``sys.argv``).
        allow_changes: config fields that may differ from the checkpoint's (``meta-rl resume --set``).
        meta: ``config.json``'s content if the directory has none yet (default: algorithm and config).
        stop: signal handling already installed by the caller (else the session installs its own).
    """

    def __init__(self, rd: RunDir, algorithm: str, config: Mapping[str, Any], *,
                 command: Sequence[str] | None = None, allow_changes: Iterable[str] = (),
                 meta: Mapping[str, Any] | None = None, stop: StopSignals | None = None) -> None:
        self.rd, self.algorithm, self.config = rd, algorithm, dict(config)
        self.command = list(sys.argv if command is None else command)
        self.allow_changes = set(allow_changes)
        self.meta = meta
        self.stop = stop or StopSignals()
        self._own_stop = stop is None
        self.rows: list[dict[str, Any]] = []
        self.wall_before = 0.0
        self.trainer_state: dict[str, Any] | None = None
        self.status: str | None = None
        self.config_changes: dict[str, list[Any]] = {}
        self._lock: Any = None

    def __enter__(self) -> RunSession:
        rd = self.rd
        rd.path.mkdir(parents=True, exist_ok=True)
        self._lock = rd.lock()
        try:
            self._lock.__enter__()
        except BlockingIOError as err:
            raise RunError(str(err)) from None
        try:
            remove_stale_temporaries(rd.path)  # what a kill -9 during a save left behind
            if not rd.config_path.is_file():
                rd.write_config(self.meta or {"algorithm": self.algorithm, "config": self.config})
            if not rd.provenance_path.is_file():
                rd.write_json(PROVENANCE, provenance(self.command))
            if rd.checkpoint_path.is_file():
                self._read_checkpoint(load_checkpoint(rd.checkpoint_path))
            self.session = {"command": self.command, "start_time": utc_now()}
            if self.config_changes:  # {field: [checkpoint's value, new value]}
                self.session["config_changes"] = self.config_changes
            rd.update_provenance(status="running")
            if self._own_stop:
                self.stop.__enter__()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _read_checkpoint(self, ckpt: Mapping[str, Any]) -> None:
        path = str(self.rd.checkpoint_path)
        if ckpt.get("format") != FORMAT:
            raise RunError(f"checkpoint {path!r} has format {ckpt.get('format', 1)!r}, written before the "
                           "trainer "
                           f"protocol (format {FORMAT}), and cannot be resumed exactly; start the run again "
                           "(meta-rl train ... --force), or resume it with the commit that wrote it "
                           "(provenance.json)")
        if ckpt.get("algorithm") != self.algorithm:
            raise RunError(f"checkpoint {path!r} is of algorithm {ckpt.get('algorithm')!r}, not "
                           f"{self.algorithm!r}")
        full = config_diff(ckpt.get("config") or {}, self.config)
        self.config_changes = {k: list(v) for k, v in full.items() if k in self.allow_changes}
        diff = {k: v for k, v in full.items() if k not in self.allow_changes}
        if diff:
            raise RunError(f"the config differs from checkpoint {path!r} in "
                           f"{describe_diff(diff, 'checkpoint', 'now')}; "
                           "resume with the checkpoint's config, or change fields on purpose with "
                           "`meta-rl resume RUN --set key=value`")
        self.rows = [dict(r) for r in ckpt.get("rows", [])]
        self.wall_before = float(ckpt.get("wall_time", 0.0))
        self.trainer_state = ckpt.get("trainer")

    def save(self, wall_time: float, trainer_state: Mapping[str, Any] | None = None) -> None:
        """Write ``checkpoint.pt`` (atomically) with the rows so far."""
        save_checkpoint({"format": FORMAT, "algorithm": self.algorithm, "trainer": dict(trainer_state or {}),
                         "rows": self.rows, "wall_time": wall_time, "config": self.config},
                        self.rd.checkpoint_path)

    def end(self, status: str, iterations_done: int | None = None) -> RunResult:
        """Record the session's end with ``status`` (``"stopped"``: by ``stop_after``, recorded as
        interrupted)."""
        recorded = "interrupted" if status == "stopped" else status
        self._record(recorded)
        signum = self.stop.signum if status == "interrupted" else None
        return RunResult(recorded, self.rows, self.rd.path,
                         len(self.rows) if iterations_done is None else iterations_done, signum)

    def _record(self, status: str) -> None:
        self.status = status
        prov = self.rd.read_json(PROVENANCE) if self.rd.provenance_path.is_file() else {}
        session = {**self.session, "end_time": utc_now(), "status": status}
        self.rd.update_provenance(status=status, end_time=session["end_time"],
                                  sessions=[*prov.get("sessions", []), session])

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.status is None:
                status = "interrupted" if isinstance(exc, (Interrupted, KeyboardInterrupt)) else "failed"
                with contextlib.suppress(OSError, ValueError):  # a full disk must not hide the real error
                    self._record(status)
        finally:
            if self._own_stop:
                self.stop.__exit__()
            self._lock.__exit__(None, None, None)


# ============================================================================ callbacks
class Callback:
    """Hooks of :func:`run`, in the spirit of Stable-Baselines3's callbacks; override what you need.

    Each receives the :class:`RunSession` (``session.rows``, ``session.rd``, ``session.trainer``).
    """

    def on_start(self, session: RunSession) -> None:
        """Before the first iteration of this session."""

    def on_row(self, session: RunSession, row: Mapping[str, Any]) -> bool | None:
        """After each iteration, with its row (``env_steps_total`` and ``wall_time`` added); ``False`` stops
        the run at this boundary (a checkpoint is saved)."""
        return None

    def on_checkpoint(self, session: RunSession) -> None:
        """After each checkpoint."""

    def on_end(self, session: RunSession, status: str) -> None:
        """At the end of the session (also after an error)."""


class CSVRows(Callback):
    """``progress.csv``: one row per iteration, flushed at once (a crash loses at most that row)."""

    def on_row(self, session: RunSession, row: Mapping[str, Any]) -> None:
        session.rd.append_progress(row)


class TensorBoard(Callback):
    """Every finite numeric column of each row as a TensorBoard scalar in ``RUN_DIR/tensorboard``."""

    @staticmethod
    def check() -> None:
        """Raise :class:`RunError` (saying how to install it) if TensorBoard is not installed."""
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise RunError("--tensorboard needs the tensorboard package, which is not installed; install it "
                           "with `pip install -e .[tensorboard]` (or `pip install tensorboard`)")

    def on_start(self, session: RunSession) -> None:
        self.check()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(session.rd.path / "tensorboard"))

    def on_row(self, session: RunSession, row: Mapping[str, Any]) -> None:
        step = int(row.get("iteration", len(session.rows)))
        for k, v in row.items():
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if number and k != "iteration" and math.isfinite(v):
                self.writer.add_scalar(k, v, step)

    def on_end(self, session: RunSession, status: str) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ProgressBar(Callback):
    """A tqdm bar with the environment steps and the current return."""

    def on_start(self, session: RunSession) -> None:
        from meta_rl_lessons.rl.utils import progress

        self.bar = progress(total=session.total_iterations, initial=session.start_iteration,
                            desc=f"{session.algorithm} {session.rd.path.name}", unit="it")

    def on_row(self, session: RunSession, row: Mapping[str, Any]) -> None:
        self.bar.set_postfix(env_steps=f"{int(row.get('env_steps_total', 0)):,}",
                             ret=_fmt(row.get(session.return_key, math.nan)), refresh=False)
        self.bar.update(1)

    def on_end(self, session: RunSession, status: str) -> None:
        self.bar.close()


class LogLines(Callback):
    """Plain lines on stderr for batch jobs (no progress bar): the first row, then one every ``every``
    seconds, then the last: iteration, environment steps, the return, seconds per iteration."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every

    def on_start(self, session: RunSession) -> None:
        self.last = self.start = time.perf_counter()
        self.first = session.start_iteration
        self.pending: Mapping[str, Any] | None = None

    def _print(self, session: RunSession, row: Mapping[str, Any]) -> None:
        done = len(session.rows)
        rate = (time.perf_counter() - self.start) / max(1, done - self.first)
        print(f"meta-rl: iteration {done}/{session.total_iterations}, "
              f"{int(row.get('env_steps_total', 0)):,} env steps, {session.return_key} "
              f"{_fmt(row.get(session.return_key, math.nan))}, {rate:.3g} s/iteration",
              file=sys.stderr, flush=True)
        self.last, self.pending = time.perf_counter(), None

    def on_row(self, session: RunSession, row: Mapping[str, Any]) -> None:
        self.pending = row
        if len(session.rows) == self.first + 1 or time.perf_counter() - self.last >= self.every:
            self._print(session, row)

    def on_end(self, session: RunSession, status: str) -> None:
        if self.pending is not None:
            self._print(session, self.pending)


def _show_bar() -> bool:
    """A progress bar where someone watches: a terminal, or a Jupyter kernel; plain log lines elsewhere."""
    if os.environ.get("META_RL_PROGRESS", "1") == "0":
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) or "ipykernel" in sys.modules


# ============================================================================ the run loop
def run(trainer: Any, run_dir: str | os.PathLike | RunDir, *, callbacks: Sequence[Callback] = (),
        checkpoint_every: float = 60.0, progress: bool | None = None, log_every: float = 30.0,
        tensorboard: bool = False, stop_after: int | None = None,
        meta: Mapping[str, Any] | None = None, command: Sequence[str] | None = None,
        allow_changes: Iterable[str] = (), stop: StopSignals | None = None) -> RunResult:
    """Train ``trainer`` to its ``total_iterations`` in ``run_dir``, resumably; returns a :class:`RunResult`.

    A directory with a checkpoint continues from it (exactly; the trainer must be built from the same config,
    else :class:`RunError` names the differing fields); a finished run returns at once. Touches the trainer
    only through the protocol of :mod:`meta_rl_lessons.trainer`.

    Args:
        trainer: a trainer, or a function that builds one (built with the stop signals deferred, see
            :meth:`StopSignals.deferred`).
        run_dir: the run directory (created if absent).
        callbacks: more :class:`Callback` objects (``progress.csv`` is always written).
        checkpoint_every: seconds between checkpoints, at iteration boundaries (one is always saved at the
            end and after a stop signal); 0 saves after every iteration.
        progress: a progress bar (``None``: in a terminal or Jupyter); without one, :class:`LogLines`
            every ``log_every`` seconds.
        tensorboard: also log to ``run_dir/tensorboard``.
        stop_after: stop (with a checkpoint, status "interrupted", exit code 0) after this many iterations
            of this session; for tests.
        meta: ``config.json``'s content for a new directory (the command line writes its own).
        command: recorded in the session (default ``sys.argv``).
        allow_changes: config fields that may differ from the checkpoint's.
        stop: signal handling installed by the caller (the command line installs it before building).

    Raises:
        RunError: the directory is in use, or its checkpoint is of another algorithm, format or config.
        CheckpointError: the checkpoint is truncated or corrupted.
    """
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    own_stop = stop is None
    stop = stop or StopSignals()
    built = None
    try:
        with contextlib.ExitStack() as stack:
            if own_stop:
                stack.enter_context(stop)
            if callable(trainer) and not hasattr(trainer, "iteration"):
                with stop.deferred():
                    trainer = built = trainer()
            session = RunSession(rd, trainer.name, normalised(trainer.config), command=command,
                                 allow_changes=allow_changes, meta=meta, stop=stop)
            with session:
                return _loop(session, trainer, callbacks=callbacks, checkpoint_every=checkpoint_every,
                             progress=progress, log_every=log_every, tensorboard=tensorboard,
                             stop_after=stop_after)
    except Interrupted as err:
        print(f"\nmeta-rl: stopped at once; the previous checkpoint is kept. Continue with:  meta-rl resume "
              f"{rd.path}", file=sys.stderr)
        rows = rd.read_progress() if rd.progress_path.is_file() else []
        return RunResult("interrupted", rows, rd.path, len(rows), err.signum)
    finally:
        if built is not None:
            built.close()


def _loop(session: RunSession, trainer: Any, *, callbacks: Sequence[Callback], checkpoint_every: float,
          progress: bool | None, log_every: float, tensorboard: bool, stop_after: int | None) -> RunResult:
    rd, stop = session.rd, session.stop
    if session.trainer_state is not None:
        state = session.trainer_state
        if session.allow_changes and "config" in state:
            # A change asked for on purpose (resume --set): the state carries the config it was saved with,
            # which trainers check on load; it continues under the new one.
            import dataclasses

            state = {**state, "config": dataclasses.asdict(trainer.config)}
        trainer.load_state_dict(state)
    rows = session.rows
    session.trainer = trainer
    session.total_iterations = int(trainer.total_iterations)
    session.start_iteration = int(trainer.iterations_done)
    session.return_key = trainer.return_key
    if session.start_iteration >= session.total_iterations and session.trainer_state is not None:
        if rd.read_progress() != rows:
            rd.write_progress(rows)
        return session.end("finished", session.start_iteration)
    rd.write_progress(rows)  # on resume this drops rows logged after the checkpoint: they are recomputed
    per_iteration = bool(getattr(trainer, "env_steps_per_iteration", False))  # MAML: each row's own steps
    show = _show_bar() if progress is None else progress
    every: list[Callback] = [CSVRows(), ProgressBar() if show else LogLines(log_every)]
    if tensorboard:
        every.append(TensorBoard())
    every.extend(callbacks)
    start = last_save = time.perf_counter()
    saved_at = session.start_iteration if session.trainer_state is not None else -1
    steps_total = float(rows[-1]["env_steps_total"]) if rows else 0.0
    session_iterations, status = 0, "failed"

    def save() -> None:
        nonlocal saved_at, last_save
        session.save(session.wall_before + time.perf_counter() - start, trainer.state_dict())
        saved_at, last_save = trainer.iterations_done, time.perf_counter()
        for cb in every:
            cb.on_checkpoint(session)

    started: list[Callback] = []
    try:
        for cb in every:
            cb.on_start(session)
            started.append(cb)
        stopped = False
        while trainer.iterations_done < session.total_iterations and not stop.requested and not stopped:
            row = dict(trainer.iteration())
            session_iterations += 1
            if "env_steps_total" in row:
                steps_total = float(row["env_steps_total"])
            else:
                step_col = float(row.get("env_steps", 0.0))
                steps_total = steps_total + step_col if per_iteration else step_col
            row = {**row, "env_steps_total": steps_total,
                   "wall_time": session.wall_before + time.perf_counter() - start}
            rows.append(row)
            for cb in every:
                stopped = cb.on_row(session, row) is False or stopped
            if stop_after is not None and session_iterations >= stop_after:
                stopped = True
            if time.perf_counter() - last_save >= checkpoint_every:
                save()
        if saved_at != trainer.iterations_done:  # at the end, and at the boundary after a stop
            save()
        finished = trainer.iterations_done >= session.total_iterations
        status = "finished" if finished else "interrupted" if stop.requested else "stopped"
    finally:
        for cb in started:
            cb.on_end(session, status)
    result = session.end(status, trainer.iterations_done)
    if status == "finished":
        print(f"meta-rl: finished {trainer.iterations_done} iterations; {trainer.return_key} = "
              f"{_fmt(rows[-1].get(trainer.return_key, math.nan)) if rows else 'nan'}; run directory "
              f"{rd.path}")
    else:
        print(f"meta-rl: stopped after iteration {trainer.iterations_done} of {session.total_iterations}; "
              f"checkpoint saved; continue with:  meta-rl resume {rd.path}", file=sys.stderr)
    return result
