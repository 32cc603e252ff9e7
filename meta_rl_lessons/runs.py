"""Run directories: configuration, provenance, progress log and resumable checkpoints of a long run.

The ``meta-rl`` command line (:mod:`meta_rl_lessons.cli`) writes one directory per run::

    runs/maml-nav/
      config.json       what was run: algorithm, environment, budget, seed, device, threads and the full
                        config dataclass of the algorithm as a dict
      provenance.json   where and how: the exact command line, git commit (and whether the checkout had
                        uncommitted changes), hostname, CPU model and cores, GPU, library versions,
                        start/end times, and a status: "running", "interrupted", "finished" or "failed"
      progress.csv      one row of metrics per iteration
      checkpoint.pt     everything the rest of the run depends on (written atomically)
      eval.json         written by ``meta-rl eval``

**Exact resumption.** A checkpoint holds the trainer's ``state_dict`` *and* every random-number generator the
future draws from: Python's ``random``, NumPy's legacy global generator, torch's global CPU (and CUDA)
generators (:func:`global_rng_state`), plus the trainer's own generators (task samplers, environment
generators), captured by attribute path with :func:`generator_state`, and the progress rows already logged.
On resume ``progress.csv`` is rewritten from those rows, so rows logged after the last checkpoint (a crash
between checkpoints) are dropped and recomputed: the resumed run ends with the rows an uninterrupted run
writes (on the same machine, with the same thread count).

Checkpoints contain only tensors and plain Python values (NumPy arrays become tensors, generator states become
JSON strings or byte tensors) and are read with ``torch.load(..., weights_only=True)``.

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
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from meta_rl_lessons.serialization import (  # noqa: F401 - re-exported: runs' public names
    CheckpointError,
    from_safe,
    generator_state,
    get_path,
    global_rng_state,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_generator_state,
    set_global_rng_state,
    set_path,
    to_safe,
)

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "PROGRESS",
    "PROVENANCE",
    "RunDir",
    "from_safe",
    "generator_state",
    "get_path",
    "git_info",
    "global_rng_state",
    "load_checkpoint",
    "machine_info",
    "provenance",
    "read_progress",
    "save_checkpoint",
    "set_generator_state",
    "set_global_rng_state",
    "set_path",
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
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
        os.replace(tmp, path)
        return path

    def read_json(self, name: str) -> Any:
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist")
        return json.loads(path.read_text())

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
        with tmp.open("w", newline="") as fh:
            if rows:
                self._fields = list(rows[0])
                writer = csv.DictWriter(fh, fieldnames=self._fields, restval="nan")
                writer.writeheader()
                for row in rows:
                    writer.writerow(self._row(row))
        os.replace(tmp, self.progress_path)

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
